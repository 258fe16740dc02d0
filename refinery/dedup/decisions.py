"""What a dedup run decided for each file, kept in columns and read as report lines.

The report has a line per file; a million lines as objects would cost more than the
grouping itself, so the decisions live in arrays (a code per file, a keeper row per
removed file) and each FileDecision is built when it is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

import numpy as np

from refinery.dedup.checks import Judged
from refinery.dedup.table import QUALITY_SCORES, FeatureTable
from refinery.reasons import ReasonCode


class StageName(str, Enum):
    """The stages that remove files, in the funnel's order; the value is what a report says."""

    QUALITY = "quality"
    EXACT = "exact"
    NEAR = "near"
    SEMANTIC = "semantic"

    def __str__(self) -> str:  # "near", not "StageName.NEAR", in text and f-strings
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


STAGES = tuple(StageName)
DECISIONS = ("keep", "remove", "error", "skip")
KEEP, REMOVE, ERROR, SKIP = range(len(DECISIONS))


@dataclass(slots=True)
class FileDecision:
    """One line of the report: what happened to one file, and why."""

    path: str
    decision: str  # keep | remove | error | skip
    stage: str | None = None  # the stage that removed it
    reason: str = ""
    group: int | None = None  # duplicate group id (shared with its keeper), or None
    kept_as: str | None = None  # the keeper this file is a duplicate of
    scores: dict[str, float] = field(default_factory=dict)
    # which test found it a duplicate of its keeper: "picture" (the whole picture: bytes,
    # hashes and thumbnails, or embeddings) or "scene" (frames of one fixed camera, by what
    # stands in front of the background); None for keepers and other removals
    test: str | None = None
    # the file as it was judged (its size, mtime and SHA-256); what `refinery apply` checks
    # before it acts on the line (None for errors and skips)
    file: Judged | None = None
    # `reason` as a code for programs (refinery/reasons.py); None for a kept file
    reason_code: str | None = None
    # the reference (`dedup --against REF`, resolved) that holds `kept_as`; None when the keeper
    # is in the judged folder, or there is none
    against: str | None = None
    # that reference picture's SHA-256 as judged: `refinery apply` checks it is still that picture
    kept_as_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report's JSON line: every field, in FIELDS order."""
        line = {key: getattr(self, key) for key in FIELDS}
        line["file"] = None if self.file is None else self.file.to_json()
        return line

    def csv_row(self) -> list[object]:
        """The report's CSV row (CSV_FIELDS): None as an empty cell, the scores and the file as
        JSON text, then each score in its own column (empty where the line has none)."""

        def cell(value: object) -> object:
            return json.dumps(value) if isinstance(value, dict) else "" if value is None else value

        return [cell(value) for value in self.as_dict().values()] + [cell(self.scores.get(n)) for n in SCORE_NAMES]


# The report line's fields, in order (new fields are added last: readers of the earlier ones
# are unaffected).
FIELDS = tuple(f.name for f in fields(FileDecision))
# What explain() measures of a removed duplicate against its keeper (dedup/evidence.py).
PAIR_SCORES = ("phash_distance", "dhash_distance", "thumb_correlation", "cosine", "largest_move")
SCORE_NAMES = (*QUALITY_SCORES, *PAIR_SCORES)
# The CSV's columns: the report line's fields, then each score on its own ("scores.cosine"), so
# a spreadsheet can sort and filter by it without reading JSON text.
CSV_FIELDS = FIELDS + tuple(f"scores.{name}" for name in SCORE_NAMES)


class Decisions(Sequence[FileDecision]):
    """The decision on every row of `table`, listed in path order.

    Every row starts as `keep`; the pass marks errors and skips, the stages removals.
    """

    def __init__(self, table: FeatureTable):
        n = len(table)
        self.table = table
        self.code = np.full(n, KEEP, np.int8)
        self.stage = np.full(n, -1, np.int8)  # index into STAGES of the stage that removed it
        self.keeper = np.full(n, -1, np.int64)  # the row a removed file is a duplicate of
        self.group = np.zeros(n, np.int32)  # 0: in no group
        self.reason: dict[int, str] = {}  # only rows that have one
        self.reason_code: dict[int, ReasonCode] = {}  # the reason as a code, likewise
        self.extra_scores: dict[int, dict[str, float]] = {}  # what a stage measured against the keeper
        self.test: dict[int, str] = {}  # "picture" or "scene": which test made a duplicate of it
        # a row removed as the same as a reference picture: (that picture's path, the reference,
        # its SHA-256)
        self.in_reference: dict[int, tuple[str, str, str]] = {}
        self.stat = np.full((n, 2), -1, np.int64)  # (size, mtime_ns) of each file when it was read
        self._order: np.ndarray | None = None

    def mark(self, row: int, code: int, reason: str, reason_code: ReasonCode) -> None:
        """An error or a skip."""
        self.code[row], self.reason[row], self.reason_code[row] = code, reason, reason_code

    def remove(
        self, row: int, stage: StageName, reason: str, keeper: int | None = None, reason_code: ReasonCode | None = None
    ) -> None:
        """`row` removed by `stage`; a duplicate's reason and code may be written later
        (evidence.explain, against its final keeper)."""
        self.code[row], self.stage[row], self.reason[row] = REMOVE, STAGES.index(stage), reason
        if reason_code is not None:
            self.reason_code[row] = reason_code
        if keeper is not None:
            self.keeper[row] = keeper

    def rows(self, code: int) -> np.ndarray:
        return np.flatnonzero(self.code == code)

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.code, minlength=len(DECISIONS))
        return {name: int(found[k]) for k, name in enumerate(DECISIONS)}

    def assign_groups(self) -> None:
        """Follow each removed file to its final keeper (a keeper can itself have been
        removed by a later stage); number the groups by the keeper's path."""
        removed = np.flatnonzero(self.keeper >= 0)
        final = self.keeper[removed]
        while (later := self.keeper[final] >= 0).any():
            final = np.where(later, self.keeper[final], final)
        self.keeper[removed] = final
        paths = self.table.paths
        # a group a keeper, in the folder (its row) or in a reference (its path), numbered by path
        keepers: list[tuple[str, int | None]] = [(paths[row], row) for row in set(final.tolist())]
        keepers += [(path, None) for path in {path for path, _, _ in self.in_reference.values()}]
        number = {key: gid for gid, key in enumerate(sorted(keepers, key=lambda k: k[0]), start=1)}
        for (_, row), gid in number.items():
            if row is not None:
                self.group[row] = gid
        self.group[removed] = self.group[final]
        for row, (path, _, _) in self.in_reference.items():
            self.group[row] = number[(path, None)]

    def line(self, row: int) -> FileDecision:
        """The report line of `row`."""
        code = int(self.code[row])
        scores = self.table.scores(row) if code in (KEEP, REMOVE) and self.table.filled[row] else {}
        scores.update(self.extra_scores.get(row, {}))
        keeper = int(self.keeper[row])
        kept_in, against, kept_sha256 = self.in_reference.get(row, (None, None, None))
        return FileDecision(
            self.table.paths[row],
            DECISIONS[code],
            STAGES[self.stage[row]].value if self.stage[row] >= 0 else None,
            self.reason.get(row, ""),
            int(self.group[row]) or None,
            self.table.paths[keeper] if keeper >= 0 else kept_in,
            scores,
            self.test.get(row),
            self.file_as_judged(row),
            self._reason_code(row),
            against,
            kept_sha256,
        )

    def _reason_code(self, row: int) -> str | None:
        code = self.reason_code.get(row)
        return None if code is None else code.value

    def file_as_judged(self, row: int) -> Judged | None:
        """What was judged of the file at `row`: its size, modification time and SHA-256."""
        code = int(self.code[row])
        size, mtime = self.stat[row].tolist()
        if code not in (KEEP, REMOVE) or not self.table.filled[row] or size < 0:
            return None
        return Judged(size, mtime, self.table.sha256[row].tobytes().hex())

    def order(self) -> np.ndarray:
        """Rows sorted by path (the report's order)."""
        if self._order is None:
            paths = self.table.paths
            self._order = np.array(sorted(range(len(paths)), key=paths.__getitem__), np.int64)
        return self._order

    def __len__(self) -> int:
        return len(self.code)

    def __getitem__(self, k: int | slice) -> FileDecision | list[FileDecision]:  # type: ignore[override]
        if isinstance(k, slice):
            return [self.line(int(row)) for row in self.order()[k]]
        return self.line(int(self.order()[k]))

    def __iter__(self) -> Iterator[FileDecision]:
        for row in self.order():
            yield self.line(int(row))
