"""Reading a reference (`refinery dedup NEW --against REF`, dedup/reference.py): a folder read
and embedded through its own feature cache, or an index made by `refinery index` loaded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from refinery.dedup.reference import Reference, check_apart
from refinery.errors import RefineryError
from refinery.io.fileio import file_sha256

if TYPE_CHECKING:
    import faiss

    from refinery.config import Config
    from refinery.parallel import Progress
    from refinery.runner.session import Embedder

log = logging.getLogger(__name__)


def load_references(
    sources: list[Path], judged: Path | str, cfg: Config, embedder: Embedder, progress: Progress | None = None
) -> list[Reference]:
    """Each `--against` source as a Reference (a folder read, an index loaded); refused in one
    line where it is the judged folder, holds it or lies inside it (its pictures would be
    judged against themselves)."""
    references = []
    for source in sources:
        ref = _load(Path(source), cfg, embedder, progress)
        check_apart(judged, ref)
        log.info("against %s: %d pictures", ref.source, len(ref))
        references.append(ref)
    return references


def _load(source: Path, cfg: Config, embedder: Embedder, progress: Progress | None) -> Reference:
    if not source.is_dir():
        raise RefineryError(f"--against {source}: not a folder or an index")
    if (source / "index.json").exists():
        return _from_index(source, embedder)
    return _from_folder(source, cfg, embedder, progress)


def _from_folder(folder: Path, cfg: Config, embedder: Embedder, progress: Progress | None) -> Reference:
    """Read and embed a folder as `refinery index` would (every readable picture, quality
    failures too: a blurred training picture is still in the training set)."""
    from refinery.dedup.featurepass import embed_every_picture
    from refinery.io.cache import open_cache
    from refinery.runner.session import l2_normalize

    cache = open_cache(cfg, embedder, folder)
    try:
        found = embed_every_picture(folder, cfg, embedder, progress, cache)
    finally:
        if cache:
            cache.close()
    for path, why in found.left_out:
        log.info("--against %s: %s left out: %s", folder, path, why)
    assert found.keys is not None  # embed_every_picture gives them
    return Reference(folder.resolve(), folder.resolve(), found.paths, found.keys, _flat(l2_normalize(found.vectors)))


def _from_index(path: Path, embedder: Embedder) -> Reference:
    """An index made by `refinery index` with the model this run uses, of whole pictures."""
    from refinery.retrieval.index import RetrievalIndex

    index = RetrievalIndex.load(path, device="cpu")
    meta = index.meta
    if meta.get("faces"):
        raise RefineryError(f"--against {path}: an index of faces (--faces); give an index of whole pictures")
    if meta["model"]["sha256"] != file_sha256(embedder.path):
        raise RefineryError(
            f"--against {path}: indexed with {meta['model']['path']}, and this run uses {embedder.path}; "
            f"run with --model {meta['model']['path']}, or index it again with this model"
        )
    if index.keys is None:
        raise RefineryError(
            f"--against {path}: indexed before refinery kept each picture's hashes in an index; "
            f"index it again (`refinery index {meta['root']} --out {path}`: the embeddings come from the cache)"
        )
    assert index.gallery.index is not None  # a loaded index has its FAISS index
    return Reference(path.resolve(), Path(meta["root"]), index.paths, index.keys, index.gallery.index)


def _flat(vectors: np.ndarray) -> faiss.Index:
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, np.float32))
    return index
