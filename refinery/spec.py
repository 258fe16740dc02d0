"""The model spec: everything the runner must know to feed a model and read its output.

The spec is written by the export step into the ONNX metadata and into a JSON sidecar
(`PREFIX.json`), and read back by the runner, which never guesses preprocessing.
The runner feeds `(pixels * scale - mean) / std` with pixels in 0..255, resized to
`input_size` with `interpolation`, in `color` channel order and `layout`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refinery.errors import ModelError
from refinery.fileio import write_text_atomic

SPEC_VERSION = 1
BATCH_DIM = "batch"  # the name exported models give their dynamic batch dimension


@dataclass(frozen=True)
class ModelSpec:
    """Preprocessing contract and output description of one exported model."""

    name: str
    input_name: str
    input_size: tuple[int, int]  # (H, W)
    output_name: str
    output_dim: int
    normalized: bool  # is the output already L2-normalised?
    layout: str = "NCHW"
    color: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "bicubic"
    dtype: str = "float32"  # element type of the input tensor
    precision: str = "fp32"  # fp32 | fp16 | int8: how the weights are stored
    opset: int = 0
    source: str = ""  # the checkpoint (or package) the weights came from
    sha256: str = ""  # of that source file
    spec_version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        if self.layout != "NCHW":
            raise ModelError(f"unsupported layout {self.layout!r}; refinery feeds NCHW")
        if self.color not in ("RGB", "BGR"):
            raise ModelError(f"unsupported colour order {self.color!r}; expected RGB or BGR")
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ModelError(f"unsupported interpolation {self.interpolation!r}")

    @property
    def identity_normalisation(self) -> bool:
        """True when the graph normalises inside and the runner only casts pixels."""
        return self.scale == 1.0 and self.mean == (0.0, 0.0, 0.0) and self.std == (1.0, 1.0, 1.0)

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in d]
        if missing:
            raise ModelError(f"model spec lacks {', '.join(missing)}")
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("input_size", "mean", "std"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    # ONNX metadata holds strings only: strings go in as they are, the rest as JSON.
    def to_metadata(self) -> dict[str, str]:
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_metadata(cls, props: dict[str, str]) -> ModelSpec:
        str_fields = {f.name for f in dataclasses.fields(cls) if f.type in ("str", str)}
        d: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in props:
                raw = props[f.name]
                d[f.name] = raw if f.name in str_fields else json.loads(raw)
        return cls.from_dict(d)

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelSpec:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            raise ModelError(f"{path}: cannot read model spec: {e}") from e

