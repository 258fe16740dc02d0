"""The text side of a CLIP model: words -> a vector in the image tower's space, no torch.

An image model whose spec names a text tower (`text_model`, `text_sha256`) can be searched
by words: `text_tower_of` finds that tower beside it, checks it is the file the image tower
was exported with, and opens it with refinery's own tokenizer over the vocabulary its spec
names (checked against its SHA-256 too).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refinery.errors import ModelError, NoTextTower
from refinery.io.fileio import file_sha256
from refinery.runner.providers import resolve_providers
from refinery.runner.session import l2_normalize, open_session
from refinery.spec import ModelSpec, TextSpec

if TYPE_CHECKING:
    from refinery.runner.tokenizer import ClipTokenizer

log = logging.getLogger(__name__)

EXPORT_CLIP = "export one with `refinery export-model --arch openclip-vit-b-32`"


class TextEmbedder:
    """An onnxruntime session on a CLIP text tower, with its tokenizer.

    Example:
        >>> text = TextEmbedder("models/clip.text.onnx")
        >>> text.embed(["a red truck at night"])   # float32 (1, D), L2-normalised
    """

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such text tower; {EXPORT_CLIP}")
        self._device, self._threads = device, threads
        self._session: Any = None
        self._lock = threading.Lock()
        sidecar = self.path.with_suffix(".json")
        self.spec: TextSpec = TextSpec.load(sidecar) if sidecar.is_file() else self.load().spec
        self.tokenizer = self._tokenizer()

    def _tokenizer(self) -> ClipTokenizer:
        from refinery.runner.tokenizer import ClipTokenizer

        vocab = self.path.parent / self.spec.vocab
        if not vocab.is_file():
            raise ModelError(f"{self.path}: its vocabulary {vocab.name} is not beside it; {EXPORT_CLIP}")
        if file_sha256(vocab) != self.spec.vocab_sha256:
            raise ModelError(
                f"{vocab}: not the vocabulary {self.path.name} was exported with (SHA-256 differs); {EXPORT_CLIP}"
            )
        return ClipTokenizer(vocab, self.spec.context_length, self.spec.clean)

    def load(self) -> TextEmbedder:
        """Open the onnxruntime session now (once)."""
        with self._lock:
            if self._session is None:
                self._open()
        return self

    def _open(self) -> None:
        # Text comes a query at a time: the CPU answers one in milliseconds, and Core ML would
        # want static shapes; CUDA is used where it was asked for and is there.
        asked = [p for p in resolve_providers(self._device) if p[0] != "CoreMLExecutionProvider"] or [
            ("CPUExecutionProvider", {})
        ]
        session = open_session(self.path, asked, self._threads)
        metadata = session.get_modelmeta().custom_metadata_map
        if "vocab" not in metadata:
            raise ModelError(f"{self.path}: not a refinery text tower (no spec in its metadata); {EXPORT_CLIP}")
        try:
            spec = TextSpec.from_metadata(metadata)
        except (ModelError, TypeError, ValueError) as e:
            raise ModelError(f"{self.path}: bad text spec in its metadata: {e}; {EXPORT_CLIP}") from None
        if hasattr(self, "spec") and spec != self.spec:
            raise ModelError(
                f"{self.path}: its metadata and {self.path.with_suffix('.json').name} describe different "
                f"models; {EXPORT_CLIP}"
            )
        check_text_graph(self.path, spec, session)
        self.spec, self._session = spec, session

    @property
    def session(self) -> Any:
        return self.load()._session

    def tokens(self, texts: str | Sequence[str]) -> np.ndarray:
        """int64 (N, context_length) token ids, as the tower takes them."""
        return self.tokenizer(texts)

    def run(self, tokens: np.ndarray) -> np.ndarray:
        """Raw tower output for (N, context_length) token ids."""
        if len(tokens) == 0:
            return np.zeros((0, self.spec.output_dim), np.float32)
        out = self.session.run([self.spec.output_name], {self.spec.input_name: tokens.astype(np.int64)})[0]
        return np.asarray(out, dtype=np.float32)

    def embed(self, texts: str | Sequence[str]) -> np.ndarray:
        """L2-normalised vectors, one per text, comparable with the image tower's."""
        return l2_normalize(self.run(self.tokens(texts)))


def check_text_graph(path: Path, spec: TextSpec, session: Any) -> None:
    """A ModelError unless the graph takes int64 (N, context_length) and gives (N, output_dim)."""
    fix = f"; {EXPORT_CLIP}"
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if spec.input_name not in inputs or spec.output_name not in outputs:
        raise ModelError(
            f"{path}: its spec says {spec.input_name!r} -> {spec.output_name!r}, but the graph takes "
            f"{', '.join(inputs)} and gives {', '.join(outputs)}{fix}"
        )
    shape = list(inputs[spec.input_name].shape or [])
    if (
        "int64" not in inputs[spec.input_name].type
        or len(shape) != 2
        or (isinstance(shape[1], int) and shape[1] != spec.context_length)
    ):
        raise ModelError(
            f"{path}: the graph's input is {inputs[spec.input_name].type} {shape}, not int64 "
            f"(N, {spec.context_length}){fix}"
        )
    out = list(outputs[spec.output_name].shape or [])
    if out and isinstance(out[-1], int) and out[-1] != spec.output_dim:
        raise ModelError(f"{path}: its spec says {spec.output_dim}-d, the graph gives {out[-1]}-d{fix}")


def text_tower_of(model_path: Path, spec: ModelSpec, device: str = "auto") -> TextEmbedder:
    """The text tower the image model `model_path` was exported with, checked, or NoTextTower."""
    if not spec.text_model:
        raise NoTextTower(
            f"{Path(model_path).name} ({spec.name}) has no text tower, so it cannot be searched by "
            f"words; {EXPORT_CLIP} and index with its image model"
        )
    path = Path(model_path).parent / spec.text_model
    if not path.is_file():
        raise ModelError(f"{path}: the text tower of {Path(model_path).name} is not beside it; {EXPORT_CLIP}")
    if file_sha256(path) != spec.text_sha256:
        raise ModelError(
            f"{path}: not the text tower {Path(model_path).name} was exported with (SHA-256 differs); {EXPORT_CLIP}"
        )
    text = TextEmbedder(path, device=device)
    if text.spec.output_dim != spec.output_dim:
        raise ModelError(
            f"{path}: gives {text.spec.output_dim}-d vectors, {Path(model_path).name} "
            f"{spec.output_dim}-d; {EXPORT_CLIP}"
        )
    return text
