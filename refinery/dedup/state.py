"""What a dedup run knows of every file, in columns: the feature table, the decisions and
the pass's bookkeeping; and each stage's counts."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from refinery.dedup.decisions import ERROR, KEEP, SKIP, Decisions, StageName
from refinery.dedup.groups import StarGroup
from refinery.dedup.table import FeatureTable
from refinery.features import Features
from refinery.reasons import Reason, ReasonCode

log = logging.getLogger(__name__)


NOT_REACHED = "not reached: the run was interrupted"


@dataclass
class StageStats:
    name: str
    seen: int = 0
    removed: int = 0
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return self.seen - self.removed


class Run:
    """What a run knows of every file, by row (row i is paths[i]): the feature table, the
    decisions, and the pass's bookkeeping - columns, not an object per file."""

    def __init__(self, paths: list[str]):
        n = len(paths)
        self.table = FeatureTable(paths)
        self.decisions = Decisions(self.table)
        self.vector_row = np.full(n, -1, np.int64)  # its row in the run's VectorStore
        self.done = np.zeros(n, bool)  # its work came back (from the cache or a worker)
        self.cached = np.zeros(n, bool)
        self.stat = self.decisions.stat  # (size, mtime_ns): the cache key, and what was judged; -1 if unknown
        self.quality: dict[int, Reason] = {}  # why a row fails the quality stage
        self.copy_of: dict[int, bytes] = {}  # row -> SHA-256 of bytes another row claimed first

    def error(self, row: int, reason: str) -> None:
        """The file could not be read, decoded or hashed."""
        self.decisions.mark(row, ERROR, reason, ReasonCode.UNREADABLE)

    def skip(self, row: int, reason: str, reason_code: ReasonCode) -> None:
        self.decisions.mark(row, SKIP, reason, reason_code)

    def kept_rows(self) -> np.ndarray:
        """Rows with features and no error or skip: the ones the stages judge."""
        return np.flatnonzero(self.table.filled & (self.decisions.code == KEEP))


@dataclass(slots=True)
class Picture:
    """What a worker found for one file of its chunk (the main thread files it in the run)."""

    row: int
    features: Features | None = None
    error: str = ""
    copy_of: bytes | None = None  # SHA-256 already claimed by another file: not decoded
    defect: Reason | None = None  # why it fails the quality stage
    skip: str = ""  # why it is not judged (no face)
    vector: np.ndarray | None = None
    gray: np.ndarray | None = None  # for the run's GrayStore


def remove_stars(run: Run, groups: list[StarGroup], stage: StageName, stats: StageStats) -> None:
    """Mark each group's subjects removed by `stage` as duplicates of its keeper (the reason
    is written once every stage has run: evidence.explain)."""
    for group in groups:
        for row in group.subjects:
            run.decisions.remove(row, stage, "", group.keeper)
            stats.removed += 1
