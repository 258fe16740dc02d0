"""Stage 3, semantic duplicates: embeddings -> FAISS inner-product range search (refinery/ann.py)
-> graph -> connected components -> one keeper per group.

Chaining guard: every removed picture must itself be similar to its group's keeper (see
groups.star_groups), not only linked to it through a chain of similar pictures.
"""

from __future__ import annotations

import time

from refinery import ann
from refinery.dedup.decisions import StageName
from refinery.dedup.evidence import Evidence
from refinery.dedup.funnel import Funnel
from refinery.dedup.groups import star_groups
from refinery.dedup.stages.scenes import split_pairs
from refinery.dedup.state import remove_stars


class Semantic:
    """Stage 3: semantic duplicates - embeddings close in cosine, grouped around a keeper."""

    name = StageName.SEMANTIC

    def run(self, funnel: Funnel) -> None:
        t = time.perf_counter()
        run, stats, cfg = funnel.run, funnel.stats[self.name], funnel.cfg.semantic
        scenes, moving = funnel.found_scenes()
        rows = run.kept_rows()
        stats.seen = funnel.judged(rows)
        vector_rows = run.vector_row[rows]
        found = ann.similar_pairs(
            lambda start, stop: funnel.store.rows(vector_rows[start:stop]),
            cfg.threshold,
            count=len(rows),
            exact_up_to=cfg.exact_up_to,
            nprobe=cfg.nprobe,
        )
        evidence = Evidence(run.table, funnel.store, funnel.cfg.near, run.vector_row)
        pairs = split_pairs([(int(rows[a]), int(rows[b])) for a, b, _ in found], scenes, funnel.frame_pairs)

        def close(i: int, keeper: int) -> bool:
            if scenes.of(i) >= 0:
                return False  # a frame of a scene goes only as a copy of a frame of its scene
            if not moving.same(i, keeper):
                return False  # a view the camera panned away from, or a moving camera's frame whose things moved
            cosine = evidence.cosine(i, keeper)
            return not cfg.chain_guard or (cosine is not None and cosine >= cfg.threshold)

        groups, funnel.chain_splits[self.name] = star_groups(moving.same_pairs(pairs), funnel.choose, close)
        remove_stars(run, groups, self.name, stats)
        stats.seconds = time.perf_counter() - t
