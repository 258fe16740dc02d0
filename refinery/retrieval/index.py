"""A folder's pictures, ready to be searched by image: `refinery index` writes it, `search`,
`eval` and `serve` read it.

On disk an index is a folder of these files (and only these are ever written or removed
there: a folder that holds anything else and no index is refused):

    index.json       paths (relative to the indexed folder), their size and mtime, the model
                     (path, SHA-256), faces or not, the FAISS index kind, files left out and
                     why, and the size and SHA-256 of each file below (checked when read)
    embedding.faiss  the embeddings: exact inner product (flat) up to `exact_up_to` pictures,
                     HNSW beyond (benchmarks/README.md, "Retrieval index", has the recall)
    pixels.npy       PIXEL_SIZE x PIXEL_SIZE RGB thumbnails, uint8, for the pixel baselines
    keys.npz         each picture's SHA-256, pHash, dHash and gray thumbnail: what `refinery
                     dedup NEW --against INDEX` compares (absent in an index made before)
    sift.npz         SIFT descriptors and keypoints per picture, for the SIFT baseline

Each file is written under a new random name, flushed, and renamed over its old version;
index.json goes last, so a crash leaves either the old index or one that its own
index.json marks as damaged (its files' hashes disagree), never a mix that loads.

Building again over the same folder is incremental: embeddings come from the feature cache,
thumbnails and SIFT of files whose size and mtime did not change from the old index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from PIL import Image

from refinery.ann import EXACT_UP_TO, HNSW_EF_SEARCH, make_faiss_index
from refinery.config import Config
from refinery.dedup.featurepass import Crop, embed_every_picture
from refinery.dedup.table import PictureKeys
from refinery.errors import NoFace, RefineryError, UnreadableImage
from refinery.io.cache import FeatureCache
from refinery.io.fileio import file_sha256
from refinery.io.images import decode_for_stages, read_bytes, to_input
from refinery.parallel import Progress, cpu_count, ordered_map
from refinery.retrieval import faces as face_finder
from refinery.retrieval.methods import (
    DISTANCES,
    PIXEL_METHODS,
    SiftFeatures,
    SiftGallery,
    pixel_scores,
    pixel_vector,
    sift_features,
)
from refinery.retrieval.storage import (
    INDEX_VERSION,
    UNREADABLE,
    HashingWriter,
    check_index_folder,
    check_parts,
    keys_bytes,
    load_keys,
    load_sift,
    read_index_meta,
    sift_bytes,
    unlink_quietly,
    unreadable,
    write_part,
)
from refinery.runner.session import Embedder, l2_normalize
from refinery.runner.text import TextEmbedder, text_tower_of

METRICS = ("cosine", "l2")


@dataclass
class Hit:
    rank: int
    score: float
    path: str


@dataclass
class Query:
    """What every method needs of one query picture."""

    name: str
    vector: np.ndarray  # L2-normalised embedding
    pixels: np.ndarray
    sift: SiftFeatures | None


@dataclass
class Gallery:
    """The searchable side: one row per picture in every array."""

    paths: list[str]
    vectors: np.ndarray
    pixels: np.ndarray
    sift: list[SiftFeatures] | None = None
    index: faiss.Index | None = None
    keys: PictureKeys | None = None  # each picture's SHA-256, hashes and thumbnail (`dedup --against`)
    _sift_gallery: SiftGallery | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = make_faiss_index(self.vectors)

    def methods(self) -> list[str]:
        return ["embedding", *PIXEL_METHODS] + (["sift"] if self.sift is not None else [])

    def scores(
        self, query: Query, method: str, metric: str = "cosine", k: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(gallery rows best first, their scores); the k best, or the whole gallery."""
        n = len(self.paths)
        k = n if k is None else min(k, n)
        if k == 0:  # an empty gallery (FAISS refuses to look for 0 neighbours)
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if method == "embedding":
            if metric not in METRICS:
                raise RefineryError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
            sims, rows = self.index.search(query.vector[None, :].astype(np.float32), k)  # type: ignore[union-attr]
            keep = rows[0] >= 0
            rows, sims = rows[0][keep], sims[0][keep]
            # Unit vectors: squared L2 distance is 2 - 2 cos, so the order is the same, the scale is not.
            return rows, (sims if metric == "cosine" else 2 - 2 * sims)
        if method == "sift":
            if self.sift is None or query.sift is None:
                raise RefineryError("this index has no SIFT features; build it with `refinery index --sift`")
            if self._sift_gallery is None:
                self._sift_gallery = SiftGallery(self.sift)
            order, scores = self._sift_gallery.rank(query.sift)
            return order[:k], scores[:k]
        if method not in PIXEL_METHODS:
            raise RefineryError(f"unknown method {method!r}; choose one of {', '.join(self.methods())}")
        scores = pixel_scores(method, query.pixels, self.pixels)
        order = np.argsort(scores if method in DISTANCES else -scores, kind="stable")[:k]
        return order, scores[order]


def face_crop(faces: bool) -> Crop | None:
    return face_finder.largest_face if faces else None


class QueryMaker:
    """Turns picture bytes into a Query the way the index was built (same model, same crop)."""

    def __init__(self, embedder: Embedder, faces: bool, with_sift: bool):
        self.embedder, self.faces, self.with_sift = embedder, faces, with_sift

    def picture(self, data: bytes, name: str) -> Image.Image:
        """The decoded picture (the face in it, with --faces), as every method sees it."""
        image = decode_for_stages(data, name, self.embedder.spec).image
        if self.faces:
            face, why = face_finder.largest_face(image)
            if face is None:
                raise NoFace(f"{name}: {why}")
            image = face
        return image

    def __call__(self, data: bytes, name: str) -> Query:
        image = self.picture(data, name)
        vector = self.embedder.embed(to_input(image, self.embedder.spec)[None])[0]
        return Query(name, vector, pixel_vector(image), sift_features(image) if self.with_sift else None)


@dataclass
class RetrievalIndex:
    """A Gallery with where it came from: the folder, the model, the files and their stats."""

    root: Path
    gallery: Gallery
    meta: dict[str, Any]  # index.json's object
    embedder: Embedder
    device: str = "auto"
    _text: TextEmbedder | None = field(default=None, repr=False)

    @property
    def paths(self) -> list[str]:
        return self.gallery.paths

    @property
    def keys(self) -> PictureKeys | None:
        return self.gallery.keys

    @property
    def query_maker(self) -> QueryMaker:
        return QueryMaker(self.embedder, self.meta["faces"], self.gallery.sift is not None)

    def search(
        self, data: bytes, name: str, k: int = 10, method: str = "embedding", metric: str = "cosine"
    ) -> list[Hit]:
        """The k pictures most like the query bytes, best first."""
        return self._hits(self.query_maker(data, name), method, metric, k)

    def search_text(self, text: str, k: int = 10, metric: str = "cosine") -> list[Hit]:
        """The k pictures whose embeddings are nearest the words `text` (a CLIP index), best first.

        Raises NoTextTower (one line) when the index's model has no text tower.
        """
        if self._text is None:
            self._text = text_tower_of(self.embedder.path, self.embedder.spec, self.device)
        return self._hits(Query(text, self._text.embed([text])[0], np.zeros(0, np.uint8), None), "embedding", metric, k)

    def _hits(self, query: Query, method: str, metric: str, k: int) -> list[Hit]:
        rows, scores = self.gallery.scores(query, method, metric, k)
        return [
            Hit(rank, round(float(score), 6), self.paths[row])
            for rank, (row, score) in enumerate(zip(rows, scores, strict=True), start=1)
        ]

    @property
    def searchable_by_text(self) -> bool:
        return bool(self.embedder.spec.text_model)

    def save(self, out: Path) -> None:
        """Write the index into `out`, a new or empty folder or an index to replace, file by file."""
        out = Path(out)
        old = check_index_folder(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            self._save_parts(out, old)
        except OSError as e:  # nothing half-written is left: new files are removed, old ones kept
            raise RefineryError(f"{out}: cannot write the index: {e.strerror or e}") from None

    def _save_parts(self, out: Path, old: set[str]) -> None:
        folder = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            index, sift = self.gallery.index, self.gallery.sift
            assert index is not None  # Gallery makes one
            writers: dict[str, Callable[[HashingWriter], object]] = {
                "embedding.faiss": lambda f: faiss.write_index(index, faiss.PyCallbackIOWriter(f.write)),  # type: ignore[attr-defined]
                "pixels.npy": lambda f: np.save(f, self.gallery.pixels),
            }
            if sift is not None:
                writers["sift.npz"] = lambda f: f.write(sift_bytes(sift))
            if (keys := self.keys) is not None:
                writers["keys.npz"] = lambda f: f.write(keys_bytes(keys))
            written = {name: write_part(folder, name, write) for name, write in writers.items()}
            meta = {**self.meta, "parts": {name: part for name, (_, part) in written.items()}}
            index_json = write_part(folder, "index.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
            try:
                for name, (tmp, _) in [*written.items(), ("index.json", index_json)]:
                    os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                for tmp, _ in [*written.values(), index_json]:
                    unlink_quietly(folder, tmp)
                raise
            # A part the old index had and this one has not (sift.npz) goes with the old index.
            for name in old - written.keys():
                unlink_quietly(folder, name)
        finally:
            os.close(folder)

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> RetrievalIndex:
        path = Path(path)
        meta = read_index_meta(path)
        check_parts(path, meta)
        model = Path(meta["model"]["path"])
        if not model.is_file() or file_sha256(model) != meta["model"]["sha256"]:
            raise RefineryError(
                f"{path}: built with the model {model} (SHA-256 {meta['model']['sha256'][:12]}), "
                "which is not there any more; build the index again"
            )
        try:  # the parts' hashes are in index.json, which a hand can edit too
            index = faiss.read_index(str(path / "embedding.faiss"))
            sift = load_sift(path / "sift.npz") if "sift.npz" in meta["parts"] else None
            pixels = np.load(path / "pixels.npy", allow_pickle=False)
            keys = load_keys(path / "keys.npz", len(meta["files"])) if "keys.npz" in meta["parts"] else None
        except UNREADABLE as e:
            raise unreadable(path, e) from None
        if isinstance(index, faiss.IndexHNSWFlat):
            index.hnsw.efSearch = HNSW_EF_SEARCH
        paths = [f[0] for f in meta["files"]]
        if not (index.ntotal == len(pixels) == len(paths) and (sift is None or len(sift) == len(paths))):
            raise RefineryError(
                f"{path}: damaged index: its files hold different numbers of pictures; build it "
                "again with `refinery index`"
            )
        gallery = Gallery(paths, np.zeros((0, index.d), np.float32), pixels, sift, index, keys)
        return cls(Path(meta["root"]), gallery, meta, Embedder(model, device=device), device)


def build_index(
    root: Path,
    cfg: Config,
    embedder: Embedder,
    *,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
    faces: bool = False,
    with_sift: bool = False,
    previous: RetrievalIndex | None = None,
    exact_up_to: int = EXACT_UP_TO,
) -> RetrievalIndex:
    """Embed every readable picture under `root` and make it searchable by every method."""
    root = Path(root)
    folder = embed_every_picture(root, cfg, embedder, progress, cache, face_crop(faces))
    maker = QueryMaker(embedder, faces, with_sift)
    stats = [_stat(root / p) for p in folder.paths]
    reusable = _reusable(previous, with_sift)

    def extras(item: tuple[str, tuple[int, int]]) -> tuple[np.ndarray, SiftFeatures | None] | str:
        rel, stat = item
        key = (rel, *stat)
        if key in reusable:
            return reusable[key]
        try:
            image = maker.picture(read_bytes(root / rel), rel)
        except (UnreadableImage, NoFace) as e:  # changed since it was embedded
            return str(e)
        return pixel_vector(image), sift_features(image) if with_sift else None

    done = list(ordered_map(extras, zip(folder.paths, stats, strict=True), cpu_count(), ahead=4 * cpu_count()))
    ok = [i for i, d in enumerate(done) if not isinstance(d, str)]
    left_out = folder.left_out + [(folder.paths[i], d) for i, d in enumerate(done) if isinstance(d, str)]
    vectors = l2_normalize(folder.vectors[ok]) if ok else folder.vectors
    pixels = np.stack([done[i][0] for i in ok]) if ok else np.zeros((0, 3 * 32 * 32), np.uint8)
    sift = [done[i][1] for i in ok] if with_sift else None
    index = make_faiss_index(vectors, exact_up_to)
    meta = {
        "version": INDEX_VERSION,
        "root": str(root.resolve()),
        "model": {
            "path": str(embedder.path.resolve()),
            "sha256": file_sha256(embedder.path),
            "name": embedder.path.name,
            "dim": int(vectors.shape[1]),
        },
        "faces": faces,
        "kind": "flat" if isinstance(index, faiss.IndexFlatIP) else "hnsw",
        "files": [[folder.paths[i], *stats[i]] for i in ok],
        "left_out": sorted(left_out),
        "cached": folder.cached,
    }
    keys = PictureKeys(**{name: a[ok] for name, a in folder.keys.arrays().items()}) if folder.keys else None
    gallery = Gallery([folder.paths[i] for i in ok], vectors, pixels, sift, index, keys)  # type: ignore[arg-type]
    return RetrievalIndex(root, gallery, meta, embedder)


def _stat(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _reusable(
    previous: RetrievalIndex | None, with_sift: bool
) -> dict[tuple[str, int, int], tuple[np.ndarray, SiftFeatures | None]]:
    """Thumbnails (and SIFT) of the previous index, by (path, size, mtime)."""
    if previous is None or (with_sift and previous.gallery.sift is None):
        return {}
    sift = previous.gallery.sift
    return {
        tuple(f): (previous.gallery.pixels[i], sift[i] if (with_sift and sift) else None)
        for i, f in enumerate(previous.meta["files"])
    }
