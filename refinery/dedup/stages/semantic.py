"""Stage 3, semantic duplicates: embeddings -> FAISS inner-product range search (refinery/ann.py)
-> graph -> connected components -> one keeper per group.

Chaining guard: every removed picture must itself be similar to its group's keeper (see
groups.star_groups), not only linked to it through a chain of similar pictures.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from refinery import ann
from refinery.config import Config
from refinery.dedup.evidence import Evidence
from refinery.dedup.groups import star_groups
from refinery.dedup.stages.moving import MovingCamera
from refinery.dedup.stages.scenes import Scenes, split_pairs
from refinery.dedup.state import Run, StageStats, remove_stars
from refinery.dedup.vectors import VectorStore


def run_semantic(run: Run, store: VectorStore, cfg: Config, stages: dict[str, StageStats],
                 choose: Callable[[list[int]], int], scenes: Scenes, frame_pairs: list[tuple[int, int]],
                 moving: MovingCamera) -> int:
    """3. semantic duplicates: embeddings close in cosine, grouped around a keeper."""
    t = time.perf_counter()
    rows = run.judged()
    stages["semantic"].seen = len(rows)
    threshold = cfg.semantic.threshold
    vector_rows = run.vector_row[rows]
    found = ann.similar_pairs(lambda start, stop: store.rows(vector_rows[start:stop]), threshold,
                                   count=len(rows), exact_up_to=cfg.semantic.exact_up_to, nprobe=cfg.semantic.nprobe)
    evidence = Evidence(run.table, store, cfg.near, run.vector_row)
    pairs = moving.same_pairs(split_pairs([(int(rows[a]), int(rows[b])) for a, b, _ in found], scenes, frame_pairs))

    def close(i: int, keeper: int) -> bool:
        if scenes.of(i) >= 0:
            return False  # a frame of a scene goes only as a copy of a frame of its scene
        if not moving.same(i, keeper):
            return False  # a view the camera panned away from, or a moving camera's frame whose things moved
        cosine = evidence.cosine(i, keeper)
        return not cfg.semantic.chain_guard or (cosine is not None and cosine >= threshold)

    groups, splits = star_groups(pairs, choose, close)
    remove_stars(run, groups, "semantic", stages)
    stages["semantic"].seconds = time.perf_counter() - t
    return splits


