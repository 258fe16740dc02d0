"""Stage 3, semantic duplicates: embeddings -> FAISS inner-product range search -> graph ->
connected components -> one keeper per group.

Chaining guard: every removed picture must itself be similar to its group's keeper (see
groups.star_groups), not only linked to it through a chain of similar pictures.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

RowReader = Callable[[int, int], np.ndarray]  # (start, stop) -> float32 rows


# Rows per block of the pair search: memory holds two blocks (float32, 1280-d: 2 x 21 MB)
# and the index over one; searching 100,000 rows takes 300 block pairs.
BLOCK = 4096


def similar_pairs(vectors: np.ndarray | RowReader, threshold: float, count: int | None = None,
                  block: int = BLOCK) -> list[tuple[int, int, float]]:
    """All pairs (i < j) of L2-normalised rows with inner product >= threshold.

    `vectors` is a matrix, or a function (start, stop) -> float32 rows of `count` rows kept
    elsewhere (on disk). The search runs block against block: the same exact result as one
    search over everything, in bounded memory.
    """
    import faiss

    if isinstance(vectors, np.ndarray):
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        count = len(matrix)
        read: RowReader = lambda start, stop: matrix[start:stop]  # noqa: E731
    else:
        read = vectors
        assert count is not None, "count is needed with a row reader"
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
