"""Stage 3, semantic duplicates: embeddings -> FAISS inner-product range search -> graph ->
connected components -> one keeper per group.

Chaining guard: every removed picture must itself be similar to its group's keeper (see
groups.star_groups), not only linked to it through a chain of similar pictures.
"""

from __future__ import annotations

import numpy as np


def similar_pairs(vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """All pairs (i < j) of L2-normalised rows with inner product >= threshold."""
    import faiss

    if len(vectors) < 2:
        return []
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(v.shape[1])
    index.add(v)
    lims, sims, found = index.range_search(v, threshold)
    rows = np.repeat(np.arange(len(v)), np.diff(lims).astype(np.int64))
    keep = rows < found
    return [(int(a), int(b), float(s)) for a, b, s in zip(rows[keep], found[keep], sims[keep], strict=True)]


