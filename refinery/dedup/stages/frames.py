"""Frames of one fixed camera, grouped by the scene test (refinery/dedup/stages/scenes.py):
the last grouping of the funnel, over the pairs the near and semantic stages proposed inside
one scene."""

from __future__ import annotations

import time

from refinery.config import Config
from refinery.dedup.decisions import KEEP
from refinery.dedup.evidence import Evidence
from refinery.dedup.groups import cover_groups, keep_rank
from refinery.dedup.stages.scenes import Scenes
from refinery.dedup.state import Run, StageStats


def run_frames(run: Run, cfg: Config, stages: dict[str, StageStats], scenes: Scenes,
                 frame_pairs: list[tuple[int, int]]) -> None:
    """Frames of one scene, proposed by either stage, judged by the scene test: each group is
    its most typical frame (the one most others are the same as) and the frames that are the
    same as it. Counted under the stage whose picture test would have found the pair too."""
    t = time.perf_counter()
    alive = (run.decisions.code == KEEP).tolist()  # a list: 80,000 look-ups on seq0
    edges = sorted({(a, b) if a < b else (b, a) for a, b in frame_pairs if alive[a] and alive[b]})
    same = [(a, b) for a, b in edges if scenes.same(a, b)]
    table, min_sharp = run.table, cfg.keep.min_sharpness
    evidence = Evidence(table, None, cfg.near)

    def rank(row: int) -> tuple:
        return keep_rank(table[row], min_sharp)

    for keeper, subjects in cover_groups(same, rank):
        for i in subjects:
            stage = "near" if evidence.near_copy(i, keeper) else "semantic"
            run.decisions.remove(i, stage, "", keeper)
            run.decisions.test[i] = "scene"
            stages[stage].removed += 1
    stages["scenes"].seconds += time.perf_counter() - t


