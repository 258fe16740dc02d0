"""Embedding a folder of images into one .npz file (`paths`, `vectors`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refinery.errors import UnreadableImage
from refinery.io.fileio import atomic_path
from refinery.io.images import batches, load_input
from refinery.io.scan import find_images
from refinery.parallel import cpu_count, ordered_map
from refinery.runner.session import Embedder

log = logging.getLogger(__name__)

# A progress reporter: called with (label, total) once, returns a function advanced by n.
Progress = Callable[[str, int], Callable[[int], None]]


@dataclass
class EmbedResult:
    """Vectors for the images that could be read, and the reason for each that could not."""

    paths: list[str]
    vectors: np.ndarray
    errors: dict[str, str] = field(default_factory=dict)


def embed_folder(root: Path, embedder: Embedder, progress: Progress | None = None, workers: int = 0) -> EmbedResult:
    """Embed every image under `root`; unreadable files are logged and skipped.

    Paths in the result are relative to `root`, in sorted order. Batches are decoded and
    embedded on `workers` threads (0 = one per core).
    """
    root = Path(root)
    files = find_images(root)
    advance = progress("embedding", len(files)) if progress else (lambda n: None)

    def embed_chunk(chunk: list[Path]) -> tuple[list[str], np.ndarray | None, dict[str, str]]:
        rels, inputs, errors = [], [], {}
        for path in chunk:
            rel = path.relative_to(root).as_posix()
            try:
                inputs.append(load_input(path, embedder.spec))
                rels.append(rel)
            except UnreadableImage as e:
                errors[rel] = e.reason
        return rels, (embedder.embed(np.stack(inputs)) if inputs else None), errors

    if files:
        embedder.load()  # fail on a bad model before any work; settles a model's fixed batch size
    workers = workers or cpu_count()
    result = EmbedResult([], np.zeros((0, embedder.spec.output_dim), np.float32))
    chunks: list[np.ndarray] = []
    for rels, vectors, errors in ordered_map(embed_chunk, batches(files, embedder.batch_size),
                                             workers, ahead=2 * workers):
        for rel, reason in errors.items():
            log.error("%s: %s", root / rel, reason)
        result.paths += rels
        result.errors.update(errors)
        if vectors is not None:
            chunks.append(vectors)
        advance(len(rels) + len(errors))
    if chunks:
        result.vectors = np.concatenate(chunks).astype(np.float32)
    return result


def save_npz(result: EmbedResult, out: Path) -> None:
    """Write `paths` and `vectors` to `out` (.npz) atomically."""
    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, paths=np.array(result.paths, dtype=str), vectors=result.vectors)
