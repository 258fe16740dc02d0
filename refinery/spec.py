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
from typing import Any, TypeVar

from refinery.errors import ModelError
from refinery.io.outputs import Kind, marked, write_output

SPEC_VERSION = 1
MIN_THRESHOLD = 0.5  # as semantic.threshold's range: below it unrelated pictures merge
BATCH_DIM = "batch"  # the name exported models give their dynamic batch dimension

_Spec = TypeVar("_Spec", bound="SpecFile")  # the subclass a method is called on: it gives back one of its own


class SpecFile:
    """What every spec does with itself: JSON sidecars, ONNX metadata (strings only), copies.

    Subclasses are frozen dataclasses whose __post_init__ checks every field, so a garbage
    file fails at load with a ModelError, never later in a run.
    """

    def replace(self: _Spec, **changes: Any) -> _Spec:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_Spec], d: dict[str, Any]) -> _Spec:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        missing = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in d
        ]
        if missing:
            raise ModelError(f"model spec lacks {', '.join(missing)}")
        kw = {f.name: d[f.name] for f in fields if f.name in d}
        for key, value in kw.items():
            if isinstance(value, list):  # JSON has no tuples; anything else: __post_init__ says what is wrong
                kw[key] = tuple(value)
        return cls(**kw)

    # ONNX metadata holds strings only: strings go in as they are, the rest as JSON.
    def to_metadata(self) -> dict[str, str]:
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_metadata(cls: type[_Spec], props: dict[str, str]) -> _Spec:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        str_fields = {f.name for f in fields if f.type in ("str", str)}
        d = {
            f.name: props[f.name] if f.name in str_fields else json.loads(props[f.name])
            for f in fields
            if f.name in props
        }
        return cls.from_dict(d)

    def save(self, path: Path) -> None:
        write_output(path, Kind.SPEC, json.dumps(marked(Kind.SPEC, self.to_dict()), indent=2) + "\n")

    @classmethod
    def load(cls: type[_Spec], path: Path) -> _Spec:
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


@dataclass(frozen=True)
class ModelSpec(SpecFile):
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
    # A CLIP image tower names its text tower: a file beside it, and that file's SHA-256, so a
    # text query is embedded by the very tower the pictures were trained against.
    text_model: str = ""
    text_sha256: str = ""
    # The cosine above which two pictures are one, calibrated for this model's embeddings
    # (`refinery export-model --calibrate`); None: semantic.threshold's default.
    semantic_threshold: float | None = None
    spec_version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        """Check every field's type and value, so a garbage spec fails here, not in a run."""
        _check_strings(self, ("name", "input_name", "output_name"), ("source", "sha256", "text_model", "text_sha256"))
        _check_file_name(self.text_model, "text_model")
        if bool(self.text_model) != _is_sha256(self.text_sha256):
            raise ModelError(
                "text_model and text_sha256 go together: a file name beside the model and its "
                f"SHA-256, not {self.text_model!r} and {self.text_sha256!r}"
            )
        t = self.semantic_threshold
        if t is not None and not (_is_number(t) and MIN_THRESHOLD <= t <= 1.0):
            raise ModelError(f"semantic_threshold must be between {MIN_THRESHOLD} and 1.0 (or null), not {t!r}")
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
        if t is not None:
            object.__setattr__(self, "semantic_threshold", float(t))

    @property
    def identity_normalisation(self) -> bool:
        """True when the graph normalises inside and the runner only casts pixels."""
        return self.scale == 1.0 and self.mean == (0.0, 0.0, 0.0) and self.std == (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class TextSpec(SpecFile):
    """The text tower of a CLIP model: token ids in, a vector in the image tower's space out.

    The runner tokenises with `tokenizer` over the vocabulary file `vocab` (beside the model,
    checked against `vocab_sha256`), pads to `context_length`, and feeds int64 ids.
    """

    name: str
    input_name: str
    output_name: str
    output_dim: int
    context_length: int
    vocab: str  # file name beside the model
    vocab_sha256: str
    tokenizer: str = "openclip-bpe"
    clean: str = "lower"  # open_clip's text cleaning: lower | whitespace | canonicalize
    opset: int = 0
    source: str = ""
    sha256: str = ""
    spec_version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        _check_strings(self, ("name", "input_name", "output_name", "vocab"), ("source", "sha256"))
        _check_file_name(self.vocab, "vocab")
        if not _is_sha256(self.vocab_sha256):
            raise ModelError(f"vocab_sha256 must be a SHA-256 in hex, not {self.vocab_sha256!r}")
        for key in ("output_dim", "context_length"):
            if not _is_int(getattr(self, key)) or getattr(self, key) <= 2:
                raise ModelError(f"{key} must be a whole number above 2, not {getattr(self, key)!r}")
        for key in ("opset", "spec_version"):
            if not _is_int(getattr(self, key)) or getattr(self, key) < 0:
                raise ModelError(f"{key} must be a whole number >= 0, not {getattr(self, key)!r}")
        if self.tokenizer != "openclip-bpe":
            raise ModelError(f"unsupported tokenizer {self.tokenizer!r}; refinery reads openclip-bpe")
        if self.clean not in TEXT_CLEANING:
            raise ModelError(f"unsupported text cleaning {self.clean!r}; expected one of {', '.join(TEXT_CLEANING)}")


TEXT_CLEANING = ("lower", "whitespace", "canonicalize")


def _check_strings(spec: object, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    """The `required` fields are non-empty strings, the `optional` ones strings."""
    for key in required + optional:
        value = getattr(spec, key)
        if not isinstance(value, str) or (key in required and not value):
            kind = "a non-empty string" if key in required else "a string"
            raise ModelError(f"{key} must be {kind}, not {value!r}")


def _check_file_name(name: str, key: str) -> None:
    """A plain file name (beside the model), never a path that could lead elsewhere."""
    if name and (name in (".", "..") or "/" in name or "\\" in name or "\0" in name):
        raise ModelError(f"{key} must be a file name beside the model, not {name!r}")


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value: object, n: int, key: str, whole: bool = False) -> tuple[float, ...]:
    """`value` as a tuple of `n` finite numbers (whole ones if `whole`), or a ModelError."""
    kind = "whole numbers" if whole else "numbers"
    ok = _is_int if whole else _is_number
    if not isinstance(value, (tuple, list)) or len(value) != n or not all(ok(v) for v in value):
        raise ModelError(f"{key} must be {n} {kind}, not {value!r}")
    return tuple(value)
