"""Reading a reference (`refinery dedup NEW --against REF`, dedup/reference.py): a folder read
and embedded through its own feature cache, or an index made by `refinery index` loaded."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refinery.dedup.reference import Reference, check_apart_at
from refinery.errors import NoPictures, RefineryError
from refinery.io.fileio import file_sha256

if TYPE_CHECKING:
    import faiss

    from refinery.config import Config
    from refinery.parallel import Progress
    from refinery.runner.session import Embedder

log = logging.getLogger(__name__)


class LoadingReferences:
    """The `--against` sources made ready while the judged folder is read: each folder read
    and embedded now (it needs the cores the judged folder's pass would take); each index
    checked now - its model, its kind, where its pictures are - and its parts read and verified
    in a thread while the pass runs (a hundred thousand embeddings read and hashed: a second
    the pass need not wait for). A context manager; `result()` after the pass. Refused in one
    line, before anything is read, where a reference overlaps the judged folder (its pictures
    would be judged against themselves)."""

    def __init__(
        self, sources: list[Path], judged: Path | str, cfg: Config, embedder: Embedder, progress: Progress | None
    ):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="refinery-reference")
        self._items: list[Reference | Future[Reference]] = []
        try:
            for source in dict.fromkeys(Path(s).resolve() for s in sources):  # each reference once
                if not source.is_dir():
                    raise RefineryError(f"--against {source}: not a folder or an index")
                if (source / "index.json").exists():
                    meta = _index_meta(source, embedder)
                    check_apart_at(judged, source, Path(meta["root"]))
                    self._items.append(self._pool.submit(_index_parts, source, meta))
                else:
                    check_apart_at(judged, source, source)
                    self._items.append(_from_folder(source, cfg, embedder, progress))
        except BaseException:
            self._pool.shutdown(cancel_futures=True)
            raise

    def __enter__(self) -> LoadingReferences:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(cancel_futures=True)

    def result(self) -> list[Reference]:
        """Every reference, ready (an index's parts checked against its index.json)."""
        references = [item.result() if isinstance(item, Future) else item for item in self._items]
        for ref in references:
            log.info("against %s: %d pictures", ref.source, len(ref))
        return references


def _from_folder(folder: Path, cfg: Config, embedder: Embedder, progress: Progress | None) -> Reference:
    """Read and embed a folder as `refinery index` would (every readable picture, quality
    failures too: a blurred training picture is still in the training set)."""
    from refinery.dedup.featurepass import embed_every_picture
    from refinery.io.cache import open_cache
    from refinery.runner.session import l2_normalize

    cache = open_cache(cfg, embedder, folder)
    try:
        found = embed_every_picture(folder, cfg, embedder, progress, cache)
    except NoPictures as e:
        raise NoPictures(f"--against {e}") from None
    finally:
        if cache:
            cache.close()
    for path, why in found.left_out:
        log.info("--against %s: %s left out: %s", folder, path, why)
    assert found.keys is not None  # embed_every_picture gives them
    return Reference(folder.resolve(), folder.resolve(), found.paths, found.keys, _flat(l2_normalize(found.vectors)))


def _index_meta(path: Path, embedder: Embedder) -> dict[str, Any]:
    """An index's index.json, checked to be one a reference can be: made by `refinery index`
    with the model this run uses, of whole pictures, with each picture's keys."""
    from refinery.retrieval.storage import read_index_meta

    meta = read_index_meta(path)
    if meta.get("faces"):
        raise RefineryError(f"--against {path}: an index of faces (--faces); give an index of whole pictures")
    if meta["model"]["sha256"] != file_sha256(embedder.path):
        raise RefineryError(
            f"--against {path}: indexed with {meta['model']['path']}, and this run uses {embedder.path}; "
            f"run with --model {meta['model']['path']}, or index it again with this model"
        )
    if "keys.npz" not in (meta.get("parts") or {}):
        raise RefineryError(
            f"--against {path}: indexed before refinery kept each picture's hashes in an index; "
            f"index it again (`refinery index {meta['root']} --out {path}`: the embeddings come from the cache)"
        )
    return meta


def _index_parts(path: Path, meta: dict[str, Any]) -> Reference:
    """The parts of a checked index a reference needs - the embeddings, each picture's keys -
    each verified against the size and SHA-256 its index.json lists."""
    import faiss

    from refinery.retrieval.storage import UNREADABLE, check_parts, load_keys, unreadable

    check_parts(path, meta, only=("embedding.faiss", "keys.npz"))
    paths = [f[0] for f in meta["files"]]
    try:
        index = faiss.read_index(str(path / "embedding.faiss"))
        keys = load_keys(path / "keys.npz", len(paths))
    except UNREADABLE as e:
        raise unreadable(path, e) from None
    if index.ntotal != len(paths):
        raise RefineryError(f"{path}: damaged index: its files hold different numbers of pictures; index it again")
    return Reference(path.resolve(), Path(meta["root"]), paths, keys, index)


def _flat(vectors: np.ndarray) -> faiss.Index:
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, np.float32))
    return index
