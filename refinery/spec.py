"""The model spec: everything the runner must know to feed a model and read its output.

The spec is written by the export step into the ONNX metadata and into a JSON sidecar
(`PREFIX.json`), and read back by the runner, which never guesses preprocessing.
The runner feeds `(pixels * scale - mean) / std` with pixels in 0..255, resized to
`input_size` with `interpolation`, in `color` channel order and `layout`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refinery.errors import ModelError
from refinery.io.fileio import write_text_atomic

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
        """Check every field's type and value, so a garbage spec fails here, not in a run."""
        for key in ("name", "input_name", "output_name"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ModelError(f"{key} must be a non-empty string, not {getattr(self, key)!r}")
        for key in ("source", "sha256"):
            if not isinstance(getattr(self, key), str):
                raise ModelError(f"{key} must be a string, not {getattr(self, key)!r}")
        size = _numbers(self.input_size, 2, "input_size", whole=True)
        if min(size) <= 0:
            raise ModelError(f"input_size must be two positive whole numbers (H, W), not {self.input_size!r}")
        if not _is_int(self.output_dim) or self.output_dim <= 0:
            raise ModelError(f"output_dim must be a positive whole number, not {self.output_dim!r}")
        if not isinstance(self.normalized, bool):
            raise ModelError(f"normalized must be true or false, not {self.normalized!r}")
        if not _is_number(self.scale) or not self.scale > 0:
            raise ModelError(f"scale must be a positive number, not {self.scale!r}")
        mean = _numbers(self.mean, 3, "mean")
        std = _numbers(self.std, 3, "std")
        if 0 in std:
            raise ModelError(f"std must have no zero, not {self.std!r}")
        for key in ("opset", "spec_version"):
            if not _is_int(getattr(self, key)) or getattr(self, key) < 0:
                raise ModelError(f"{key} must be a whole number >= 0, not {getattr(self, key)!r}")
        if self.layout != "NCHW":
            raise ModelError(f"unsupported layout {self.layout!r}; refinery feeds NCHW")
        if self.color not in ("RGB", "BGR"):
            raise ModelError(f"unsupported colour order {self.color!r}; expected RGB or BGR")
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ModelError(f"unsupported interpolation {self.interpolation!r}")
        if self.dtype not in ("float32", "float16"):
            raise ModelError(f"unsupported input dtype {self.dtype!r}; expected float32 or float16")
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ModelError(f"unsupported precision {self.precision!r}; expected fp32, fp16 or int8")
        # Lists (from JSON) become tuples, numpy scalars plain numbers: specs compare equal.
        object.__setattr__(self, "input_size", tuple(int(v) for v in size))
        object.__setattr__(self, "output_dim", int(self.output_dim))
        object.__setattr__(self, "mean", tuple(float(v) for v in mean))
        object.__setattr__(self, "std", tuple(float(v) for v in std))

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
            if isinstance(kw.get(key), list):  # anything else: __post_init__ says what is wrong
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
        """The spec in the JSON file `path`; any fault is a ModelError that names the file."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"{path}: cannot read model spec: {e}") from e
        if not isinstance(data, dict):
            raise ModelError(f"{path}: not a model spec (a JSON object was expected)")
        try:
            return cls.from_dict(data)
        except ModelError as e:
            raise ModelError(f"{path}: {e}") from e
        except (TypeError, ValueError) as e:  # e.g. input_size 5: not a list
            raise ModelError(f"{path}: bad model spec: {e}") from e


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value: object, n: int, key: str, whole: bool = False) -> tuple:
    """`value` as a tuple of `n` finite numbers (whole ones if `whole`), or a ModelError."""
    kind = "whole numbers" if whole else "numbers"
    ok = _is_int if whole else _is_number
    if not isinstance(value, (tuple, list)) or len(value) != n or not all(ok(v) for v in value):
        raise ModelError(f"{key} must be {n} {kind}, not {value!r}")
    return tuple(value)

