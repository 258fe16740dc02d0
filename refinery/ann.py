"""Approximate and exact nearest-neighbour search with FAISS, in one place: the pair searches
of the near and semantic stages (exact block against block up to a size, an inverted file
beyond), the Hamming range search of perceptual hashes, and the retrieval index (exact inner
product, HNSW beyond)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import faiss  # imported where it is used: `refinery --help` loads no FAISS

RowReader = Callable[[int, int], np.ndarray]  # (start, stop) -> float32 rows

# Rows per block of the pair search: memory holds two blocks (float32, 1280-d: 2 x 21 MB)
# and the index over one; searching 100,000 rows takes 300 block pairs.
BLOCK = 4096
EXACT_UP_TO = 50_000  # retrieval: pictures; beyond, HNSW (see benchmarks/README.md, "Retrieval index")
HNSW_M = 32
HNSW_EF_SEARCH = 128


def similar_pairs(
    vectors: np.ndarray | RowReader,
    threshold: float,
    count: int | None = None,
    block: int = BLOCK,
    exact_up_to: int | None = None,
    nprobe: int = 8,
) -> list[tuple[int, int, float]]:
    """All pairs (i < j) of L2-normalised rows with inner product >= threshold.

    `vectors` is a matrix, or a function (start, stop) -> float32 rows of `count` rows kept
    elsewhere (on disk). Up to `exact_up_to` rows (all, when None) the search is exact and
    runs block against block: the same result as one search over everything, in bounded
    memory, but quadratic in time. Beyond, an inverted file (IVF, float16 codes) searches
    `nprobe` of its lists per row (approximate_pairs).
    """
    if isinstance(vectors, np.ndarray):
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        count = len(matrix)
        read: RowReader = lambda start, stop: matrix[start:stop]  # noqa: E731
    else:
        read = vectors
        assert count is not None, "count is needed with a row reader"
    if exact_up_to is not None and count > exact_up_to:
        return approximate_pairs(read, count, threshold, nprobe, block)
    return _exact_pairs(read, count, threshold, block)


def _exact_pairs(read: RowReader, count: int, threshold: float, block: int) -> list[tuple[int, int, float]]:
    import faiss

    pairs: list[tuple[int, int, float]] = []
    for b0 in range(0, count, block):
        base = read(b0, min(count, b0 + block))
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        for q0 in range(0, b0 + 1, block):  # query blocks up to this one: each pair once
            queries = base if q0 == b0 else read(q0, q0 + block)
            lims, sims, found = index.range_search(queries, threshold)
            rows = np.repeat(np.arange(len(queries)), np.diff(lims).astype(np.int64)) + q0
            cols = found + b0
            keep = rows < cols
            pairs += zip(rows[keep].tolist(), cols[keep].tolist(), sims[keep].tolist(), strict=True)
    return sorted(pairs)


def approximate_pairs(
    read: RowReader, count: int, threshold: float, nprobe: int = 8, block: int = BLOCK
) -> list[tuple[int, int, float]]:
    """Pairs above `threshold` from an IVF index: ~4 sqrt(N) lists (k-means on a spread-out
    sample), float16 codes (the run keeps its vectors in float16 anyway), each row compared
    with the rows of its `nprobe` nearest lists only. A pair found from either side counts;
    benchmarks/scale.py measures what share of the exact pairs it finds."""
    pairs, sims = approximate_pair_array(read, count, threshold, nprobe, block)
    return list(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), sims.tolist(), strict=True))


def approximate_pair_array(
    read: RowReader, count: int, threshold: float, nprobe: int = 8, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """approximate_pairs as arrays: (K, 2) int64 pairs (i < j, sorted) and their K
    similarities - 16 bytes a pair instead of ~150 as Python tuples."""
    import faiss

    first = read(0, min(count, block))
    dim = first.shape[1]
    nlist = max(1, min(int(4 * np.sqrt(count)), count // 40))  # k-means wants ~40 rows per list
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    index.train(_spread_sample(read, count, min(count, 40 * nlist), block))
    for start in range(0, count, block):
        index.add(read(start, min(count, start + block)))
    index.nprobe = nprobe
    keys, sims = [], []
    for start in range(0, count, block):
        lims, found_sims, cols = index.range_search(read(start, min(count, start + block)), threshold)
        rows = np.repeat(np.arange(len(lims) - 1), np.diff(lims).astype(np.int64)) + start
        other = rows != cols
        rows, cols = rows[other], cols[other]
        keys.append(np.minimum(rows, cols) * count + np.maximum(rows, cols))  # one key per pair, either side
        sims.append(found_sims[other])
    key, first = np.unique(np.concatenate(keys), return_index=True)  # sorted by (i, j)
    return np.stack([key // count, key % count], axis=1), np.concatenate(sims)[first]


def _spread_sample(read: RowReader, count: int, size: int, block: int) -> np.ndarray:
    """About `size` rows taken in runs from across all `count` rows (files come in path order:
    the first rows alone would train the lists on one folder)."""
    runs = max(1, size // block)
    starts = np.linspace(0, max(0, count - block), runs).astype(int)
    return np.concatenate([read(s, min(count, s + max(1, size // runs))) for s in starts])


def hash_codes(values: Sequence[int] | np.ndarray) -> np.ndarray:
    """64-bit hashes as (N, 8) uint8 rows, most significant byte first, for FAISS."""
    codes: np.ndarray = np.asarray(values, dtype=np.uint64).byteswap().view(np.uint8).reshape(-1, 8)
    return codes


def within(codes: np.ndarray, radius: int) -> np.ndarray:
    """Row pairs (i < j) at Hamming distance <= radius, as an (K, 2) int64 array."""
    import faiss

    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, _, found = index.range_search(codes, radius + 1)  # FAISS's radius is exclusive
    rows = np.repeat(np.arange(len(codes)), np.diff(lims).astype(np.int64))
    keep = rows < found  # each pair once, no self pairs
    return np.stack([rows[keep], found[keep].astype(np.int64)], axis=1)


def across(queries: np.ndarray, codes: np.ndarray, radius: int) -> np.ndarray:
    """Pairs (query row, code row) at Hamming distance <= radius between two sets of hash codes."""
    import faiss

    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, _, found = index.range_search(queries, radius + 1)  # FAISS's radius is exclusive
    rows = np.repeat(np.arange(len(queries)), np.diff(lims).astype(np.int64))
    return np.stack([rows, found.astype(np.int64)], axis=1)


def make_faiss_index(vectors: np.ndarray, exact_up_to: int = EXACT_UP_TO) -> faiss.Index:
    """Exact inner product for up to `exact_up_to` rows, HNSW beyond."""
    import faiss

    dim = vectors.shape[1]
    index: faiss.Index
    if len(vectors) <= exact_up_to:
        index = faiss.IndexFlatIP(dim)
    else:
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        index = hnsw
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, np.float32))
    return index
