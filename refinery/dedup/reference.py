"""A reference: pictures judged against, never judged (`refinery dedup NEW --against REF`).

A training set that a test set must not share pictures with, or a clean dataset a new batch
joins. Every reference picture is a keeper that is never removed, moved or written; a NEW
picture that is the same as one of them - the same bytes, a near copy, or alike to the model
- goes, with that reference picture as its keeper.

A reference is a folder (read and embedded here, through its own feature cache, so a second
run reads nothing) or an index made by `refinery index` (read from disk: a million-picture
reference is embedded once). Both hold the same things - each picture's SHA-256, hashes,
thumbnail and unit embedding - made by the same pass, so both give the same decisions.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from refinery.dedup.table import PictureKeys
from refinery.errors import RefineryError
from refinery.io.fileio import file_sha256

if TYPE_CHECKING:
    import faiss

    from refinery.config import Config
    from refinery.parallel import Progress
    from refinery.runner.session import Embedder

log = logging.getLogger(__name__)


@dataclass
class Reference:
    """The pictures of one reference, a row each: where they are, what the picture stages
    compare and their unit embeddings (a FAISS inner-product index, searched exactly)."""

    source: Path  # the folder or index given, resolved
    root: Path  # the folder its pictures are in (an index's: the one it indexed)
    paths: list[str]  # relative to root
    keys: PictureKeys
    vectors: faiss.Index

    def path(self, row: int) -> str:
        """A reference picture as reports name it: its full path (it lies outside the judged folder)."""
        return str(self.root / self.paths[row])

    def __len__(self) -> int:
        return len(self.paths)

    def exact_index(self) -> faiss.Index:
        """The embeddings searched exactly: a large index's HNSW graph is approximate, the
        vectors it stores are not (the same answers as the folder it was made from)."""
        import faiss

        if isinstance(self.vectors, faiss.IndexHNSWFlat):
            return faiss.downcast_index(self.vectors.storage)
        return self.vectors


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


def check_apart(judged: Path | str, ref: Reference) -> None:
    """The judged folder and a reference's pictures must not overlap."""
    _check_apart(judged, ref.source, ref.root)


def check_references(judged: Path | str, sources: list[Path], outputs: list[tuple[str, Path | None]]) -> None:
    """Before anything is read or written: refuse, in one line, a reference that overlaps the
    judged folder, and an output or destination in a reference (the folder, the index, or
    the folder an index was made of) - nothing is ever written there."""
    guarded = _guarded(sources)
    for source, folder in guarded:
        if folder != source:  # an index: the folder it was made of
            _check_apart(judged, source, folder)
    for source in sources:
        _check_apart(judged, Path(source), Path(source))
    for flag, target in outputs:
        if target is None:
            continue
        where = os.path.realpath(target)
        for source, folder in guarded:
            if where == os.path.realpath(folder) or _inside(where, os.path.realpath(folder)):
                raise RefineryError(
                    f"{flag} {target}: inside the reference {source} (--against); refinery never writes "
                    "there: give a place outside it"
                )


def _guarded(sources: list[Path]) -> list[tuple[Path, Path]]:
    """(source, folder) for each reference: the source itself, and an index's pictures' folder."""
    from refinery.retrieval.storage import index_json

    guarded: list[tuple[Path, Path]] = []
    for source in map(Path, sources):
        meta = index_json(source) if source.is_dir() else None
        guarded += [(source, source)] + ([(source, Path(meta["root"]))] if meta else [])
    return guarded


def _check_apart(judged: Path | str, source: Path, pictures: Path) -> None:
    if not isinstance(judged, Path):
        return
    new, theirs = os.path.realpath(judged), os.path.realpath(pictures)
    if new == theirs or _inside(new, theirs) or _inside(theirs, new):
        how = "is" if new == theirs else "holds" if _inside(new, theirs) else "lies inside"
        raise RefineryError(
            f"--against {source}: its pictures' folder {pictures} {how} the judged folder {judged}; "
            "a reference must be apart from what is judged against it"
        )


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


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
