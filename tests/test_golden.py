"""Golden embeddings: the shipped model, through the runner, gives the vectors it gave when
it was committed. Guards the whole runtime path (decode, resize, spec, session) without torch.

Regenerate after a deliberate change: python tests/test_golden.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import draw_picture
from refinery.io.images import load_input
from refinery.runner import Embedder

GOLDEN = Path(__file__).parent / "data" / "golden_default.npz"
SEEDS = (0, 1, 2, 3)


def current_vectors(folder: Path) -> np.ndarray:
    embedder = Embedder("default", device="cpu")
    paths = []
    for seed in SEEDS:
        paths.append(folder / f"golden_{seed}.png")  # PNG: lossless, the same bytes everywhere
        draw_picture(seed, size=(320, 240)).save(paths[-1])
    return embedder.embed(np.stack([load_input(p, embedder.spec) for p in paths]))


@pytest.mark.golden
def test_default_model_matches_golden_vectors(tmp_path: Path) -> None:
    expected = np.load(GOLDEN)["vectors"].astype(np.float32)
    got = current_vectors(tmp_path)
    cosine = (got * expected).sum(1) / np.linalg.norm(expected, axis=1)
    assert got.shape == expected.shape
    assert cosine.min() > 0.9999, cosine


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(GOLDEN, vectors=current_vectors(Path(tmp)).astype(np.float16))
    print(f"wrote {GOLDEN}")
