"""`refinery dedup DIR --engine ray`: the feature pass on a Ray cluster (extra [ray]).

Ray Data spreads the files over actors; each actor holds one onnxruntime session and does
for its batch what a local worker does: read, SHA-256, decode, measure, judge quality, embed
what passes. The records come back to the driver in the order of the files, as the same
per-file features and vectors the local engine makes, and the grouping stages run there as
today - so the decisions are the local engine's (tests/test_ray.py checks it). The driver
keeps the feature cache for a local folder: files it has are not sent to the cluster, and
what comes back is written to it.

`ray.init()` starts a Ray instance on this machine, or joins the cluster RAY_ADDRESS names.
On a cluster with GPUs each actor takes one and runs the CUDA provider.

DIR: a local folder is scanned by refinery (the same files, links and hidden folders as the
local engine) and each actor reads its files itself, so an unreadable file is one error line,
not a failed job; any other path or URI Ray Data can read (s3://, gs://, ...) is read by
Ray Data's binary reader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refinery import install_hint
from refinery.config import Config, QualityConfig
from refinery.dedup.featurepass import CACHE_VECTORS_PER_WRITE, CacheLink, VectorWriter, file_findings, mark_unreached
from refinery.dedup.stages import quality
from refinery.dedup.state import Picture, Run, StageStats
from refinery.dedup.vectors import VectorStore
from refinery.errors import NoPictures, RefineryError, UnreadableImage
from refinery.features import Features
from refinery.io.cache import FeatureCache
from refinery.io.images import read_bytes, size_problem
from refinery.io.scan import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Scan, Skipped
from refinery.parallel import Progress
from refinery.reasons import ReasonCode
from refinery.runner.session import Embedder

log = logging.getLogger(__name__)

ROWS_PER_BATCH = 32


class Featurizer:
    """A Ray actor: one onnxruntime session, features and vectors for a batch of files."""

    def __init__(self, model: str, device: str, quality_cfg: QualityConfig, root: str):
        from refinery.runner.session import Embedder

        self.embedder = Embedder(model, device=device, threads=1)
        self.quality = quality_cfg
        self.root = root

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"path": [], "features": [], "vector": [], "error": []}
        ready: list[tuple[int, np.ndarray]] = []
        for k, rel in enumerate(batch["path"]):
            rel = str(rel)
            data = batch["bytes"][k] if "bytes" in batch else None
            features, tensor, error = self.prepare(rel, data)
            out["path"].append(rel)
            out["features"].append(json.dumps(features.to_dict()) if features else "")
            out["error"].append(error)
            out["vector"].append(b"")
            if tensor is not None:
                ready.append((k, tensor))
        if ready:
            vectors = self.embedder.embed(np.stack([t for _, t in ready]))
            for (k, _), vector in zip(ready, vectors, strict=True):
                out["vector"][k] = np.asarray(vector, np.float32).tobytes()
        return out

    def prepare(self, rel: str, data: bytes | None) -> tuple[Features | None, np.ndarray | None, str]:
        """(features, model input or None, error) of one file: what a local worker does."""
        from refinery.dedup.featurepass import measure_and_prepare

        try:
            if data is None:
                data = read_bytes(Path(self.root) / rel)
            elif problem := size_problem(len(data)):
                raise UnreadableImage(rel, problem)
            found = measure_and_prepare(
                rel, data, hashlib.sha256(data).hexdigest(), rel, self.embedder.spec, self.quality
            )
        except UnreadableImage as e:
            return None, None, e.reason
        return found.features, found.tensor, ""


def is_local(root: str | Path) -> bool:
    return "://" not in str(root)


def list_files(uri: str) -> list[str]:
    """The pictures under a URI Ray Data can read (s3://, gs://, ...), relative and sorted:
    files with an image suffix, hidden files and folders left out (as the local scan does;
    reading a remote file's first bytes to sniff its type would cost a request per file).
    NoPictures, saying what is there instead, when there is none."""
    import pyarrow.fs as pafs

    try:
        fs, base = pafs.FileSystem.from_uri(uri)
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except (OSError, ValueError) as e:
        raise RefineryError(f"{uri}: cannot list it ({e})") from None
    rels = [_relative(info.path, base) for info in infos if info.type == pafs.FileType.File]
    pictures = sorted(rel for rel in rels if _kind(rel) == "picture")
    if not pictures:
        raise NoPictures(f"{uri}: no picture found - {_listed_instead(rels).without_pictures()}")
    return pictures


def _kind(rel: str) -> str:
    """What the listing makes of a file by its name: picture, hidden, video or other."""
    suffix = Path(rel).suffix.lower()
    if any(part.startswith(".") for part in rel.split("/")):
        return "hidden"
    return "picture" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else "other"


def _listed_instead(rels: list[str]) -> Scan:
    """A listing without pictures as the local scan words it (its others, videos, hidden)."""
    kinds = {"hidden": (ReasonCode.HIDDEN, "hidden"), "video": (ReasonCode.VIDEO, "a video")}
    skipped = [Skipped(rel, "skip", kinds[_kind(rel)][1], kinds[_kind(rel)][0]) for rel in rels if _kind(rel) in kinds]
    others = Counter(Path(rel).suffix.lower() for rel in rels if _kind(rel) == "other")
    return Scan([], skipped, others)


def feature_records(root: str | Path, rel_paths: Sequence[str], cfg: Config, model: Path) -> Iterator[dict[str, Any]]:
    """Per-file records {path, features, vector, error} from Ray, as they come back (in no
    particular order): the driver files each one by its path and keeps none.

    A local folder's files are read by the actors themselves; a URI's by Ray Data.
    """
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RefineryError(f"--engine ray needs the [ray] extra: {install_hint('ray')}") from e
    if not rel_paths:  # all from the cache: no cluster needed
        return
    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # refinery draws its own
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    resources = ray.cluster_resources()  # type: ignore[no-untyped-call]  # ray leaves it unannotated
    gpus = int(resources.get("GPU", 0))
    device = "cuda" if gpus and cfg.model.device in ("auto", "cuda") else ("cpu" if gpus else cfg.model.device)
    actors = max(1, gpus) if gpus else max(1, int(resources.get("CPU", 1)))
    dataset: ray.data.Dataset
    if is_local(root):
        # Blocks of about one batch: a block goes to one actor, so one big block would use one.
        blocks = max(1, min(len(rel_paths) // ROWS_PER_BATCH, 16 * actors))
        dataset = ray.data.from_items([{"path": rel} for rel in rel_paths], override_num_blocks=blocks)
    else:
        base = str(root).rstrip("/")
        # Reading is I/O: its tasks take no CPU of their own, else actors holding every CPU
        # would leave none to read with and the job would wait forever.
        dataset = ray.data.read_binary_files(
            [f"{base}/{rel}" for rel in rel_paths], include_paths=True, ray_remote_args={"num_cpus": 0}
        ).map(lambda row: {"path": _relative(row["path"], base), "bytes": row["bytes"]})
    records = dataset.map_batches(
        Featurizer,
        fn_constructor_args=(str(model), device, cfg.quality, str(root)),
        batch_size=ROWS_PER_BATCH,
        concurrency=actors,
        num_gpus=1 if gpus else 0,
        num_cpus=1 if not gpus else 0,
        batch_format="numpy",
    )
    yield from records.iter_rows()


def _relative(path: str, root: str) -> str:
    root = root.rstrip("/").split("://", 1)[-1]
    path = path.split("://", 1)[-1]
    return path[len(root) :].lstrip("/") if path.startswith(root) else path


def to_features(record: dict[str, Any]) -> tuple[Features | None, np.ndarray | None, str]:
    """A record from Ray as (features, vector, error)."""
    features = Features.from_dict(json.loads(record["features"])) if record["features"] else None
    vector = np.frombuffer(record["vector"], np.float32).copy() if record["vector"] else None
    return features, vector, record["error"]


def ray_pass(
    root: Path | str,
    run: Run,
    count: int,
    cfg: Config,
    embedder: Embedder,
    stages: dict[str, StageStats],
    *,
    store: VectorStore,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
) -> None:
    """The feature pass on Ray: the same columns as feature_pass. Files the cache has are
    not sent; every other file is computed (no exact-copy shortcut: actors share nothing)."""
    t = time.perf_counter()
    paths = run.table.paths
    advance = progress("reading (ray)", count) if progress else (lambda n: None)
    vectors = VectorWriter(run, store)
    link = CacheLink(cache if isinstance(root, Path) else None, run, Path(root), cfg, embed_all=False)
    todo = [row for row in range(count) if not link.fill(row, vectors, set())]
    advance(count - len(todo))
    rows = {paths[row]: row for row in todo}
    for k, record in enumerate(feature_records(root, [paths[row] for row in todo], cfg, embedder.path)):
        features, vector, error = to_features(record)
        pic = Picture(rows[record["path"]], features=features, error=error, vector=vector)
        if features is not None:
            pic.defect = quality.judge(features, cfg.quality)
        file_findings(run, pic, root)
        link.remember(pic.row, vector)
        vectors.add(pic.row, vector)
        advance(1)
        if k % CACHE_VECTORS_PER_WRITE == 0:
            link.commit()
    vectors.flush()
    link.commit()
    mark_unreached(run, count)
    stages["pass"].seconds = time.perf_counter() - t
