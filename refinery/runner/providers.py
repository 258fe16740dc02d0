"""Choosing onnxruntime execution providers: CoreML on Apple Silicon, CUDA on NVIDIA, CPU else."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from refinery import install_hint
from refinery.errors import ConfigError, ProviderUnavailable
from refinery.io.fileio import cache_home

DEVICES = ("auto", "cpu", "cuda", "coreml")

ProviderList = list[tuple[str, dict[str, Any]]]

_INSTALL_HINT = {
    "cuda": f"install the GPU build: {install_hint('gpu')} (and uninstall plain onnxruntime)",
    "coreml": "CoreML runs only on macOS with the standard onnxruntime wheel",
}
_PROVIDER = {
    "cuda": "CUDAExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def default_coreml_cache() -> Path:
    """Where the CoreML provider keeps compiled models between runs."""
    return cache_home() / "coreml"


def coreml_options(cache_dir: Path | None = None) -> dict[str, Any]:
    """CoreML provider options: the MLProgram format, static shapes, a model cache.

    The older NeuralNetwork format has no InstanceNormalization and rejects ceil-mode
    max-pooling, both in the fastreid network; static shapes let CoreML compile once.
    """
    cache = Path(cache_dir) if cache_dir else default_coreml_cache()
    cache.mkdir(parents=True, exist_ok=True)
    return {
        "ModelFormat": "MLProgram",
        "MLComputeUnits": "ALL",
        "RequireStaticInputShapes": "1",
        "ModelCacheDirectory": str(cache),
    }


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(
    device: str = "auto",
    available: list[str] | None = None,
    machine: str | None = None,
    coreml_cache: Path | None = None,
) -> ProviderList:
    """The providers to hand to onnxruntime for `device`, best first, CPU always last.

    `auto` picks CoreML on Apple Silicon, CUDA where onnxruntime-gpu sees a GPU, else CPU.
    Naming a device that is not available raises ProviderUnavailable; `auto` never does.
    """
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    available = available_providers() if available is None else available
    machine = machine or f"{platform.system()}-{platform.machine()}"
    cpu: ProviderList = [("CPUExecutionProvider", {})]

    def provider(name: str) -> ProviderList:
        options = coreml_options(coreml_cache) if name == "coreml" else {}
        return [(_PROVIDER[name], options)]

    if device == "cpu":
        return cpu
    if device in ("cuda", "coreml"):
        if _PROVIDER[device] not in available:
            raise ProviderUnavailable(
                f"device {device!r} asked for, but onnxruntime here offers only "
                f"{', '.join(available)}; {_INSTALL_HINT[device]}"
            )
        return provider(device) + cpu
    if machine == "Darwin-arm64" and _PROVIDER["coreml"] in available:
        return provider("coreml") + cpu
    if _PROVIDER["cuda"] in available:
        return provider("cuda") + cpu
    return cpu
