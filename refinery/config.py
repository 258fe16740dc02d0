"""refinery's settings: a TOML file (configs/refinery.toml holds the defaults), then flags."""

from __future__ import annotations

import dataclasses
import sys
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
    batch_size: int = 32
    threads: int = 0  # onnxruntime intra-op threads; 0 = one per core

    def override(self, **flags: Any) -> ModelConfig:
        """A copy with every flag that was given (not None) put over the file's value."""
        changes = {("path" if k == "model" else k): v for k, v in flags.items() if v is not None}
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)


def default_config_path() -> Path:
    return Path(str(resources.files("refinery.configs").joinpath("refinery.toml")))


def load_config(path: Path | None = None) -> Config:
    """Read a TOML config; keys it leaves out keep their defaults; unknown keys are errors."""
    path = Path(path) if path else default_config_path()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from e
    sections = {"model": ModelConfig}
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
