"""Provider choice: CoreML on Apple Silicon, CUDA where present, CPU otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from refinery.errors import ConfigError, ProviderUnavailable
from refinery.runner import Embedder
from refinery.runner.providers import resolve_providers

CPU = "CPUExecutionProvider"
ALL = [CPU, "CUDAExecutionProvider", "CoreMLExecutionProvider"]


def names(providers: list) -> list[str]:
    return [name for name, _ in providers]


def test_auto_on_apple_silicon_asks_coreml_for_mlprogram(tmp_path: Path) -> None:
    chosen = resolve_providers("auto", available=ALL, machine="Darwin-arm64", coreml_cache=tmp_path)
    assert names(chosen) == ["CoreMLExecutionProvider", CPU]
    options = chosen[0][1]
    assert options["ModelFormat"] == "MLProgram"
    assert options["RequireStaticInputShapes"] == "1"
    assert options["ModelCacheDirectory"] == str(tmp_path)


def test_auto_prefers_cuda_on_linux() -> None:
    assert names(resolve_providers("auto", available=ALL, machine="Linux-x86_64")) == ["CUDAExecutionProvider", CPU]


def test_auto_falls_back_to_cpu() -> None:
    assert names(resolve_providers("auto", available=[CPU], machine="Linux-x86_64")) == [CPU]
    assert names(resolve_providers("auto", available=[CPU], machine="Darwin-arm64")) == [CPU]


def test_cpu_is_always_cpu() -> None:
    assert names(resolve_providers("cpu", available=ALL, machine="Darwin-arm64")) == [CPU]


def test_naming_a_missing_device_says_how_to_get_it() -> None:
    with pytest.raises(ProviderUnavailable, match=r"refinery\[gpu\]"):
        resolve_providers("cuda", available=[CPU])


def test_unknown_device() -> None:
    with pytest.raises(ConfigError, match="auto, cpu, cuda, coreml"):
        resolve_providers("tpu")


def test_real_session_reports_the_provider_that_runs() -> None:
    embedder = Embedder("default", device="cpu")
    assert embedder.provider == CPU
    assert embedder.providers == [CPU]
