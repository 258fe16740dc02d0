"""The runner: one onnxruntime session that turns images into embedding vectors."""

from __future__ import annotations

import logging
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refinery.errors import ModelError
from refinery.runner.providers import ProviderList, resolve_providers
from refinery.spec import BATCH_DIM, ModelSpec

if TYPE_CHECKING:
    from refinery.config import ModelConfig

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"


def default_model_path() -> Path:
    """The ONNX model that ships with refinery (refinery/models/default.onnx)."""
    return Path(str(resources.files("refinery.models").joinpath("default.onnx")))


def resolve_model_path(model: str | Path) -> Path:
    """`default` means the shipped model; anything else is a path to an .onnx file."""
    path = default_model_path() if str(model) == DEFAULT_MODEL else Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file; give --model PATH.onnx or 'default'")
    return path


def read_spec(model_path: Path, metadata: dict[str, str] | None = None) -> ModelSpec:
    """The model's spec: from the ONNX metadata, else from the JSON sidecar beside it."""
    if metadata and "input_size" in metadata:
        try:
            return ModelSpec.from_metadata(metadata)
        except (ModelError, TypeError, ValueError) as e:
            raise ModelError(
                f"{model_path}: bad model spec in its metadata: {e}; export it again with `refinery export-model`"
            ) from e
    sidecar = Path(model_path).with_suffix(".json")
    if sidecar.is_file():
        return ModelSpec.load(sidecar)
    raise ModelError(
        f"{model_path}: no refinery model spec in its metadata and no {sidecar.name} "
        "beside it; export it with `refinery export-model`"
    )


class Embedder:
    """An onnxruntime session around one exported model.

    The session opens on first use (or `load()`): a run that finds every vector in the cache
    never imports onnxruntime. The spec comes from the JSON sidecar when there is one, else
    from the model's metadata; when both exist they must agree.

    Example:
        >>> emb = Embedder("refinery/models/default.onnx", device="cpu")
        >>> vectors = emb.embed(batch)   # float32 (N, output_dim), L2-normalised
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        device: str = "auto",
        providers: ProviderList | None = None,
        threads: int = 0,
        batch_size: int = 32,
        fixed_batch: bool | None = None,
    ):
        self.path = resolve_model_path(model)
        self.batch_size = batch_size
        self._device, self._asked, self._threads, self._fixed_batch = device, providers, threads, fixed_batch
        self._session: Any = None
        self._lock = threading.Lock()
        sidecar = self.path.with_suffix(".json")
        self.spec: ModelSpec = ModelSpec.load(sidecar) if sidecar.is_file() else self.load().spec
        self.input_name, self.output_name = self.spec.input_name, self.spec.output_name

    def load(self) -> Embedder:
        """Open the onnxruntime session now (once; later calls do nothing)."""
        with self._lock:
            if self._session is None:
                self._open()
        return self

    def _open(self) -> None:
        asked = self._asked if self._asked is not None else resolve_providers(self._device)
        # CoreML takes only nodes with static input shapes (RequireStaticInputShapes), so the
        # symbolic batch dimension is pinned to batch_size and short batches are padded.
        fixed_batch = self._fixed_batch
        if fixed_batch is None:
            fixed_batch = asked[0][0] == "CoreMLExecutionProvider"
        session = open_session(self.path, asked, self._threads, self.batch_size if fixed_batch else None)
        metadata = session.get_modelmeta().custom_metadata_map
        sidecar = self.path.with_suffix(".json")
        in_metadata = bool(metadata) and "input_size" in metadata
        if hasattr(self, "spec"):  # read from the sidecar, the likelier stale one: checked against the graph first
            check_graph(self.path, self.spec, session, f"{sidecar.name} says", f" (or delete the stale {sidecar.name})")
        spec = read_spec(self.path, metadata)
        if in_metadata or not hasattr(self, "spec"):
            check_graph(self.path, spec, session, "its metadata says" if in_metadata else f"{sidecar.name} says", "")
        if hasattr(self, "spec") and spec != self.spec:
            raise ModelError(
                f"{self.path}: its metadata and {self.path.with_suffix('.json').name} describe "
                "different models; export it again with `refinery export-model`"
            )
        self.spec = spec
        inputs = session.get_inputs()
        batch_dim = inputs[0].shape[0]
        self._static_batch = isinstance(batch_dim, int)  # pinned above, or exported so
        if self._static_batch:
            self.batch_size = batch_dim
        self._input_dtype = np.float16 if "float16" in inputs[0].type else np.float32
        self._session = session
        log.info(
            "model %s (%s, %s, %d-d) on %s",
            self.path.name,
            spec.name,
            spec.precision,
            spec.output_dim,
            session.get_providers()[0],
        )

    @property
    def session(self) -> Any:
        """The onnxruntime InferenceSession (opened if it was not yet)."""
        return self.load()._session

    @property
    def static_batch(self) -> bool:
        """Does the session take exactly batch_size images per run (short batches padded)?"""
        return bool(self.load()._static_batch)

    @property
    def loaded(self) -> bool:
        return self._session is not None

    @property
    def provider(self) -> str:
        """The execution provider that actually runs the model (the first one registered)."""
        provider: str = self.session.get_providers()[0]  # onnxruntime has no types
        return provider

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw model output for a prepared (N, 3, H, W) batch, not normalised by refinery."""
        if len(batch) == 0:
            return np.zeros((0, self.spec.output_dim), np.float32)
        return np.concatenate(
            [self._run_chunk(batch[i : i + self.batch_size]) for i in range(0, len(batch), self.batch_size)]
        )

    def _run_chunk(self, chunk: np.ndarray) -> np.ndarray:
        session = self.session
        n = len(chunk)
        if self.static_batch and n < self.batch_size:
            pad = np.zeros((self.batch_size - n, *chunk.shape[1:]), chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        feed = {self.input_name: chunk.astype(self._input_dtype, copy=False)}
        out = session.run([self.output_name], feed)[0]
        return np.asarray(out[:n], dtype=np.float32)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings for a prepared (N, 3, H, W) batch."""
        out = self.run(batch)
        if self.spec.normalized:
            return out
        return l2_normalize(out)


def open_session(path: Path, asked: ProviderList, threads: int = 0, fixed_batch: int | None = None) -> Any:
    """An onnxruntime session on `path` with the providers asked for, or a ModelError."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are not ours to print
    if fixed_batch:
        options.add_free_dimension_override_by_name(BATCH_DIM, fixed_batch)
    try:
        return ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=[name for name, _ in asked],
            provider_options=[opts for _, opts in asked],
        )
    except Exception as e:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: onnxruntime cannot load it: {e}") from e


def check_graph(model_path: Path, spec: ModelSpec, session: Any, says: str, hint: str) -> None:
    """A ModelError unless the graph takes what `spec` says it takes and gives what it says it
    gives: input and output names, input (N, 3, H, W) and output width, where the graph fixes them."""
    fix = f"; export it again with `refinery export-model`{hint}"
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if spec.input_name not in inputs:
        raise ModelError(
            f"{model_path}: {says} input {spec.input_name!r}, but the graph's inputs are "
            f"{', '.join(map(repr, inputs))}{fix}"
        )
    if spec.output_name not in outputs:
        raise ModelError(
            f"{model_path}: {says} output {spec.output_name!r}, but the graph's outputs are "
            f"{', '.join(map(repr, outputs))}{fix}"
        )
    shape = list(inputs[spec.input_name].shape or [])
    if len(shape) != 4:
        raise ModelError(
            f"{model_path}: the graph's input {spec.input_name!r} has shape {shape}, not (N, 3, H, W){fix}"
        )
    if _static(shape[1]) and shape[1] != 3:
        raise ModelError(f"{model_path}: the graph takes {shape[1]} colour channels, refinery feeds 3{fix}")
    h, w = spec.input_size
    if (_static(shape[2]) and shape[2] != h) or (_static(shape[3]) and shape[3] != w):
        raise ModelError(f"{model_path}: {says} input {h}x{w}, but the graph takes {shape[2]}x{shape[3]}{fix}")
    out_shape = list(outputs[spec.output_name].shape or [])
    if out_shape and _static(out_shape[-1]) and out_shape[-1] != spec.output_dim:
        raise ModelError(f"{model_path}: {says} output {spec.output_dim}-d, but the graph gives {out_shape[-1]}-d{fix}")


def _static(dim: object) -> bool:
    """A dimension the graph fixes (onnxruntime gives a name or None for the others)."""
    return isinstance(dim, int) and dim > 0


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return unit


def embedder_for(model: ModelConfig) -> Embedder:
    """The Embedder the settings' [model] section asks for. Every worker runs the model on its
    own batches with one thread (model.threads 0): on shared CPU cores that beats one run
    spread over all of them (benchmarks/speed.py), and it suits GPUs as well."""
    return Embedder(model.path, device=model.device, batch_size=model.batch_size, threads=model.threads or 1)
