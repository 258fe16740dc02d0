"""Frames of fixed cameras in the funnel, judged by the scene test (refinery/dedup/stages/scenes.py):
the scene finder runs before the near stage (on what reaches it) and finds the scenes and the
moving cameras; the scene grouping runs last, over the pairs the near and semantic stages
proposed inside one scene. Both count their time as "scenes"; a frame removed is counted
under the stage whose picture test would have found the pair too."""

from __future__ import annotations

import logging
import time

from refinery import features as feats
from refinery.dedup.decisions import KEEP, StageName
from refinery.dedup.evidence import Evidence
from refinery.dedup.funnel import Funnel
from refinery.dedup.groups import cover_groups
from refinery.dedup.stages import scenes as scene_test
from refinery.dedup.stages.moving import MovingCamera
from refinery.dedup.stages.scenes import Scenes

log = logging.getLogger(__name__)

SCENES = "scenes"  # the stage table's line for both


class FindScenes:
    """The scenes among the rows the near stage will judge, their frames' foregrounds, and
    the moving cameras; a URI folder (no grays to read) has none."""

    name = SCENES

    def run(self, funnel: Funnel) -> None:
        t = time.perf_counter()
        run, cfg, stats = funnel.run, funnel.cfg, funnel.stats[self.name]
        rows = run.kept_rows()
        if funnel.grays is None:
            funnel.scenes = Scenes.none(len(run.table), cfg.scenes)
            funnel.moving = MovingCamera.none(run.table, cfg.scenes)
        else:
            with feats.opencv_single_threaded():
                funnel.scenes = scene_test.analyse(funnel.grays, rows, cfg.scenes, funnel.progress, funnel.workers)
            stats.seen = len(funnel.scenes.frames)
            funnel.moving = MovingCamera.find(
                funnel.grays,
                rows,
                funnel.scenes,
                funnel.store,
                run.vector_row,
                cfg.scenes,
                cfg.semantic.exact_up_to,
                cfg.semantic.nprobe,
                funnel.workers,
            )
        stats.seconds += time.perf_counter() - t


class SceneFrames:
    """Frames of one scene, proposed by either picture stage, judged by the scene test: each
    group is its most typical frame (the one most others are the same as) and the frames that
    are the same as it."""

    name = SCENES

    def run(self, funnel: Funnel) -> None:
        t = time.perf_counter()
        run, stats = funnel.run, funnel.stats
        scenes, _ = funnel.found_scenes()
        alive = (run.decisions.code == KEEP).tolist()  # a list: 80,000 look-ups on seq0
        edges = sorted({(a, b) if a < b else (b, a) for a, b in funnel.frame_pairs if alive[a] and alive[b]})
        same = [(a, b) for a, b in edges if scenes.same(a, b)]
        evidence = Evidence(run.table, None, funnel.cfg.near)
        for keeper, subjects in cover_groups(same, funnel.rank):
            for i in subjects:
                stage = StageName.NEAR if evidence.near_copy(i, keeper) else StageName.SEMANTIC
                run.decisions.remove(i, stage, "", keeper)
                run.decisions.test[i] = "scene"
                stats[stage].removed += 1
        # It removes under both stage names after both ran: what each saw, in order.
        stats[StageName.SEMANTIC].seen = stats[StageName.NEAR].seen - stats[StageName.NEAR].removed
        stats[self.name].seconds += time.perf_counter() - t
