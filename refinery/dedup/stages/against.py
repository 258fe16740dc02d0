"""The reference stage (`--against REF`): each picture still kept that is the same as a
reference picture goes, with that picture as its keeper (refinery/dedup/reference.py).

The same tests as the stages within the folder, asked of each picture against the whole
reference, best first: the same bytes (SHA-256), a near copy (pHash or dHash close and the
thumbnails correlating, evidence.near_copy), alike to the model (cosine at or over the
semantic threshold, an exact search of the reference's embeddings). A frame of a fixed
camera's scene is put to the scene test instead (two frames of one background look alike to
every picture test): the reference pictures nearest to it are measured against its scene's
background, and it goes when every thing stands where it stands in one of them.

Searches run from the judged pictures into the reference - a weekly batch against a
million reference pictures costs a batch's worth of queries, not a million's.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from refinery import ann
from refinery.config import NearConfig, ScenesConfig
from refinery.dedup.decisions import REMOVE, STAGES, Decisions, StageName
from refinery.dedup.evidence import Evidence, near_copy, same_frame_words
from refinery.dedup.funnel import Funnel
from refinery.dedup.grays import decoded_gray
from refinery.dedup.reference import Match, Reference
from refinery.dedup.stages.background import Background, Front
from refinery.dedup.stages.scenes import shift
from refinery.dedup.state import StageStats
from refinery.dedup.table import FeatureTable
from refinery.errors import UnreadableImage
from refinery.features import normalized_thumbs
from refinery.reasons import ReasonCode
from refinery.runner.session import l2_normalize
from refinery.spec import ModelSpec

log = logging.getLogger(__name__)

NAME = "against"  # its line in the stage table


class Against:
    """The reference stage: the judged pictures that a reference already holds."""

    name = NAME

    def run(self, funnel: Funnel) -> None:
        if not funnel.references:
            return
        t = time.perf_counter()
        run, stats = funnel.run, funnel.stats.setdefault(self.name, StageStats(self.name))
        rows = run.kept_rows()
        stats.seen = len(rows)
        scenes, _ = funnel.found_scenes()
        matches: dict[int, Match] = {}
        digests = run.table.digests(rows)
        for ref in funnel.references:
            _exact(digests, rows, ref, matches)
        frames = np.array([r for r in rows.tolist() if r not in matches and scenes.of(r) >= 0], np.int64)
        frames = frames[run.vector_row[frames] >= 0]
        if len(frames) and funnel.grays is not None:
            for ref in funnel.references:
                _same_frames(frames, funnel, ref, matches)
        pictures = np.array([r for r in rows.tolist() if r not in matches and scenes.of(r) < 0], np.int64)
        for ref in funnel.references:
            _near(pictures, run.table, ref, funnel.cfg.near, matches)
        pictures = np.array([r for r in pictures.tolist() if r not in matches and run.vector_row[r] >= 0], np.int64)
        if len(pictures):
            vectors = l2_normalize(funnel.store.rows(run.vector_row[pictures]))
            for ref in funnel.references:
                _alike(pictures, vectors, ref, funnel.cfg.semantic.threshold, matches)
        _drop_the_same_files(funnel, matches)
        funnel.proxies = matches  # they go at the end (settle), standing in for their reference pictures till then
        stats.removed = len(matches)
        stats.seconds = time.perf_counter() - t


def _drop_the_same_files(funnel: Funnel, matches: dict[int, Match]) -> None:
    """A reference picture that is the judged file itself (a link from the reference into the
    folder, followed) is no keeper of it: moving the file would take the picture from both."""
    if funnel.root is None:
        return
    paths = funnel.run.table.paths
    for row, match in list(matches.items()):
        try:
            if os.path.samefile(funnel.root / paths[row], match.ref.path(match.ref_row)):
                del matches[row]
        except OSError:
            continue


SCENE_CANDIDATES = 16  # a frame's nearest reference pictures to the model, each put to the scene test


def _same_frames(frames: np.ndarray, funnel: Funnel, ref: Reference, matches: dict[int, Match]) -> None:
    """Frames of a fixed camera: the scene test against the reference pictures nearest to the
    model (at or over the semantic threshold, as the frame pairs inside a folder are proposed):
    each read, and what stands in front of the frame's scene background measured in it; the
    same frame when every thing is at the same place (moved at most scenes.max_shift). A
    reference picture of another view has most of itself in front: never the same frame."""
    assert funnel.grays is not None
    run, cfg, spec = funnel.run, funnel.cfg, funnel.grays.spec
    scenes, _ = funnel.found_scenes()
    vectors = l2_normalize(funnel.store.rows(run.vector_row[frames]))
    sims, found = ref.exact_index().search(np.ascontiguousarray(vectors, np.float32), min(SCENE_CANDIDATES, len(ref)))
    fronts: dict[tuple[int, int], Front | None] = {}  # (scene, reference row): what stands in front
    for frame, near_sims, candidates in zip(frames.tolist(), sims.tolist(), found.tolist(), strict=True):
        if frame in matches or (background := scenes.backgrounds.get(scenes.of(frame))) is None:
            continue
        best: tuple[float, int] | None = None
        for sim, k in zip(near_sims, candidates, strict=True):
            if k < 0 or sim < cfg.semantic.threshold:
                break  # best first
            key = (scenes.of(frame), k)
            if key not in fronts:
                fronts[key] = _front(_gray(ref, k, spec), background, cfg.scenes)
            if (theirs := fronts[key]) is not None:
                moved = shift(scenes.frames[frame], theirs, cfg.scenes.max_shift)
                if moved <= cfg.scenes.max_shift and (best is None or moved < best[0]):
                    best = (moved, k)
        if best is not None:
            matches[frame] = Match(ref, best[1], StageName.SEMANTIC, {"largest_move": round(best[0], 4)})


def _gray(ref: Reference, k: int, spec: ModelSpec) -> np.ndarray | None:
    """Reference picture `k` in gray at the stages' size; None if it cannot be read now."""
    path = Path(ref.path(k))
    try:
        return decoded_gray(path, spec)
    except UnreadableImage as e:
        log.debug("%s: %s; not put to the scene test", path, e.reason)
        return None


def _front(gray: np.ndarray | None, background: Background, cfg: ScenesConfig) -> Front | None:
    """What of `gray` stands in front of `background`; None if there is no gray, it is of
    another size, or it is mostly in front (another view)."""
    if gray is None or gray.shape != background.median.shape:
        return None
    front = background.frame(gray, cfg)
    return front if front.foreground <= cfg.max_foreground else None


def _exact(digests: np.ndarray, rows: np.ndarray, ref: Reference, matches: dict[int, Match]) -> None:
    held: dict[bytes, int] = {}
    for k, digest in enumerate(ref.keys.digests().tolist()):
        held.setdefault(digest, k)  # bytes the reference holds twice: its first picture of them
    for row, digest in zip(rows.tolist(), digests.tolist(), strict=True):
        if row not in matches and digest in held:
            matches[row] = Match(ref, held[digest], StageName.EXACT)


def _near(rows: np.ndarray, table: FeatureTable, ref: Reference, cfg: NearConfig, matches: dict[int, Match]) -> None:
    """Near copies: candidates by either hash within its radius, confirmed by the thumbnails;
    each picture's best-correlated one."""
    rows = np.array([r for r in rows.tolist() if r not in matches], np.int64)
    if not len(rows) or not len(ref):
        return
    phash, dhash = table.columns["phash"][rows], table.columns["dhash"][rows]
    pairs = np.concatenate(
        [
            ann.across(ann.hash_codes(phash), ann.hash_codes(ref.keys.phash), cfg.max_phash),
            ann.across(ann.hash_codes(dhash), ann.hash_codes(ref.keys.dhash), cfg.max_dhash),
        ]
    )
    if not len(pairs):
        return
    i, j = pairs[:, 0], pairs[:, 1]  # a pair both hashes propose comes twice: judged alike, taken once
    dp = _bits(phash[i] ^ ref.keys.phash[j])
    dd = _bits(dhash[i] ^ ref.keys.dhash[j])
    corr = _correlations(table.thumb[rows], ref.keys.thumb, i, j)
    confirmed = np.flatnonzero(near_copy(dp, dd, corr, cfg))
    # the best-correlated first; ties by position, so the order the searches return is not a choice
    for k in confirmed[np.lexsort((j[confirmed], i[confirmed], -corr[confirmed]))].tolist():
        row = int(rows[i[k]])
        if row not in matches:
            scores = {
                "phash_distance": int(dp[k]),
                "dhash_distance": int(dd[k]),
                "thumb_correlation": round(float(corr[k]), 4),
            }
            matches[row] = Match(ref, int(j[k]), StageName.NEAR, scores)


def _correlations(ours: np.ndarray, theirs: np.ndarray, i: np.ndarray, j: np.ndarray, block: int = 8192) -> np.ndarray:
    """features.thumb_correlation of each pair (ours[i], theirs[j]). Hashes close on smooth
    backgrounds propose a million pairs for a thousand pictures: each thumbnail is normalised
    once, and the pairs are read off products of all of ours with a block of theirs at a time
    (a matrix product at BLAS speed, not a million gathered rows)."""
    a = normalized_thumbs(ours)
    used, at = np.unique(j, return_inverse=True)
    out = np.empty(len(i), np.float32)
    order = np.argsort(at, kind="stable")  # the pairs by their thumbnail of the reference
    ends = np.searchsorted(at[order], np.arange(0, len(used) + block, block))
    for start, (lo, hi) in enumerate(zip(ends[:-1], ends[1:], strict=True)):
        if lo == hi:
            continue
        b = normalized_thumbs(theirs[used[start * block : (start + 1) * block]])
        pairs = order[lo:hi]
        out[pairs] = (a @ b.T)[i[pairs], at[pairs] - start * block]
    level = theirs[used]
    one_gray = np.asarray(level.min(axis=1) == level.max(axis=1), bool)
    shapeless = np.asarray(~a.any(axis=1), bool)
    flat = shapeless[i] | one_gray[at]  # no shape to correlate: equal or not
    if flat.any():
        out[flat] = (ours[i[flat]] == theirs[j[flat]]).all(axis=1)
    return out


def _bits(x: np.ndarray) -> np.ndarray:
    counted: np.ndarray = np.unpackbits(x.astype(np.uint64).view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
    return counted


def _alike(rows: np.ndarray, vectors: np.ndarray, ref: Reference, threshold: float, matches: dict[int, Match]) -> None:
    """Alike to the model: the reference picture nearest in cosine, if at or over `threshold`."""
    if not len(ref):
        return
    sims, found = ref.exact_index().search(np.ascontiguousarray(vectors, np.float32), 1)
    for row, sim, k in zip(rows.tolist(), sims[:, 0].tolist(), found[:, 0].tolist(), strict=True):
        if k >= 0 and sim >= threshold and row not in matches:
            matches[row] = Match(ref, int(k), StageName.SEMANTIC, {"cosine": round(sim, 4)})


def settle(funnel: Funnel) -> None:
    """After every stage: each picture a reference holds goes against its reference picture,
    and so does every file removed as its duplicate (the same bytes: for the same reason; a
    near copy or a look-alike: by its own evidence, then the picture's reason). Till now it
    stood in for its reference picture: the keeper of any group it was in, so the picture's
    own copies in the folder follow it instead of staying behind."""
    decisions, proxies = funnel.run.decisions, funnel.proxies
    if not proxies:
        return
    evidence = Evidence(funnel.run.table, funnel.store, funnel.cfg.near, funnel.run.vector_row)
    scenes, _ = funnel.found_scenes()
    followers = []
    for row in np.flatnonzero((decisions.code == REMOVE) & (decisions.keeper >= 0)).tolist():
        final = int(decisions.keeper[row])
        while decisions.keeper[final] >= 0 and final not in proxies:
            final = int(decisions.keeper[final])
        if final in proxies and row not in proxies:
            followers.append((row, final))
    stats = funnel.stats
    for row, match in proxies.items():
        if decisions.code[row] == REMOVE and decisions.stage[row] >= 0:  # a later stage took it: it goes against REF
            stats[STAGES[decisions.stage[row]]].removed -= 1
        _remove(decisions, row, match)
    # what the semantic stage judged, counted as the scene grouping counts it, less the stand-ins
    stats[StageName.SEMANTIC].seen = stats[StageName.NEAR].seen - stats[StageName.NEAR].removed
    paths = funnel.run.table.paths
    for row, proxy in followers:
        match = proxies[proxy]
        if funnel.run.table.sha256[row].tobytes() == funnel.run.table.sha256[proxy].tobytes():
            _remove(decisions, row, match)  # the same bytes: the same relation to the reference picture
            continue
        stage = STAGES[decisions.stage[row]]
        if decisions.test.get(row) == "scene" and scenes.judged_by_scene(row, proxy):
            moved = round(scenes.shift(row, proxy), 4)
            own = same_frame_words(paths[proxy], moved)
            code, scores = ReasonCode.SAME_FRAME, {"largest_move": moved}
        else:
            own, code, scores = evidence.worded(row, proxy, paths[proxy], stage == StageName.SEMANTIC)
        _remove(decisions, row, Match(match.ref, match.ref_row, stage, scores))
        decisions.reason[row] = f"{own}, which goes too: {decisions.reason[proxy]}"
        decisions.reason_code[row] = code


def _remove(decisions: Decisions, row: int, match: Match) -> None:
    reason, code = match.reason()
    decisions.remove(row, match.stage, reason, reason_code=code)
    decisions.keeper[row] = -1
    digest = match.ref.keys.sha256[match.ref_row].tobytes().hex()
    decisions.in_reference[row] = (match.ref.path(match.ref_row), str(match.ref.source), digest)
    decisions.extra_scores[row] = match.scores
    decisions.test[row] = match.test
