"""Stage 2b, near-exact copies: the same picture resized, re-encoded, converted, recoloured
or blurred. A pair is a near copy when its perceptual hashes are close (pHash or dHash
within a few bits) and its 16x16 gray thumbnails correlate (>= min_correlation): on
fixed-camera data different objects on one background come within a few hash bits, so the
hashes alone are not trusted.

Up to `exact_up_to` pictures the hashes propose the candidates (FAISS binary range searches,
exact but quadratic: 3 s at 100,000, 7.5 minutes a radius at 1,000,000) and the thumbnails
confirm them. Beyond, the confirmation itself is the search: thumbnails as zero-mean unit
rows in an IVF index (ann.approximate_pairs), and the hashes checked on what it finds.
"""

from __future__ import annotations

import time

import numpy as np

from refinery import ann
from refinery.config import NearConfig
from refinery.dedup.decisions import StageName
from refinery.dedup.evidence import Evidence, near_copy
from refinery.dedup.funnel import Funnel
from refinery.dedup.groups import star_groups
from refinery.dedup.stages.scenes import split_pairs
from refinery.dedup.state import remove_stars
from refinery.features import normalized_thumbs

# The IVF stores float16 codes: search a little below the threshold, then confirm in float32.
SEARCH_SLACK = 0.002


def near_pairs(phash: np.ndarray, dhash: np.ndarray, thumbs: np.ndarray, cfg: NearConfig) -> np.ndarray:
    """Confirmed near pairs as an (K, 2) int64 array of row positions (i < j), sorted:
    pHash within max_phash or dHash within max_dhash, and thumbnail correlation >=
    min_correlation (flat thumbnails: equal bytes)."""
    if len(phash) < 2:
        return np.zeros((0, 2), np.int64)
    if len(phash) <= cfg.exact_up_to:
        candidates = np.concatenate(
            [ann.within(ann.hash_codes(phash), cfg.max_phash), ann.within(ann.hash_codes(dhash), cfg.max_dhash)]
        )
    else:
        candidates = _correlated_pairs(thumbs, cfg.min_correlation - SEARCH_SLACK, cfg.nprobe)
    # one key a pair: np.unique on rows (axis=0) sorts them as records, ten times slower
    keys = np.unique(candidates[:, 0] * len(phash) + candidates[:, 1])
    pairs = np.stack([keys // len(phash), keys % len(phash)], axis=1)
    confirmed: np.ndarray = pairs[
        near_copy(_distances(pairs, phash), _distances(pairs, dhash), _correlations(pairs, thumbs), cfg)
    ]
    return confirmed


def _distances(pairs: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """The Hamming distance between the two 64-bit hashes of each pair."""
    x = (hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]]).view(np.uint8).reshape(-1, 8)
    bits: np.ndarray = np.unpackbits(x, axis=1).sum(axis=1)
    return bits


def _correlations(pairs: np.ndarray, thumbs: np.ndarray, block: int = 8192) -> np.ndarray:
    """features.thumb_correlation of every pair, a block of pairs at a time (8,192 pairs: ~25 MB
    of float rows)."""
    out = np.zeros(len(pairs), np.float32)
    for start in range(0, len(pairs), block):
        i, j = pairs[start : start + block, 0], pairs[start : start + block, 1]
        rows, at = np.unique(np.concatenate([i, j]), return_inverse=True)  # each row normalised once
        normal = normalized_thumbs(thumbs[rows])
        a, b = normal[at[: len(i)]], normal[at[len(i) :]]
        flat = ~a.any(axis=1) | ~b.any(axis=1)  # no shape to correlate: equal or not
        same = (thumbs[i] == thumbs[j]).all(axis=1)
        out[start : start + block] = np.where(flat, same, np.einsum("ij,ij->i", a, b))
    return out


def _correlated_pairs(thumbs: np.ndarray, threshold: float, nprobe: int) -> np.ndarray:
    """Pairs whose thumbnails correlate above `threshold`, from an IVF index of the
    normalised thumbnails; flat thumbnails (zero rows, never found by it) pair by equal bytes."""

    def read(start: int, stop: int) -> np.ndarray:
        return normalized_thumbs(thumbs[start:stop])

    pairs, _ = ann.approximate_pair_array(read, len(thumbs), threshold, nprobe)
    flat = np.flatnonzero(thumbs.min(axis=1) == thumbs.max(axis=1))
    same: dict[bytes, list[int]] = {}
    for row in flat.tolist():
        same.setdefault(thumbs[row].tobytes(), []).append(row)
    extra = [(a, b) for rows in same.values() for k, a in enumerate(rows) for b in rows[k + 1 :]]
    return np.concatenate([pairs, np.array(extra, np.int64).reshape(-1, 2)])


class Near:
    """Stage 2b: near-exact copies - close perceptual hashes, confirmed by the thumbnails."""

    name = StageName.NEAR

    def run(self, funnel: Funnel) -> None:
        t = time.perf_counter()
        run, stats, near = funnel.run, funnel.stats[self.name], funnel.cfg.near
        scenes, moving = funnel.found_scenes()
        table = run.table
        rows = run.kept_rows()
        stats.seen = funnel.judged(rows)
        phash, dhash = table.columns["phash"], table.columns["dhash"]
        found = near_pairs(phash[rows], dhash[rows], table.thumb[rows], near)
        evidence = Evidence(table, None, near)
        pairs = split_pairs([(a, b) for a, b in rows[found].tolist()], scenes, funnel.frame_pairs)
        confirmed = moving.same_pairs(pairs)

        def goes_for(i: int, keeper: int) -> bool:
            # A frame of a scene goes only as a copy of a frame of its scene (the frame stage);
            # a view the camera panned away from is another picture, and so is a frame of a
            # moving camera whose things moved.
            return scenes.of(i) < 0 and evidence.near_copy(i, keeper) and moving.same(i, keeper)

        # Only confirmed pairs are grouped: a rejected candidate (another object on the same
        # background) must not join two groups. A keeper still removes only members confirmed
        # against itself.
        groups, funnel.chain_splits[self.name] = star_groups(confirmed, funnel.choose, goes_for)
        remove_stars(run, groups, self.name, stats)
        stats.seconds = time.perf_counter() - t
