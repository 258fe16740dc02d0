"""Stage 2a, exact copies: files with the same SHA-256."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from refinery.dedup.state import Run, StageStats


def exact_groups(digests: np.ndarray) -> list[np.ndarray]:
    """Groups (size > 1) of positions in `digests` (one comparable value per file, e.g.
    FeatureTable.digests) holding the same bytes, each ascending, listed by first position."""
    if len(digests) < 2:
        return []
    _, inverse, counts = np.unique(digests, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")  # positions grouped by digest, ascending inside
    bounds = np.cumsum(counts)[:-1]
    groups = [g for g in np.split(order, bounds) if len(g) > 1]
    return sorted(groups, key=lambda g: int(g[0]))


def run_exact(run: Run, stages: dict[str, StageStats], choose: Callable[[list[int]], int]) -> None:
    """Stage 2a: files with identical bytes; the keep rule's choice stays."""
    t = time.perf_counter()
    rows = run.judged()
    stages["exact"].seen = len(rows)
    for group in exact_groups(run.table.digests(rows)):
        members = rows[group].tolist()
        keeper = choose(members)
        for row in members:
            if row != keeper:
                run.decisions.remove(row, "exact", "identical bytes (SHA-256)", keeper)
                stages["exact"].removed += 1
    stages["exact"].seconds = time.perf_counter() - t
