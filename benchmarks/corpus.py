"""Shared by the benchmark scripts: where the shared corpus tools are, and building a corpus."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"


def ensure_corpus(corpus: Path, n: int, seed: int, shared: Path = SHARED) -> dict:
    """truth.json's files of CORPUS, building it with make_corpus.py first if needed."""
    if not (corpus / "truth.json").exists():
        subprocess.run([sys.executable, str(shared / "make_corpus.py"), str(corpus), "--n", str(n),
                        "--seed", str(seed)], check=True)
    return json.loads((corpus / "truth.json").read_text())["files"]


def load_scorer(shared: Path = SHARED) -> ModuleType:
    """../shared/bench/score.py as a module."""
    spec = importlib.util.spec_from_file_location("score", shared / "score.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
