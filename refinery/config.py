"""refinery's settings: a TOML file (configs/refinery.toml holds the defaults), then flags."""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from refinery.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class ModelConfig:
    path: str = "default"  # "default" = models/default.onnx, else a path to an .onnx file
    device: str = "auto"  # auto | cpu | cuda | coreml
    batch_size: int = 8  # per worker; 8 keeps onnxruntime's activations small and runs as fast as 32
    threads: int = 0  # onnxruntime threads per model run; 0 = 1 (each worker runs its own batches)

    def override(self, **flags: Any) -> ModelConfig:
        """A copy with every flag that was given (not None) put over the file's value."""
        changes = {("path" if k == "model" else k): v for k, v in flags.items() if v is not None}
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class QualityConfig:
    # Variance of the Laplacian (gray, longer side 320 px) below which a picture has no
    # edges left. Low on purpose: smooth but sharp scenes (sky, walls) score low too; blurred
    # copies of a picture are removed by the keep rule of the duplicate stages anyway.
    min_sharpness: float = 3.0
    min_brightness: float = 22.0  # mean gray level below which a frame is too dark to use
    max_brightness: float = 222.0  # mean gray level above which it is burnt out
    min_side: int = 32  # pixels; a smaller picture (an icon, a tracking pixel) is no photo to keep


@dataclass(frozen=True)
class NearConfig:
    # Candidates: close in either hash (Hamming distance of 64 bits)...
    max_phash: int = 8
    max_dhash: int = 10
    # ...confirmed by the 16x16 gray thumbnails: on fixed-camera data different objects on
    # one background come within a few hash bits, but their thumbnails differ.
    min_correlation: float = 0.99
    # Up to this many pictures the hashes propose candidates (exact, quadratic); beyond, the
    # thumbnails are searched in an IVF index probing `nprobe` lists (benchmarks/README.md).
    exact_up_to: int = 100_000
    nprobe: int = 8


@dataclass(frozen=True)
class SemanticConfig:
    threshold: float = 0.955  # cosine similarity of embeddings above which two pictures are one
    # Remove a picture only if it is itself similar to its group's keeper, not merely chained
    # to it through other pictures (A~B~C with A and C unlike).
    chain_guard: bool = True
    # Up to this many pictures the pair search is exact (quadratic); beyond, an IVF index
    # probes `nprobe` lists per picture (benchmarks/README.md, "Semantic stage at scale").
    exact_up_to: int = 100_000
    nprobe: int = 8


@dataclass(frozen=True)
class KeepConfig:
    # Keepers must be at least this sharp (Laplacian variance) when a group offers one that is.
    min_sharpness: float = 20.0


@dataclass(frozen=True)
class RunConfig:
    workers: int = 0  # threads that decode and run the model, a batch each; 0 = one per core
    cache: bool = True  # keep per-file features and vectors between runs
    cache_dir: str = ""  # "" = ~/.cache/refinery/features (or $XDG_CACHE_HOME/refinery/features)
    follow_symlinks: bool = False  # judge links to files and folders outside the folder too
    engine: str = "local"  # "local" (threads on this machine) or "ray" (a Ray cluster; extra [ray])


@dataclass(frozen=True)
class TrainConfig:
    """`refinery train`: fine-tuning an embedding with a triplet loss (extra [train])."""

    arch: str = "mobilenetv2"  # mobilenetv2 (ImageNet weights), resnet50 (random init), fastreid-r50-ibn
    dim: int = 128  # embedding size: pool -> linear -> ReLU -> linear(dim) -> L2 norm
    hidden: int = 512  # width of the head's hidden layer
    input_size: int = 128  # square model input, pixels (small: CPU-sized runs)
    frozen_stages: int = -1  # leading backbone stages left as they are; -1 = the arch's default
    epochs: int = 8
    identities_per_batch: int = 8  # P of a P x K batch
    pictures_per_identity: int = 4  # K of a P x K batch
    mining: str = "batch-hard"  # "batch-hard" (hardest positive and negative in the batch) or "random"
    margin: float = 0.2  # of the triplet loss, in Euclidean distance of unit vectors (0..2)
    learning_rate: float = 3e-4  # Adam
    erasing: float = 0.5  # probability of random erasing per picture
    test_share: float = 0.2  # share of identities held out for the before/after evaluation
    seed: int = 0


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    near: NearConfig = field(default_factory=NearConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    keep: KeepConfig = field(default_factory=KeepConfig)
    run: RunConfig = field(default_factory=RunConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def default_config_path() -> Path:
    return Path(str(resources.files("refinery.configs").joinpath("refinery.toml")))


def load_config(path: Path | None = None) -> Config:
    """Read a TOML config; keys it leaves out keep their defaults; unknown keys are errors."""
    path = Path(path) if path else default_config_path()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from e
    sections: dict[str, Any] = typing.get_type_hints(Config)
    unknown = sorted(set(data) - sections.keys())
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; known: {', '.join(sections)}")
    built = {}
    for name, cls in sections.items():
        values = data.get(name, {})
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - known)
        if bad:
            raise ConfigError(f"{path}: unknown key(s) in [{name}]: {', '.join(bad)}; "
                              f"known: {', '.join(sorted(known))}")
        built[name] = cls(**values)
    return Config(**built)


def apply_overrides(cfg: Config, assignments: list[str]) -> Config:
    """`section.key=value` overrides (values in TOML syntax; bare words are strings)."""
    for text in assignments:
        key, sep, raw = text.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. semantic.threshold=0.92")
        current = getattr(cfg, section, None)
        if current is None or not hasattr(current, name):
            raise ConfigError(f"--set {text!r}: no setting {key.strip()!r}; see `refinery config --show`")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        old = getattr(current, name)
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(old):
            raise ConfigError(f"--set {text!r}: {key.strip()} takes a {type(old).__name__}")
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(current, **{name: value})})
    return cfg


def to_toml(cfg: Config) -> str:
    """The settings as TOML text, every key written out."""
    lines = []
    for section in dataclasses.fields(cfg):
        lines.append(f"[{section.name}]")
        for key, value in dataclasses.asdict(getattr(cfg, section.name)).items():
            text = ("true" if value else "false") if isinstance(value, bool) else (
                f'"{value}"' if isinstance(value, str) else repr(value))
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)
