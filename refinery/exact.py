"""Stage 2a, exact copies: files with the same SHA-256."""

from __future__ import annotations

from collections.abc import Sequence

from refinery.features import Features


def exact_groups(indices: Sequence[int], features: Sequence[Features]) -> list[list[int]]:
    """Groups (size > 1) of `indices` whose files have identical bytes."""
    by_hash: dict[str, list[int]] = {}
    for i in indices:
        by_hash.setdefault(features[i].sha256, []).append(i)
    return sorted((g for g in by_hash.values() if len(g) > 1), key=lambda g: g[0])
