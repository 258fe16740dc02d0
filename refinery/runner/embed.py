"""Embedding a folder of images into one .npz file (`paths`, `vectors`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refinery.errors import UnreadableImage
from refinery.fileio import atomic_path
from refinery.images import batches, load_input
from refinery.runner.session import Embedder
from refinery.scan import find_images

log = logging.getLogger(__name__)

# A progress reporter: called with (label, total) once, returns a function advanced by n.
Progress = Callable[[str, int], Callable[[int], None]]


@dataclass
class EmbedResult:
    """Vectors for the images that could be read, and the reason for each that could not."""

    paths: list[str]
    vectors: np.ndarray
    errors: dict[str, str] = field(default_factory=dict)


def embed_folder(root: Path, embedder: Embedder, progress: Progress | None = None) -> EmbedResult:
    """Embed every image under `root`; unreadable files are logged and skipped.

    Paths in the result are relative to `root`, in sorted order.
    """
    root = Path(root)
    files = find_images(root)
    advance = progress("embedding", len(files)) if progress else (lambda n: None)
    paths: list[str] = []
    chunks: list[np.ndarray] = []
    errors: dict[str, str] = {}
    for group in batches(files, embedder.batch_size):
        inputs = []
        for path in group:
            rel = path.relative_to(root).as_posix()
            try:
                inputs.append(load_input(path, embedder.spec))
                paths.append(rel)
            except UnreadableImage as e:
                log.error("%s", e)
                errors[rel] = e.reason
        if inputs:
            chunks.append(embedder.embed(np.stack(inputs)))
        advance(len(group))
    dim = embedder.spec.output_dim
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    return EmbedResult(paths, vectors.astype(np.float32), errors)


def save_npz(result: EmbedResult, out: Path) -> None:
    """Write `paths` and `vectors` to `out` (.npz) atomically."""
    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, paths=np.array(result.paths, dtype=str), vectors=result.vectors)
