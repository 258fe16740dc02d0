"""`refinery dedup DIR --engine ray`: the feature pass on a Ray cluster (extra [ray]).

Ray Data spreads the files over actors; each actor holds one onnxruntime session and does
for its batch what a local worker does: read, SHA-256, decode, measure, judge quality, embed
what passes. The records come back to the driver in the order of the files, as the same
per-file features and vectors the local engine makes, and the grouping stages run there as
today - so the decisions are the local engine's (tests/test_ray.py checks it).

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from refinery import quality
from refinery.config import Config, QualityConfig
from refinery.errors import RefineryError, UnreadableImage
from refinery.features import Features, measure
from refinery.images import MAX_FILE_BYTES, decode_for_stages, read_bytes, to_input

log = logging.getLogger(__name__)

ROWS_PER_BATCH = 32


class Featurizer:
    """A Ray actor: one onnxruntime session, features and vectors for a batch of files."""

    def __init__(self, model: str, device: str, quality_cfg: QualityConfig, root: str):
        from refinery.runner.session import Embedder

        self.embedder = Embedder(model, device=device, threads=1)
        self.quality = quality_cfg
        self.root = root

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {"path": [], "features": [], "vector": [], "error": []}
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
        """(features, model input or None, error) of one file."""
        try:
            if data is None:
                data = read_bytes(Path(self.root) / rel)
            elif len(data) == 0:
                raise UnreadableImage(rel, "empty file")
            elif len(data) > MAX_FILE_BYTES:
                raise UnreadableImage(rel, f"file of {len(data)} bytes is larger than {MAX_FILE_BYTES}")
            sha = hashlib.sha256(data).hexdigest()
            decoded = decode_for_stages(data, rel, self.embedder.spec)
            features = measure(rel, data, sha, decoded)
        except UnreadableImage as e:
            return None, None, e.reason
        if quality.judge(features, self.quality):
            return features, None, ""
        return features, to_input(decoded.image, self.embedder.spec), ""


def is_local(root: str | Path) -> bool:
    return "://" not in str(root)


def feature_records(root: str | Path, rel_paths: list[str] | None, cfg: Config, model: Path,
                    advance: Callable[[int], None] = lambda n: None) -> list[dict[str, Any]]:
    """Per-file records {path, features, vector, error} from Ray, in the order of the files.

    `rel_paths`: the files of a local folder (refinery's scan); None for a URI, whose files
    Ray Data lists and reads.
    """
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RefineryError("--engine ray needs the [ray] extra: pip install 'refinery[ray]'") from e
    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # refinery draws its own
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    device = "cuda" if gpus and cfg.model.device in ("auto", "cuda") else ("cpu" if gpus else cfg.model.device)
    actors = max(1, gpus) if gpus else max(1, int(ray.cluster_resources().get("CPU", 1)))
    dataset: ray.data.Dataset
    if rel_paths is not None:
        # Blocks of about one batch: a block goes to one actor, so one big block would use one.
        blocks = max(1, min(len(rel_paths) // ROWS_PER_BATCH, 16 * actors))
        dataset = ray.data.from_items([{"path": rel} for rel in rel_paths], override_num_blocks=blocks)
    else:
        dataset = ray.data.read_binary_files(str(root), include_paths=True).map(
            lambda row: {"path": _relative(row["path"], str(root)), "bytes": row["bytes"]})
    records = dataset.map_batches(
        Featurizer, fn_constructor_args=(str(model), device, cfg.quality, str(root)),
        batch_size=ROWS_PER_BATCH, concurrency=actors, num_gpus=1 if gpus else 0, num_cpus=1 if not gpus else 0,
        batch_format="numpy")
    out: list[dict[str, Any]] = []
    for row in records.iter_rows():
        out.append(row)
        advance(1)
    order = {rel: k for k, rel in enumerate(rel_paths)} if rel_paths is not None else None
    return sorted(out, key=lambda r: order[r["path"]] if order else r["path"])


def _relative(path: str, root: str) -> str:
    root = root.rstrip("/").split("://", 1)[-1]
    path = path.split("://", 1)[-1]
    return path[len(root):].lstrip("/") if path.startswith(root) else path


def to_features(record: dict[str, Any]) -> tuple[Features | None, np.ndarray | None, str]:
    """A record from Ray as (features, vector, error)."""
    features = Features.from_dict(json.loads(record["features"])) if record["features"] else None
    vector = np.frombuffer(record["vector"], np.float32).copy() if record["vector"] else None
    return features, vector, record["error"]
