"""What the stages measure between two pictures, and each removed file's reason, measured
against its final keeper."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from refinery.config import Config, NearConfig
from refinery.dedup.decisions import REMOVE, STAGES, Decisions, StageName
from refinery.dedup.groups import KeepRule
from refinery.dedup.stages.scenes import Scenes
from refinery.dedup.state import Run
from refinery.dedup.table import FeatureTable
from refinery.dedup.vectors import VectorStore
from refinery.features import thumb_correlation
from refinery.reasons import ReasonCode

log = logging.getLogger(__name__)


def near_copy(phash_distance: Any, dhash_distance: Any, correlation: Any, cfg: NearConfig) -> Any:
    """The near stage's rule: pHash within max_phash or dHash within max_dhash, and the 16x16
    thumbnails correlating min_correlation or more (features.thumb_correlation: flat ones by
    their bytes). For one pair (ints and a float: a bool) or many (arrays: a bool array)."""
    hashes_close = (phash_distance <= cfg.max_phash) | (dhash_distance <= cfg.max_dhash)
    return hashes_close & (correlation >= cfg.min_correlation)


def same_frame_words(name: str, moved: float) -> str:
    """Why a fixed camera's frame is the same as frame `name`, in words."""
    return f"the same frame as {name}: the same things at the same places (moved at most {moved:g} of their size)"


class Evidence:
    """What the stages measure between two pictures, from the run's columns."""

    def __init__(
        self, table: FeatureTable, store: VectorStore | None, near: NearConfig, vector_row: np.ndarray | None = None
    ):
        self.table, self.store, self.near, self.vector_row = table, store, near, vector_row

    def hash_distances(self, i: int, j: int) -> tuple[int, int]:
        c = self.table.columns
        return (int(c["phash"][i] ^ c["phash"][j]).bit_count(), int(c["dhash"][i] ^ c["dhash"][j]).bit_count())

    def correlation(self, i: int, j: int) -> float:
        return thumb_correlation(self.table.thumb[i].tobytes(), self.table.thumb[j].tobytes())

    def near_copy(self, i: int, keeper: int) -> bool:
        return bool(near_copy(*self.hash_distances(i, keeper), self.correlation(i, keeper), self.near))

    def worded(self, i: int, keeper: int, name: str, semantic: bool) -> tuple[str, ReasonCode, dict[str, float]]:
        """Why `i` is a duplicate of `keeper` (called `name`), by what holds against it - a near
        copy of it, or alike in its embedding (`semantic`: the semantic stage found it) - with
        the scores measured."""
        dp, dd = self.hash_distances(i, keeper)
        corr = round(self.correlation(i, keeper), 4)
        cos = self.cosine(i, keeper)
        scores: dict[str, float] = {"phash_distance": dp, "dhash_distance": dd, "thumb_correlation": corr}
        if cos is not None:
            scores["cosine"] = round(cos, 4)
        if cos is not None and (semantic or not self.near_copy(i, keeper)):
            return f"looks like {name} (cosine {round(cos, 4)})", ReasonCode.LOOKS_LIKE, scores
        text = f"same picture as {name} (pHash {dp}, dHash {dd} bits, thumbnail correlation {corr})"
        return text, ReasonCode.SAME_PICTURE, scores

    def cosine(self, i: int, j: int) -> float | None:
        if self.store is None or self.vector_row is None or self.vector_row[i] < 0 or self.vector_row[j] < 0:
            return None
        a, b = self.store.rows([self.vector_row[i], self.vector_row[j]])
        return float(a @ b)


def _say_why_kept(decisions: Decisions, removed: list[int], keep: KeepRule) -> None:
    """Each keeper's reason: why it stays rather than the files removed as its duplicates (a
    fixed camera's frame: the one most of them are the same as)."""
    duplicates: dict[int, list[int]] = {}
    for row in removed:
        duplicates.setdefault(int(decisions.keeper[row]), []).append(row)
    for keeper, rows in duplicates.items():
        if any(decisions.test.get(row) == "scene" for row in rows):
            decisions.reason[keeper] = "kept: the frame the others are the same as"
        else:
            decisions.reason[keeper] = keep.kept_because(keeper, rows)


def explain(
    run: Run, store: VectorStore, cfg: Config, scenes: Scenes, first_keeper: np.ndarray, keep: KeepRule | None = None
) -> None:
    """Each removed duplicate's reason and scores, measured against its final keeper (the
    file that stays), not against a partner that was itself removed later - but a byte copy
    whose twin went later says so first: "identical bytes to its twin, which goes too: (the
    twin's reason)", with the twin's code (the code says why it goes against the keeper)."""
    decisions, table = run.decisions, run.table
    evidence = Evidence(table, store, cfg.near, run.vector_row)
    paths = table.paths
    removed = np.flatnonzero((decisions.code == REMOVE) & (decisions.keeper >= 0)).tolist()
    for row in removed:
        keeper = int(decisions.keeper[row])
        stage = STAGES[decisions.stage[row]]
        through = f"; through {paths[first_keeper[row]]}" if first_keeper[row] != keeper else ""
        if table.sha256[row].tobytes() == table.sha256[keeper].tobytes():
            decisions.reason[row] = f"identical bytes to {paths[keeper]} (SHA-256)"
            decisions.reason_code[row] = ReasonCode.IDENTICAL_BYTES
            decisions.extra_scores.pop(row, None)
            decisions.test[row] = "picture"
            continue
        if scenes.judged_by_scene(row, keeper):
            moved = round(scenes.shift(row, keeper), 4)
            decisions.reason[row] = same_frame_words(paths[keeper], moved) + through
            decisions.reason_code[row] = ReasonCode.SAME_FRAME
            decisions.extra_scores[row] = {"largest_move": moved}
            decisions.test[row] = "scene"
            continue
        text, code, scores = evidence.worded(row, keeper, paths[keeper], stage == StageName.SEMANTIC)
        decisions.reason[row], decisions.reason_code[row] = text + through, code
        decisions.extra_scores[row] = scores
        decisions.test[row] = "picture"
    for row in removed:  # what chose the keeper, where the settings did: "; kept: the oldest of its group"
        note = keep.why(int(decisions.keeper[row]), row) if keep is not None else ""
        if note:
            decisions.reason[row] += f"; {note}"
    if keep is not None:
        _say_why_kept(decisions, removed, keep)
    exact = STAGES.index(StageName.EXACT)
    for row in removed:
        twin = int(first_keeper[row])
        if decisions.stage[row] == exact and twin != decisions.keeper[row]:  # its twin went as well
            twin_reason = decisions.reason[twin]
            decisions.reason[row] = f"identical bytes to {paths[twin]} (SHA-256), which goes too: {twin_reason}"
            decisions.reason_code[row] = decisions.reason_code[twin]
