"""Shared by the benchmark scripts: where the shared corpus tools are, and building a corpus."""

from __future__ import annotations

import importlib.util
import json
import platform
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"


def ensure_corpus(corpus: Path, n: int, seed: int, shared: Path = SHARED) -> dict:
    """truth.json's files of CORPUS, building it with make_corpus.py first if needed."""
    if not (corpus / "truth.json").exists():
        subprocess.run(
            [sys.executable, str(shared / "make_corpus.py"), str(corpus), "--n", str(n), "--seed", str(seed)],
            check=True,
        )
    return json.loads((corpus / "truth.json").read_text())["files"]


def load_shared(name: str, shared: Path = SHARED) -> ModuleType:
    """../shared/bench/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(name, shared / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_scorer(shared: Path = SHARED) -> ModuleType:
    """../shared/bench/score.py (crop corpora) as a module."""
    return load_shared("score", shared)


def load_sequence_scorer(shared: Path = SHARED) -> ModuleType:
    """../shared/bench/score_sequences.py (fixed-camera sequences) as a module."""
    return load_shared("score_sequences", shared)


def cpu_name() -> str:
    """The processor, as benchmarks print it (figures compare only within one machine)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
