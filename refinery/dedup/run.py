"""The dedup funnel: scan, one pass of features (+ embeddings), then quality -> exact ->
near -> semantic, each stage seeing only what the one before kept; frames of one fixed
camera are grouped by the scene test last. Each stage is a module of dedup/stages/."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refinery import features as feats
from refinery.config import Config
from refinery.dedup import featurepass
from refinery.dedup.checks import Judged, Planned
from refinery.dedup.decisions import DECISIONS, ERROR, SKIP, STAGES, Decisions
from refinery.dedup.evidence import explain
from refinery.dedup.grays import Grays, GrayStore
from refinery.dedup.groups import choose_keeper
from refinery.dedup.stages import exact, frames, near, quality, semantic
from refinery.dedup.stages import scenes as scene_test
from refinery.dedup.stages.moving import MovingCamera
from refinery.dedup.stages.scenes import Scenes
from refinery.dedup.state import NOT_REACHED, Run, StageStats
from refinery.dedup.vectors import VectorStore
from refinery.io.cache import FeatureCache
from refinery.io.scan import Skipped
from refinery.parallel import Progress, cpu_count, peak_memory_mb
from refinery.runner.session import Embedder

log = logging.getLogger(__name__)

NOT_LOADED = "not loaded"  # the provider of a run that found every vector in the cache


@dataclass
class DedupResult:
    root: Path | str  # a str when it is a URI (the Ray engine)
    files: Decisions  # a report line per file, in path order
    stages: dict[str, StageStats]
    seconds: float
    provider: str
    model: str
    chain_splits: dict[str, int] = field(default_factory=dict)  # stage -> groups the star guard cut
    cached: int = 0  # files taken from the cache, not read again
    workers: int = 1  # threads that read and embedded
    interrupted: bool = False  # stopped early (Ctrl-C): files not reached are `skip`ped
    peak_memory_mb: float = 0.0  # of the process, at the end of the run
    scenes: int = 0  # fixed-camera views found (refinery/dedup/stages/scenes.py)
    scene_frames: int = 0  # frames judged by what stands in front of their scene's background
    semantic_threshold: float = 0.0  # the cosine the semantic stage used (the model's own, or the setting)
    follow_symlinks: bool = False  # the run went through symbolic links (`refinery apply` may do the same)

    def planned(self, decision: str) -> list[Planned]:
        """The files with `decision` ("remove" or "keep"), in path order, each with what was
        judged of it (and of its keeper): what must still hold before a file is moved or copied."""
        files = self.files
        code, paths, keeper = DECISIONS.index(decision), files.table.paths, files.keeper
        rows = [int(row) for row in files.order() if files.code[row] == code and files.table.filled[row]]
        return [Planned(paths[row], judged(files.judged(row)),
                        paths[keeper[row]] if keeper[row] >= 0 else None,
                        judged(files.judged(int(keeper[row]))) if keeper[row] >= 0 else None) for row in rows]

    def summary(self) -> dict:
        counts = self.files.counts()
        return {
            "root": self.root if isinstance(self.root, str) else str(Path(self.root).resolve()),
            "files": len(self.files), **counts,
            "removed_by_stage": {s: self.stages[s].removed for s in STAGES},
            "seconds_by_stage": {k: round(v.seconds, 3) for k, v in self.stages.items()},
            "seconds": round(self.seconds, 3),
            "images_per_s": round(len(self.files) / self.seconds, 1) if self.seconds else None,
            "model": self.model, "provider": self.provider, "semantic_threshold": self.semantic_threshold,
            "chain_splits": self.chain_splits,
            "cached": self.cached,
            "workers": self.workers,
            "interrupted": self.interrupted,
            "scenes": {"found": self.scenes, "frames": self.scene_frames},
            "peak_memory_mb": round(self.peak_memory_mb),
            "follow_symlinks": self.follow_symlinks,
        }



def run_dedup(root: Path | str, cfg: Config, embedder: Embedder, progress: Progress | None = None,
              cache: FeatureCache | None = None, stop: threading.Event | None = None) -> DedupResult:
    """Decide keep/remove for every image under `root`; touches no file there.

    With a `cache`, files unchanged since an earlier run (same path, size and mtime) are
    neither read nor embedded again. When `stop` is set the reading ends after the batches
    under way; the files read so far are judged among themselves, the rest are `skip`ped.
    With `cfg.run.engine` "ray" the reading and embedding run on a Ray cluster (ray_engine);
    `root` may then be any URI Ray Data reads.
    """
    start = time.perf_counter()
    uri = isinstance(root, str) and "://" in root
    root = root if uri else Path(root)
    skipped: list[Skipped] = []
    if isinstance(root, str):  # a URI: the Ray engine lists it
        from refinery.dedup.engines import ray as ray_engine

        files = ray_engine.list_files(root)
    else:
        files, skipped = featurepass.list_files(root, cfg)
    run = Run(files + [entry.path for entry in skipped])
    for row, entry in enumerate(skipped, start=len(files)):
        if entry.decision == "error":
            log.error("%s: %s", Path(root) / entry.path, entry.reason)
        run.decisions.mark(row, ERROR if entry.decision == "error" else SKIP, entry.reason)
    # "pass" is the wall time of reading and embedding; "features" and "embed" are the thread
    # time spent on each inside it (they overlap on several threads).
    stages = {name: StageStats(name) for name in ("pass", "features", "embed", "scenes", *STAGES)}
    workers = cfg.run.workers or cpu_count()
    scratch = featurepass.scratch_dir(cfg)
    with VectorStore(embedder.spec.output_dim, scratch) as store, GrayStore(scratch, cfg.run.scratch_grays_mb) as kept:
        if cfg.run.engine == "ray":
            from refinery.dedup.engines.ray import ray_pass  # the [ray] extra, only for this engine

            ray_pass(root, run, len(files), cfg, embedder, stages, progress, store, cache)
        else:
            with feats.opencv_single_threaded():
                featurepass.feature_pass(Path(root), run, len(files), cfg, embedder, stages, progress, cache, store,
                                         workers, stop, grays=kept)
        # the stages that look at pixels again read local files only
        grays = None if isinstance(root, str) else Grays(root, run.table, embedder.spec, kept)
        splits, scenes = _decide(run, store, cfg, stages, grays,
                                 lambda rows: _scenes(grays, len(run.table), rows, cfg, stages, progress, workers),
                                 workers)
    provider = "ray" if cfg.run.engine == "ray" else embedder.provider if embedder.loaded else NOT_LOADED
    return DedupResult(root, run.decisions, stages, time.perf_counter() - start, provider,
                       embedder.path.name, chain_splits=splits, cached=int(run.cached.sum()),
                       workers=workers, interrupted=NOT_REACHED in run.decisions.reason.values(),
                       peak_memory_mb=peak_memory_mb(), scenes=scenes.count,
                       scene_frames=len(scenes.frames), semantic_threshold=cfg.semantic.threshold,
                       follow_symlinks=cfg.run.follow_symlinks)




def _scenes(grays: Grays | None, count: int, rows: np.ndarray, cfg: Config, stages: dict[str, StageStats],
            progress: Progress | None, workers: int) -> Scenes:
    """The scenes among `rows` (what the near stage will judge), and their frames' foregrounds."""
    t = time.perf_counter()
    if grays is None:
        if cfg.scenes.mode != "crops":
            log.warning("frames of fixed cameras are judged as whole pictures in a URI folder (the scene test "
                        "reads files here)")
        return Scenes.none(count, cfg.scenes)
    with feats.opencv_single_threaded():
        found = scene_test.analyse(grays, rows, cfg.scenes, progress, workers)
    stages["scenes"].seen = len(found.frames)
    stages["scenes"].seconds = time.perf_counter() - t
    return found




def _decide(run: Run, store: VectorStore, cfg: Config, stages: dict[str, StageStats], grays: Grays | None,
            find_scenes: Callable[[np.ndarray], Scenes], workers: int = 1) -> tuple[dict[str, int], Scenes]:
    """The stages over the run's columns: quality -> exact -> near -> semantic, each seeing
    only what the one before kept; frames of one scene (found among what reaches the near
    stage) are grouped by the scene test last. Marks the removals in run.decisions; returns
    the chains each grouping stage cut."""
    table, decisions = run.table, run.decisions
    min_sharp = cfg.keep.min_sharpness

    def choose(members: list[int]) -> int:
        return choose_keeper(members, table, min_sharp)  # builds a Features record per member only

    quality.run_quality(run, stages)
    exact.run_exact(run, stages, choose)

    scenes = find_scenes(run.judged())
    t = time.perf_counter()
    moving = MovingCamera.none(table, cfg.scenes) if grays is None else MovingCamera.find(
        grays, run.judged(), scenes, store, run.vector_row, cfg.scenes, cfg.semantic.exact_up_to, cfg.semantic.nprobe,
        workers)
    stages["scenes"].seconds += time.perf_counter() - t
    frame_pairs: list[tuple[int, int]] = []  # candidates of both stages inside one scene
    splits = {"near": near.run_near(run, cfg, stages, choose, scenes, frame_pairs, moving),
              "semantic": semantic.run_semantic(run, store, cfg, stages, choose, scenes, frame_pairs, moving)}
    frames.run_frames(run, cfg, stages, scenes, frame_pairs)
    # The frame stage removes under both stage names after both ran: what each saw, in order.
    stages["semantic"].seen = stages["near"].seen - stages["near"].removed
    first_keeper = decisions.keeper.copy()
    decisions.assign_groups()
    explain(run, store, cfg, scenes, first_keeper)
    return splits, scenes


def judged(file: dict | None) -> Judged:
    """A report line's `file` as what the actions check (unknown: nothing can match it)."""
    return Judged(file["bytes"], file["mtime_ns"], file["sha256"]) if file else Judged(-1, -1, "")
