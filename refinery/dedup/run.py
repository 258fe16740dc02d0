"""The dedup funnel: scan, one pass of features (+ embeddings), then quality -> exact ->
near -> semantic, each stage seeing only what the one before kept; frames of one fixed
camera are grouped by the scene test last. Each stage is a module of dedup/stages/ and
keeps the contract of dedup/funnel.py; STAGES_IN_ORDER is the one list of them."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinery import features as feats
from refinery.config import Config, SemanticConfig
from refinery.dedup import featurepass
from refinery.dedup.checks import UNKNOWN, Planned
from refinery.dedup.decisions import DECISIONS, ERROR, SKIP, STAGES, Decisions
from refinery.dedup.evidence import explain
from refinery.dedup.funnel import Funnel, Stage
from refinery.dedup.grays import Grays, GrayStore
from refinery.dedup.reference_io import LoadingReferences
from refinery.dedup.splits import split_matrix
from refinery.dedup.stages.against import Against
from refinery.dedup.stages.against import settle as settle_references
from refinery.dedup.stages.exact import Exact
from refinery.dedup.stages.near import Near
from refinery.dedup.stages.quality import Quality
from refinery.dedup.stages.scene_frames import FindScenes, SceneFrames
from refinery.dedup.stages.semantic import Semantic
from refinery.dedup.state import NOT_REACHED, Run, StageStats
from refinery.dedup.vectors import VectorStore
from refinery.io.cache import FeatureCache
from refinery.io.scan import Skipped
from refinery.parallel import Progress, cpu_count, peak_memory_mb
from refinery.runner.session import Embedder, default_model_path
from refinery.spec import ModelSpec

log = logging.getLogger(__name__)

# The funnel, in order: each stage sees only what the one before kept. The scene finder looks
# at what reaches the near stage; the scene grouping judges the pairs both picture stages
# proposed inside one scene.
# The reference stage (--against) comes before the picture stages: a picture a reference holds
# goes against it, not against another picture of the folder.
STAGES_IN_ORDER: tuple[Stage, ...] = (
    Quality(),
    Exact(),
    FindScenes(),
    Against(),
    Near(),
    Semantic(),
    SceneFrames(),
)

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
    against: list[str] = field(default_factory=list)  # the references judged against (--against), resolved
    splits: dict[str, Any] | None = None  # duplicates across and within splits (keep.splits; dedup/splits.py)

    def planned(self, decision: str) -> list[Planned]:
        """The files with `decision` ("remove" or "keep"), in path order, each with what was
        judged of it (and of its keeper): what must still hold before a file is moved or copied."""
        files = self.files
        code, paths, keeper = DECISIONS.index(decision), files.table.paths, files.keeper
        rows = [int(row) for row in files.order() if files.code[row] == code and files.table.filled[row]]

        def planned(row: int) -> Planned:
            kept_as = int(keeper[row])
            return Planned(
                paths[row],
                files.file_as_judged(row) or UNKNOWN,
                paths[kept_as] if kept_as >= 0 else None,
                files.file_as_judged(kept_as) or UNKNOWN if kept_as >= 0 else None,
            )

        return [planned(row) for row in rows]

    def summary(self) -> dict[str, Any]:
        counts = self.files.counts()
        return {
            "root": self.root if isinstance(self.root, str) else str(Path(self.root).resolve()),
            "files": len(self.files),
            **counts,
            "removed_by_stage": {s: self.stages[s].removed for s in STAGES},
            "seconds_by_stage": {k: round(v.seconds, 3) for k, v in self.stages.items()},
            "seconds": round(self.seconds, 3),
            "images_per_s": round(len(self.files) / self.seconds, 1) if self.seconds else None,
            "model": self.model,
            "provider": self.provider,
            "semantic_threshold": self.semantic_threshold,
            "chain_splits": self.chain_splits,
            "cached": self.cached,
            "workers": self.workers,
            "interrupted": self.interrupted,
            "scenes": {"found": self.scenes, "frames": self.scene_frames},
            "peak_memory_mb": round(self.peak_memory_mb),
            "follow_symlinks": self.follow_symlinks,
            "against": self.against,
            **({"splits": self.splits} if self.splits else {}),
        }


def run_dedup(
    root: Path | str,
    cfg: Config,
    embedder: Embedder,
    *,
    progress: Progress | None = None,
    cache: FeatureCache | None = None,
    stop: threading.Event | None = None,
    threshold_set: bool | None = None,
    against: Sequence[Path] = (),
) -> DedupResult:
    """Decide keep/remove for every image under `root`; touches no file there.

    `against`: references (folders, or indexes made by `refinery index`) whose pictures are
    keepers that are never judged: a picture under `root` that one of them holds goes against
    it (dedup/reference.py). They are read (or loaded) before `root`.

    The semantic stage uses the cosine calibrated for the model (recorded in its spec) unless
    the caller set semantic.threshold (`threshold_set`; None: set when it is not the default,
    see `with_model_threshold`).

    With a `cache`, files unchanged since an earlier run (same path, size and mtime) are
    neither read nor embedded again. When `stop` is set the reading ends after the batches
    under way; the files read so far are judged among themselves, the rest are `skip`ped.
    With `cfg.run.engine` "ray" the reading and embedding run on a Ray cluster (ray_engine);
    `root` may then be any URI Ray Data reads.
    """
    start = time.perf_counter()
    cfg = with_model_threshold(cfg, embedder.path, embedder.spec, threshold_set)
    uri = isinstance(root, str) and "://" in root
    root = root if uri else Path(root)
    run, count = _listed(root, cfg)
    # "pass" is the wall time of reading and embedding; "features" and "embed" are the thread
    # time spent on each inside it (they overlap on several threads).
    stages = {name: StageStats(name) for name in ("pass", "features", "embed", "scenes", *STAGES)}
    workers = cfg.run.workers or cpu_count()
    scratch = featurepass.scratch_dir(cfg)
    with (
        LoadingReferences(list(against), root, cfg, embedder, progress) as references,  # an index loads during the pass
        VectorStore(embedder.spec.output_dim, scratch) as store,
        GrayStore(scratch, cfg.run.scratch_grays_mb) as kept,
    ):
        if cfg.run.engine == "ray":
            from refinery.dedup.engines.ray import ray_pass  # the [ray] extra, only for this engine

            ray_pass(root, run, count, cfg, embedder, stages, store=store, cache=cache, progress=progress)
        else:
            with feats.opencv_single_threaded():
                featurepass.feature_pass(
                    Path(root),
                    run,
                    count,
                    cfg,
                    embedder,
                    stages,
                    store=store,
                    cache=cache,
                    progress=progress,
                    workers=workers,
                    stop=stop,
                    grays=kept,
                )
        grays = _grays(root, run, embedder, kept, cfg)
        here = None if isinstance(root, str) else root
        funnel = Funnel(run, store, cfg, stages, grays, progress, workers, references=references.result(), root=here)
        decide(funnel)
    return _result(root, funnel, embedder, time.perf_counter() - start)


def _grays(root: Path | str, run: Run, embedder: Embedder, kept: GrayStore, cfg: Config) -> Grays | None:
    """The pictures in gray for the stages that look at pixels again: local files only."""
    if isinstance(root, str):
        if cfg.scenes.mode != "crops":
            log.warning(
                "frames of fixed cameras are judged as whole pictures in a URI folder (the scene test reads files here)"
            )
        return None
    return Grays(root, run.table, embedder.spec, kept)


def _result(root: Path | str, funnel: Funnel, embedder: Embedder, seconds: float) -> DedupResult:
    run, cfg = funnel.run, funnel.cfg
    provider = "ray" if cfg.run.engine == "ray" else embedder.provider if embedder.loaded else NOT_LOADED
    scenes, _ = funnel.found_scenes()
    return DedupResult(
        root,
        run.decisions,
        funnel.stats,
        seconds,
        provider,
        embedder.path.name,
        chain_splits={str(k): v for k, v in funnel.chain_splits.items()},
        cached=int(run.cached.sum()),
        workers=funnel.workers,
        interrupted=NOT_REACHED in run.decisions.reason.values(),
        peak_memory_mb=peak_memory_mb(),
        scenes=scenes.count,
        scene_frames=len(scenes.frames),
        semantic_threshold=cfg.semantic.threshold,
        follow_symlinks=cfg.run.follow_symlinks,
        against=[str(ref.source) for ref in funnel.references],
        splits=split_matrix(run.decisions, names) if (names := cfg.keep.split_names()) else None,
    )


def _listed(root: Path | str, cfg: Config) -> tuple[Run, int]:
    """A run over the files under `root` (the first `count` rows: the pictures to read), its
    entries left out (hidden, links, videos) already marked skip or error."""
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
        run.decisions.mark(row, ERROR if entry.decision == "error" else SKIP, entry.reason, entry.code)
    return run, len(files)


def with_model_threshold(cfg: Config, model_path: Path, spec: ModelSpec, threshold_set: bool | None = None) -> Config:
    """`cfg` with the semantic threshold calibrated for the model (its spec's), unless the
    caller set semantic.threshold (`threshold_set`; None: taken as set when it differs from
    the default): a model carries its own default."""
    if threshold_set is None:
        threshold_set = cfg.semantic.threshold != SemanticConfig().threshold
    if threshold_set:
        return cfg
    if spec.semantic_threshold is None:
        if Path(model_path).resolve() != default_model_path().resolve():
            log.warning(
                "%s carries no calibrated semantic threshold: using semantic.threshold %.3f, chosen for the "
                "shipped MobileNetV2; export it with --calibrate CORPUS, or --set semantic.threshold=X",
                Path(model_path).name,
                cfg.semantic.threshold,
            )
        return cfg
    log.info(
        "semantic threshold %.3f, calibrated for %s (from its spec; --set semantic.threshold=X for another)",
        spec.semantic_threshold,
        spec.name,
    )
    return dataclasses.replace(cfg, semantic=dataclasses.replace(cfg.semantic, threshold=spec.semantic_threshold))


def decide(funnel: Funnel) -> Funnel:
    """Run the stages in order over the run's columns (each sees only what the one before
    kept), then follow each removal to its final keeper and word its reason."""
    decisions = funnel.run.decisions
    for stage in STAGES_IN_ORDER:
        stage.run(funnel)
    settle_references(funnel)
    scenes, _ = funnel.found_scenes()
    first_keeper = decisions.keeper.copy()
    decisions.assign_groups()
    explain(funnel.run, funnel.store, funnel.cfg, scenes, first_keeper, funnel.keep)
    return funnel
