"""Stage 2b, near-exact copies: the same picture resized, re-encoded, converted, recoloured
or blurred. Perceptual hashes propose candidates: pairs within the pHash or the dHash
threshold, found with FAISS binary indexes (no all-pairs loop). The hashes alone are not
trusted: on fixed-camera data different objects on one background come within a few bits;
the pipeline confirms each candidate with the pictures' thumbnails."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from refinery.config import NearConfig
from refinery.features import Features


def hash_codes(values: Sequence[int]) -> np.ndarray:
    """64-bit hashes as (N, 8) uint8 rows, most significant byte first, for FAISS."""
    return np.array(values, dtype=np.uint64).byteswap().view(np.uint8).reshape(-1, 8)


def within(codes: np.ndarray, radius: int) -> set[tuple[int, int]]:
    """Row pairs (i < j) at Hamming distance <= radius."""
    import faiss

    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, _, found = index.range_search(codes, radius + 1)  # FAISS's radius is exclusive
    rows = np.repeat(np.arange(len(codes)), np.diff(lims).astype(np.int64))
    keep = rows < found  # each pair once, no self pairs
    return set(zip(rows[keep].tolist(), found[keep].tolist(), strict=True))


def near_pairs(indices: Sequence[int], features: Sequence[Features], cfg: NearConfig) -> list[tuple[int, int]]:
    """Candidate pairs of `indices`: within max_phash in pHash or within max_dhash in dHash."""
    if len(indices) < 2:
        return []
    ph = hash_codes([features[i].phash for i in indices])
    dh = hash_codes([features[i].dhash for i in indices])
    pairs = within(ph, cfg.max_phash) | within(dh, cfg.max_dhash)
    return sorted((indices[a], indices[b]) for a, b in pairs)
