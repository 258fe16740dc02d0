"""Stage 2a, exact copies: files with the same SHA-256."""

from __future__ import annotations

import time

import numpy as np

from refinery.dedup.decisions import StageName
from refinery.dedup.funnel import Funnel
from refinery.reasons import ReasonCode


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


class Exact:
    """Stage 2a: files with identical bytes; the keep rule's choice stays."""

    name = StageName.EXACT

    def run(self, funnel: Funnel) -> None:
        t = time.perf_counter()
        run, stats = funnel.run, funnel.stats[self.name]
        rows = run.kept_rows()
        stats.seen = len(rows)
        for group in exact_groups(run.table.digests(rows)):
            members = rows[group].tolist()
            keeper = funnel.choose(members)
            for row in members:
                if row != keeper:
                    run.decisions.remove(
                        row, self.name, "identical bytes (SHA-256)", keeper, reason_code=ReasonCode.IDENTICAL_BYTES
                    )
                    stats.removed += 1
        stats.seconds = time.perf_counter() - t
