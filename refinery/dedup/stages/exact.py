"""Stage 2a, exact copies: files with the same SHA-256."""

from __future__ import annotations

import numpy as np


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
