"""Stage 2b, near-exact copies: the same picture resized, re-encoded or converted, found by
perceptual hashes. A pair must be close in both dHash and pHash: on fixed-camera data two
different objects on the same background often share one hash but rarely both."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from refinery.config import NearConfig
from refinery.features import Features
from refinery.groups import hamming


def hash_array(values: Sequence[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def near_pairs(indices: Sequence[int], features: Sequence[Features], cfg: NearConfig) -> list[tuple[int, int]]:
    """Pairs of `indices` within both Hamming thresholds, found with a FAISS binary index."""
    import faiss

    if len(indices) < 2:
        return []
    idx = np.asarray(indices)
    ph = hash_array([features[i].phash for i in indices])
    dh = hash_array([features[i].dhash for i in indices])
    codes = ph.byteswap().view(np.uint8).reshape(-1, 8)  # big-endian bytes: bit order kept
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, _, found = index.range_search(codes, cfg.max_phash + 1)  # radius is exclusive
    rows = np.repeat(np.arange(len(idx)), np.diff(lims).astype(np.int64))
    keep = rows < found  # each pair once, no self pairs
    a, b = rows[keep], found[keep]
    close = hamming(dh[a], dh[b]) <= cfg.max_dhash
    return [(int(idx[i]), int(idx[j])) for i, j in zip(a[close], b[close], strict=True)]
