"""The read-once pass over a folder: each file read, hashed, decoded, measured and embedded
once (or taken from the feature cache), by worker threads a model batch at a time. The Ray
engine (dedup/engines/ray.py) fills the same columns on a cluster."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from refinery import features as feats
from refinery.config import Config, QualityConfig
from refinery.dedup.decisions import ERROR, KEEP, SKIP
from refinery.dedup.grays import GrayStore
from refinery.dedup.stages import quality
from refinery.dedup.state import NOT_REACHED, Picture, Run, StageStats
from refinery.dedup.table import PictureKeys
from refinery.dedup.vectors import VectorStore
from refinery.errors import NoPictures, UnreadableImage
from refinery.features import Features, gray_work, measure
from refinery.io.cache import FeatureCache
from refinery.io.images import decode_for_stages, read_bytes, to_input
from refinery.io.scan import Skipped, scan
from refinery.parallel import Progress, cpu_count, ordered_map
from refinery.reasons import Reason, ReasonCode
from refinery.runner.session import Embedder
from refinery.spec import ModelSpec

log = logging.getLogger(__name__)


# Cuts the part to embed out of a picture, or says why there is none: (image, "") or (None, why).
Crop = Callable[[Image.Image], tuple[Image.Image | None, str]]
CACHE_VECTORS_PER_WRITE = 1024  # cached vectors gathered before one write to the run's VectorStore


def list_files(root: Path, cfg: Config) -> tuple[list[str], list[Skipped]]:
    """The files to judge under a local folder (relative paths) and the entries the scan left
    out; NoPictures, saying what is there instead, when there is no picture to judge."""
    found = scan(root, cfg.run.follow_symlinks)
    if not found.files:
        raise NoPictures(f"{root}: no picture found - {found.without_pictures()}")
    return [path.relative_to(root).as_posix() for path in found.files], found.skipped


class VectorWriter:
    """Vectors gathered into blocks, then written to the run's VectorStore: memory keeps
    only their row numbers."""

    def __init__(self, run: Run, store: VectorStore):
        self.run, self.store = run, store
        self.rows: list[int] = []
        self.vectors: list[np.ndarray] = []

    def add(self, row: int, vector: np.ndarray | None) -> None:
        if vector is not None:
            self.rows.append(row)
            self.vectors.append(vector)
            if len(self.rows) >= CACHE_VECTORS_PER_WRITE:
                self.flush()

    def flush(self) -> None:
        if self.rows:
            self.run.vector_row[self.rows] = np.asarray(self.store.append(np.stack(self.vectors)))
            self.rows, self.vectors = [], []


def file_findings(run: Run, pic: Picture, root: Path | str) -> None:
    """Put a worker's findings on one file into the run's columns (not its vector)."""
    row = pic.row
    run.done[row] = True
    if pic.error:
        run.error(row, pic.error)
        log.error("%s/%s: %s", root, run.table.paths[row], pic.error)
    elif pic.copy_of is not None:
        run.copy_of[row] = pic.copy_of
        return
    if pic.features is not None:
        run.table.put(row, pic.features)
    if pic.defect:
        run.quality[row] = pic.defect
    if pic.skip:
        run.skip(row, pic.skip, ReasonCode.NO_FACE)


@dataclass
class FolderVectors:
    """An embedding for every readable picture under a folder (retrieval's view of it)."""

    paths: list[str]  # relative to the folder, one per row
    vectors: np.ndarray  # float32 rows as the model gave them (through float16: the run's store)
    left_out: list[tuple[str, str]]  # (path, why): unreadable, no face, a link, a hidden folder
    cached: int  # files taken from the cache
    errors: int = 0  # of left_out, the files that could not be read (each logged as an error)
    keys: PictureKeys | None = None  # each row's bytes' SHA-256, hashes and thumbnail


def embed_every_picture(
    root: Path,
    cfg: Config,
    embedder: Embedder,
    progress: Progress | None = None,
    cache: FeatureCache | None = None,
    crop: Crop | None = None,
) -> FolderVectors:
    """Embed every readable picture under `root` (quality failures too), through the same
    read-once pass and feature cache as dedup: what dedup embedded is not embedded again."""
    files, skipped = list_files(Path(root), cfg)
    run = Run(files)
    stages = {name: StageStats(name) for name in ("pass", "features", "embed")}
    workers = cfg.run.workers or cpu_count()
    with VectorStore(embedder.spec.output_dim, scratch_dir(cfg)) as store, feats.opencv_single_threaded():
        feature_pass(
            Path(root),
            run,
            len(files),
            cfg,
            embedder,
            stages,
            store=store,
            cache=cache,
            progress=progress,
            workers=workers,
            embed_all=True,
            crop=crop,
        )
        kept = np.flatnonzero((run.vector_row >= 0) & (run.decisions.code == KEEP))
        vectors = store.rows(run.vector_row[kept])
    left_out = [(files[row], run.decisions.reason[row]) for row in np.flatnonzero(run.decisions.code != KEEP).tolist()]
    left_out += [(entry.path, entry.reason) for entry in skipped]
    for entry in skipped:
        if entry.decision == "error":
            log.error("%s: %s", Path(root) / entry.path, entry.reason)
    errors = int(np.count_nonzero(run.decisions.code == ERROR)) + sum(e.decision == "error" for e in skipped)
    return FolderVectors(
        [files[row] for row in kept], vectors, sorted(left_out), int(run.cached.sum()), errors, run.table.keys(kept)
    )


def scratch_dir(cfg: Config) -> Path:
    """Where a run keeps its temporary files (the vectors): run.scratch_dir, else the system's
    temporary folder; never the cache folder, which may be unwritable or switched off."""
    import tempfile

    return Path(getattr(cfg.run, "scratch_dir", "") or tempfile.gettempdir())


def file_stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


@dataclass
class Prepared:
    """What one decode of a file gave: its features, its quality defect, its model input
    (None: not embedded, `skip` says why where that is not the quality), its gray picture."""

    features: Features
    defect: Reason | None
    tensor: np.ndarray | None
    skip: str
    gray: np.ndarray  # at the stages' size, uint8 (features.gray_work)


def measure_and_prepare(
    rel: str,
    data: bytes,
    sha256: str,
    source: Path | str,
    spec: ModelSpec,
    quality_cfg: QualityConfig,
    embed_all: bool = False,
    crop: Crop | None = None,
) -> Prepared:
    """Decode `data` once and measure it. Dedup embeds only the pictures that pass the quality
    stage, retrieval (`embed_all`) every readable one; `crop` cuts out the part to embed, or
    says there is none. Shared by the local workers and the Ray actors, so both engines judge alike."""
    decoded = decode_for_stages(data, source, spec)
    gray = gray_work(decoded.image)
    features = measure(rel, data, sha256, decoded, gray)
    defect = quality.judge(features, quality_cfg)
    if defect and not embed_all:
        return Prepared(features, defect, None, "", gray)
    image = decoded.image
    if crop is not None:
        part, why_not = crop(image)
        if part is None:
            return Prepared(features, defect, None, why_not, gray)
        image = part
    return Prepared(features, defect, to_input(image, spec), "", gray)


class _ChunkReader:
    """A worker's job in the pass: read, hash, decode, measure and embed one chunk of rows.
    `claimed` (shared by the workers, under a lock) holds the SHA-256 of every file decoded or
    cached so far: an exact copy costs a hash, not a decode."""

    def __init__(
        self,
        root: Path,
        paths: Sequence[str],
        claimed: set[bytes],
        cfg: Config,
        embedder: Embedder,
        embed_all: bool,
        crop: Crop | None,
        keep_grays: bool,
    ):
        self.root, self.paths, self.claimed, self.cfg, self.embedder = root, paths, claimed, cfg, embedder
        self.embed_all, self.crop, self.keep_grays = embed_all, crop, keep_grays
        self.lock = threading.Lock()

    def __call__(self, chunk: np.ndarray) -> tuple[list[Picture], float, float]:
        """Findings and vectors for one chunk of rows; (them, seconds decoding, seconds in the model)."""
        t0 = time.perf_counter()
        pictures = [Picture(int(row)) for row in chunk]
        ready = [(pic, tensor) for pic in pictures if (tensor := self.prepare(pic)) is not None]
        t1 = time.perf_counter()
        if ready:
            vectors = self.embedder.embed(np.stack([tensor for _, tensor in ready]))
            for (pic, _), vector in zip(ready, vectors, strict=True):
                pic.vector = vector
        return pictures, t1 - t0, time.perf_counter() - t1

    def prepare(self, pic: Picture) -> np.ndarray | None:
        """Fill `pic`'s findings; return its model input, or None if it needs no vector."""
        path = self.root / self.paths[pic.row]
        try:
            data = read_bytes(path)
            digest = hashlib.sha256(data).digest()
            with self.lock:
                if digest in self.claimed:  # an exact copy: costs a hash, not a decode
                    pic.copy_of = digest
                    return None
                self.claimed.add(digest)
            found = measure_and_prepare(
                self.paths[pic.row],
                data,
                digest.hex(),
                path,
                self.embedder.spec,
                self.cfg.quality,
                self.embed_all,
                self.crop,
            )
        except UnreadableImage as e:
            pic.error = e.reason
            return None
        pic.features, pic.defect, pic.skip = found.features, found.defect, found.skip
        if self.keep_grays and not found.defect:
            pic.gray = found.gray  # the pixel stages look at it again
        return found.tensor


def feature_pass(
    root: Path,
    run: Run,
    count: int,
    cfg: Config,
    embedder: Embedder,
    stages: dict[str, StageStats],
    *,
    store: VectorStore,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
    workers: int = 1,
    stop: threading.Event | None = None,
    embed_all: bool = False,
    crop: Crop | None = None,
    grays: GrayStore | None = None,
) -> None:
    """Read, hash, decode, measure and embed the first `count` rows of `run` once each (or
    take them from the cache).

    Files go to worker threads in chunks of one model batch; each worker decodes its chunk
    and runs the model on it. On the CPU each run uses one core (see make_embedder), so the
    cores are never handed work across threads and decoding never waits for the model.
    """
    claimed: set[bytes] = set()  # SHA-256 of every file decoded (or cached) so far
    chunk_of = _ChunkReader(root, run.table.paths, claimed, cfg, embedder, embed_all, crop, grays is not None)

    advance = progress("reading", count) if progress else (lambda n: None)
    vectors = VectorWriter(run, store)
    link = CacheLink(cache, run, root, cfg, embed_all)
    todo = np.array([row for row in range(count) if not link.fill(row, vectors, claimed)], np.int64)
    vectors.flush()
    advance(count - len(todo))
    if len(todo):
        embedder.load()  # fail on a bad model before any work; settles a model's fixed batch size
    t = time.perf_counter()
    chunks = np.array_split(todo, range(embedder.batch_size, len(todo), embedder.batch_size))
    # Leaving early (stop) waits for the batches under way and drops them.
    with closing(ordered_map(chunk_of, chunks if len(todo) else [], workers, ahead=2 * workers)) as results:
        for pictures, decoding, embedding in results:
            stages["features"].seconds += decoding
            stages["embed"].seconds += embedding
            for pic in pictures:
                file_findings(run, pic, root)
                link.remember(pic.row, pic.vector)  # a copy is remembered once it has its original's features
                vectors.add(pic.row, pic.vector)
                if grays is not None and pic.gray is not None:
                    grays.put(pic.row, pic.gray)
            vectors.flush()
            link.commit()
            advance(len(pictures))
            if stop is not None and stop.is_set():
                break
    stages["pass"].seconds = time.perf_counter() - t
    mark_unreached(run, count)
    for row in resolve_copies(run, root):
        link.remember(row, store.rows([run.vector_row[row]])[0] if run.vector_row[row] >= 0 else None)
    link.commit()


class CacheLink:
    """The feature cache as a pass sees it: rows filled from it, new rows written to it.
    Without a cache it fills nothing and keeps nothing."""

    def __init__(self, cache: FeatureCache | None, run: Run, root: Path, cfg: Config, embed_all: bool):
        self.cache, self.run, self.root, self.cfg, self.embed_all = cache, run, root, cfg, embed_all

    def fill(self, row: int, vectors: VectorWriter, claimed: set[bytes]) -> bool:
        """Fill `row` from the cache if its file is unchanged and nothing is missing."""
        run, path = self.run, self.run.table.paths[row]
        run.stat[row] = file_stat(self.root / path)
        size, mtime = run.stat[row].tolist()
        hit = self.cache.get(path, size, mtime) if self.cache and size >= 0 else None
        if hit is None:
            return False
        features, vector = hit
        defect = quality.judge(features, self.cfg.quality)
        if vector is None and (defect is None or self.embed_all):  # needs a vector it never got: compute it
            return False
        run.table.put(row, features)
        if defect:
            run.quality[row] = defect
        run.cached[row] = run.done[row] = True
        vectors.add(row, vector)
        claimed.add(bytes.fromhex(features.sha256))
        return True

    def remember(self, row: int, vector: np.ndarray | None) -> None:
        run = self.run
        if self.cache and run.stat[row, 0] >= 0 and run.table.filled[row] and not run.cached[row]:
            size, mtime = run.stat[row].tolist()
            self.cache.put(run.table.paths[row], size, mtime, run.table[row], vector)

    def commit(self) -> None:
        if self.cache:
            self.cache.commit()


def mark_unreached(run: Run, count: int) -> None:
    """After an interruption: files whose work never came back are not reached, and neither
    are copies of files not reached."""
    for row in np.flatnonzero(~run.done[:count]).tolist():
        run.skip(row, NOT_REACHED, ReasonCode.NOT_REACHED)
    if run.copy_of:
        have = set(run.table.digests(np.flatnonzero(run.table.filled)).tolist())
        for copy, digest in list(run.copy_of.items()):
            if digest not in have:
                del run.copy_of[copy]
                run.skip(copy, NOT_REACHED, ReasonCode.NOT_REACHED)


def resolve_copies(run: Run, root: Path) -> list[int]:
    """Files whose bytes were already claimed take the claimer's features under their own
    name; returns the rows that got them."""
    if not run.copy_of:
        return []
    filled = np.flatnonzero(run.table.filled)
    original = dict(zip(run.table.digests(filled).tolist(), filled.tolist(), strict=True))
    resolved = []
    for row, digest in sorted(run.copy_of.items()):
        source = original.get(digest)
        if source is None:
            run.error(row, "identical bytes to a file that could not be decoded")
            log.error("%s: %s", root / run.table.paths[row], run.decisions.reason[row])
            continue
        run.table.copy_row(row, source)
        run.vector_row[row] = run.vector_row[source]
        if source in run.quality:
            run.quality[row] = run.quality[source]
        if run.decisions.code[source] == SKIP:  # no face in the original: none in its copy
            run.skip(row, run.decisions.reason[source], run.decisions.reason_code[source])
        resolved.append(row)
    run.copy_of.clear()
    return resolved
