"""The dedup funnel: scan, one pass of features (+ embeddings), then quality -> exact ->
near -> semantic, each stage seeing only what the one before kept."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from refinery import features as feats
from refinery.config import Config, NearConfig, QualityConfig
from refinery.dedup.actions import Judged, Planned
from refinery.dedup.decisions import DECISIONS, ERROR, KEEP, REMOVE, SKIP, STAGES, Decisions
from refinery.dedup.groups import choose_keeper, cover_groups, keep_rank, star_groups
from refinery.dedup.stages import exact, quality, semantic
from refinery.dedup.stages import near as hashing
from refinery.dedup.stages.scenes import Scenes
from refinery.dedup.stages.scenes import analyse as analyse_scenes
from refinery.dedup.table import FeatureTable
from refinery.dedup.vectors import VectorStore
from refinery.errors import UnreadableImage
from refinery.features import Features, measure, model_input, thumb_correlation
from refinery.io.cache import FeatureCache
from refinery.io.images import decode_for_stages, read_bytes
from refinery.io.scan import Skipped, scan
from refinery.parallel import cpu_count, ordered_map, peak_memory_mb
from refinery.runner.embed import Progress
from refinery.runner.session import Embedder
from refinery.spec import ModelSpec

log = logging.getLogger(__name__)

NOT_REACHED = "not reached: the run was interrupted"
# Cuts the part to embed out of a picture, or says why there is none: (image, "") or (None, why).
Crop = Callable[[Image.Image], tuple[Image.Image | None, str]]
NOT_LOADED = "not loaded"  # the provider of a run that found every vector in the cache
CACHE_VECTORS_PER_WRITE = 1024  # cached vectors gathered before one write to the run's VectorStore


@dataclass
class StageStats:
    name: str
    seen: int = 0
    removed: int = 0
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return self.seen - self.removed


@dataclass
class DedupResult:
    root: Path | str  # a str when it is a URI (the Ray engine)
    files: Decisions  # a report line per file, in path order
    stages: dict[str, StageStats]
    seconds: float
    provider: str
    model: str
    chain_splits: dict[str, int] = field(default_factory=dict)  # stage -> groups the star guard cut
    cached: int = 0  # files taken from the cache, not read again
    workers: int = 1  # threads that read and embedded
    interrupted: bool = False  # stopped early (Ctrl-C): files not reached are `skip`ped
    peak_memory_mb: float = 0.0  # of the process, at the end of the run
    file_stat: np.ndarray | None = None  # (size, mtime_ns) of each row when it was read; -1 if unknown
    scenes: int = 0  # fixed-camera views found (refinery/scenes.py)
    scene_frames: int = 0  # frames judged by what stands in front of their scene's background

    def planned(self, decision: str) -> list[Planned]:
        """The files with `decision` ("remove" or "keep"), in path order, each with what was
        judged of it (and of its keeper): what must still hold before a file is moved or copied."""
        code = DECISIONS.index(decision)
        table, keeper = self.files.table, self.files.keeper
        stat = self.file_stat if self.file_stat is not None else np.full((len(self.files), 2), -1, np.int64)

        def judged(row: int) -> Judged:
            size, mtime = stat[row].tolist()
            return Judged(size, mtime, table.sha256[row].tobytes().hex())

        rows = [int(row) for row in self.files.order() if self.files.code[row] == code and table.filled[row]]
        return [Planned(table.paths[row], judged(row),
                        table.paths[keeper[row]] if keeper[row] >= 0 else None,
                        judged(int(keeper[row])) if keeper[row] >= 0 else None) for row in rows]

    def summary(self) -> dict:
        counts = self.files.counts()
        return {
            "root": str(self.root), "files": len(self.files), **counts,
            "removed_by_stage": {s: self.stages[s].removed for s in STAGES},
            "seconds_by_stage": {k: round(v.seconds, 3) for k, v in self.stages.items()},
            "seconds": round(self.seconds, 3),
            "images_per_s": round(len(self.files) / self.seconds, 1) if self.seconds else None,
            "model": self.model, "provider": self.provider,
            "chain_splits": self.chain_splits,
            "cached": self.cached,
            "workers": self.workers,
            "interrupted": self.interrupted,
            "scenes": {"found": self.scenes, "frames": self.scene_frames},
            "peak_memory_mb": round(self.peak_memory_mb),
        }


class _Run:
    """What a run knows of every file, by row (row i is paths[i]): the feature table, the
    decisions, and the pass's bookkeeping - columns, not an object per file."""

    def __init__(self, paths: list[str]):
        n = len(paths)
        self.table = FeatureTable(paths)
        self.decisions = Decisions(self.table)
        self.vector_row = np.full(n, -1, np.int64)  # its row in the run's VectorStore
        self.done = np.zeros(n, bool)  # its work came back (from the cache or a worker)
        self.cached = np.zeros(n, bool)
        self.stat = np.full((n, 2), -1, np.int64)  # (size, mtime_ns): the cache key; -1 if stat failed
        self.quality: dict[int, str] = {}  # why a row fails the quality stage
        self.copy_of: dict[int, bytes] = {}  # row -> SHA-256 of bytes another row claimed first

    def error(self, row: int, reason: str) -> None:
        self.decisions.mark(row, ERROR, reason)

    def skip(self, row: int, reason: str) -> None:
        self.decisions.mark(row, SKIP, reason)

    def judged(self) -> np.ndarray:
        """Rows with features and no error or skip: the ones the stages judge."""
        return np.flatnonzero(self.table.filled & (self.decisions.code == KEEP))


@dataclass(slots=True)
class _Picture:
    """What a worker found for one file of its chunk (the main thread files it in the run)."""

    row: int
    features: Features | None = None
    error: str = ""
    copy_of: bytes | None = None  # SHA-256 already claimed by another file: not decoded
    quality_reason: str | None = None
    skip: str = ""  # why it is not judged (no face)
    vector: np.ndarray | None = None


def run_dedup(root: Path | str, cfg: Config, embedder: Embedder, progress: Progress | None = None,
              cache: FeatureCache | None = None, stop: threading.Event | None = None) -> DedupResult:
    """Decide keep/remove for every image under `root`; touches no file there.

    With a `cache`, files unchanged since an earlier run (same path, size and mtime) are
    neither read nor embedded again. When `stop` is set the reading ends after the batches
    under way; the files read so far are judged among themselves, the rest are `skip`ped.
    With `cfg.run.engine` "ray" the reading and embedding run on a Ray cluster (ray_engine);
    `root` may then be any URI Ray Data reads.
    """
    start = time.perf_counter()
    uri = isinstance(root, str) and "://" in root
    root = root if uri else Path(root)
    files, skipped = _list(root, cfg)
    run = _Run(files + [entry.path for entry in skipped])
    for row, entry in enumerate(skipped, start=len(files)):
        if entry.decision == "error":
            log.error("%s: %s", Path(root) / entry.path, entry.reason)
        run.decisions.mark(row, ERROR if entry.decision == "error" else SKIP, entry.reason)
    # "pass" is the wall time of reading and embedding; "features" and "embed" are the thread
    # time spent on each inside it (they overlap on several threads).
    stages = {name: StageStats(name) for name in ("pass", "features", "embed", "scenes", *STAGES)}
    workers = cfg.run.workers or cpu_count()
    with VectorStore(embedder.spec.output_dim, scratch_dir(cfg)) as store:
        if cfg.run.engine == "ray":
            _ray_pass(root, run, len(files), cfg, embedder, stages, progress, store, cache)
        else:
            with feats.opencv_single_threaded():
                _feature_pass(Path(root), run, len(files), cfg, embedder, stages, progress, cache, store,
                              workers, stop)
        splits, scenes = _decide(run, store, cfg, stages,
                                 lambda rows: _scenes(root, run.table, rows, cfg, stages, progress, workers))
    provider = "ray" if cfg.run.engine == "ray" else embedder.provider if embedder.loaded else NOT_LOADED
    return DedupResult(root, run.decisions, stages, time.perf_counter() - start, provider,
                       embedder.path.name, chain_splits=splits, cached=int(run.cached.sum()),
                       workers=workers, interrupted=NOT_REACHED in run.decisions.reason.values(),
                       peak_memory_mb=peak_memory_mb(), file_stat=run.stat, scenes=scenes.count,
                       scene_frames=len(scenes.frames))


def _list(root: Path | str, cfg: Config) -> tuple[list[str], list[Skipped]]:
    """The files to judge (relative paths) and the entries the scan left out."""
    if isinstance(root, str):  # a URI: the Ray engine lists it
        from refinery.dedup.engines import ray as ray_engine

        return ray_engine.list_files(root), []
    found = scan(root, cfg.run.follow_symlinks)
    return [path.relative_to(root).as_posix() for path in found.files], found.skipped


def _ray_pass(root: Path | str, run: _Run, count: int, cfg: Config, embedder: Embedder,
              stages: dict[str, StageStats], progress: Progress | None, store: VectorStore,
              cache: FeatureCache | None) -> None:
    """The feature pass on Ray: the same columns as _feature_pass. Files the cache has are
    not sent; every other file is computed (no exact-copy shortcut: actors share nothing)."""
    from refinery.dedup.engines import ray as ray_engine

    t = time.perf_counter()
    paths = run.table.paths
    advance = progress("reading (ray)", count) if progress else (lambda n: None)
    vectors = _VectorWriter(run, store)
    link = _CacheLink(cache if isinstance(root, Path) else None, run, Path(root), cfg, embed_all=False)
    todo = [row for row in range(count) if not link.fill(row, vectors, set())]
    advance(count - len(todo))
    rows = {paths[row]: row for row in todo}
    for k, record in enumerate(ray_engine.feature_records(root, [paths[row] for row in todo], cfg, embedder.path)):
        features, vector, error = ray_engine.to_features(record)
        pic = _Picture(rows[record["path"]], features=features, error=error, vector=vector)
        if features is not None:
            pic.quality_reason = quality.judge(features, cfg.quality)
        _file(run, pic, root)
        link.remember(pic.row, vector)
        vectors.add(pic.row, vector)
        advance(1)
        if k % CACHE_VECTORS_PER_WRITE == 0:
            link.commit()
    vectors.flush()
    link.commit()
    _mark_unreached(run, count)
    stages["pass"].seconds = time.perf_counter() - t


class _VectorWriter:
    """Vectors gathered into blocks, then written to the run's VectorStore: memory keeps
    only their row numbers."""

    def __init__(self, run: _Run, store: VectorStore):
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


def _file(run: _Run, pic: _Picture, root: Path | str) -> None:
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
    if pic.quality_reason:
        run.quality[row] = pic.quality_reason
    if pic.skip:
        run.skip(row, pic.skip)


@dataclass
class FolderVectors:
    """An embedding for every readable picture under a folder (retrieval's view of it)."""

    paths: list[str]  # relative to the folder, one per row
    vectors: np.ndarray  # float32, L2-normalised rows
    left_out: list[tuple[str, str]]  # (path, why): unreadable, no face, a link, a hidden folder
    cached: int  # files taken from the cache


def embed_every_picture(root: Path, cfg: Config, embedder: Embedder, progress: Progress | None = None,
                        cache: FeatureCache | None = None, crop: Crop | None = None) -> FolderVectors:
    """Embed every readable picture under `root` (quality failures too), through the same
    read-once pass and feature cache as dedup: what dedup embedded is not embedded again."""
    files, skipped = _list(Path(root), cfg)
    run = _Run(files)
    stages = {name: StageStats(name) for name in ("pass", "features", "embed")}
    workers = cfg.run.workers or cpu_count()
    with VectorStore(embedder.spec.output_dim, scratch_dir(cfg)) as store, feats.opencv_single_threaded():
        _feature_pass(Path(root), run, len(files), cfg, embedder, stages, progress, cache, store, workers,
                      None, embed_all=True, crop=crop)
        kept = np.flatnonzero((run.vector_row >= 0) & (run.decisions.code == KEEP))
        vectors = store.rows(run.vector_row[kept])
    left_out = [(files[row], run.decisions.reason[row]) for row in np.flatnonzero(run.decisions.code != KEEP).tolist()]
    left_out += [(entry.path, entry.reason) for entry in skipped]
    return FolderVectors([files[row] for row in kept], vectors, sorted(left_out), int(run.cached.sum()))


def scratch_dir(cfg: Config) -> Path:
    """Where a run keeps its temporary files (the vectors): run.scratch_dir, else the system's
    temporary folder; never the cache folder, which may be unwritable or switched off."""
    import tempfile

    return Path(getattr(cfg.run, "scratch_dir", "") or tempfile.gettempdir())


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def measure_and_prepare(rel: str, data: bytes, sha256: str, source: Path | str, spec: ModelSpec,
                        quality_cfg: QualityConfig, embed_all: bool = False,
                        crop: Crop | None = None) -> tuple[Features, str | None, np.ndarray | None, str]:
    """Decode `data` once: (features, quality reason, model input or None, why it was not
    embedded). Dedup embeds only the pictures that pass the quality stage, retrieval
    (`embed_all`) every readable one; `crop` cuts out the part to embed, or says there is none.
    Shared by the local workers and the Ray actors, so both engines judge alike."""
    decoded = decode_for_stages(data, source, spec)
    features = measure(rel, data, sha256, decoded)
    reason = quality.judge(features, quality_cfg)
    if reason and not embed_all:
        return features, reason, None, ""
    image = decoded.image
    if crop is not None:
        part, why_not = crop(image)
        if part is None:
            return features, reason, None, why_not
        image = part
    return features, reason, model_input(image, spec), ""


def _feature_pass(root: Path, run: _Run, count: int, cfg: Config, embedder: Embedder,
                  stages: dict[str, StageStats], progress: Progress | None, cache: FeatureCache | None,
                  store: VectorStore, workers: int, stop: threading.Event | None, embed_all: bool = False,
                  crop: Crop | None = None) -> None:
    """Read, hash, decode, measure and embed the first `count` rows of `run` once each (or
    take them from the cache).

    Files go to worker threads in chunks of one model batch; each worker decodes its chunk
    and runs the model on it. On the CPU each run uses one core (see make_embedder), so the
    cores are never handed work across threads and decoding never waits for the model.
    """
    paths = run.table.paths
    claimed: set[bytes] = set()  # SHA-256 of every file decoded (or cached) so far
    lock = threading.Lock()

    def prepare(pic: _Picture) -> np.ndarray | None:
        """Fill `pic`'s findings; return its model input, or None if it needs no vector."""
        path = root / paths[pic.row]
        try:
            data = read_bytes(path)
            digest = hashlib.sha256(data).digest()
            with lock:
                if digest in claimed:  # an exact copy: costs a hash, not a decode
                    pic.copy_of = digest
                    return None
                claimed.add(digest)
            pic.features, pic.quality_reason, tensor, pic.skip = measure_and_prepare(
                paths[pic.row], data, digest.hex(), path, embedder.spec, cfg.quality, embed_all, crop)
        except UnreadableImage as e:
            pic.error = e.reason
            return None
        return tensor

    def run_chunk(chunk: np.ndarray) -> tuple[list[_Picture], float, float]:
        """Findings and vectors for one chunk of rows; (them, seconds decoding, seconds in the model)."""
        t0 = time.perf_counter()
        pictures = [_Picture(int(row)) for row in chunk]
        ready = [(pic, tensor) for pic in pictures if (tensor := prepare(pic)) is not None]
        t1 = time.perf_counter()
        if ready:
            vectors = embedder.embed(np.stack([tensor for _, tensor in ready]))
            for (pic, _), vector in zip(ready, vectors, strict=True):
                pic.vector = vector
        return pictures, t1 - t0, time.perf_counter() - t1

    advance = progress("reading", count) if progress else (lambda n: None)
    vectors = _VectorWriter(run, store)
    link = _CacheLink(cache, run, root, cfg, embed_all)
    todo = np.array([row for row in range(count) if not link.fill(row, vectors, claimed)], np.int64)
    vectors.flush()
    advance(count - len(todo))
    if len(todo):
        embedder.load()  # fail on a bad model before any work; settles a model's fixed batch size
    t = time.perf_counter()
    chunks = np.array_split(todo, range(embedder.batch_size, len(todo), embedder.batch_size))
    # Leaving early (stop) waits for the batches under way and drops them.
    with closing(ordered_map(run_chunk, chunks if len(todo) else [], workers, ahead=2 * workers)) as results:
        for pictures, decoding, embedding in results:
            stages["features"].seconds += decoding
            stages["embed"].seconds += embedding
            for pic in pictures:
                _file(run, pic, root)
                link.remember(pic.row, pic.vector)  # a copy is remembered once it has its original's features
                vectors.add(pic.row, pic.vector)
            vectors.flush()
            link.commit()
            advance(len(pictures))
            if stop is not None and stop.is_set():
                break
    stages["pass"].seconds = time.perf_counter() - t
    _mark_unreached(run, count)
    for row in _resolve_copies(run, root):
        link.remember(row, store.rows([run.vector_row[row]])[0] if run.vector_row[row] >= 0 else None)
    link.commit()


class _CacheLink:
    """The feature cache as a pass sees it: rows filled from it, new rows written to it.
    Without a cache it fills nothing and keeps nothing."""

    def __init__(self, cache: FeatureCache | None, run: _Run, root: Path, cfg: Config, embed_all: bool):
        self.cache, self.run, self.root, self.cfg, self.embed_all = cache, run, root, cfg, embed_all

    def fill(self, row: int, vectors: _VectorWriter, claimed: set[bytes]) -> bool:
        """Fill `row` from the cache if its file is unchanged and nothing is missing."""
        run, path = self.run, self.run.table.paths[row]
        run.stat[row] = _stat(self.root / path)
        size, mtime = run.stat[row].tolist()
        hit = self.cache.get(path, size, mtime) if self.cache and size >= 0 else None
        if hit is None:
            return False
        features, vector = hit
        reason = quality.judge(features, self.cfg.quality)
        if vector is None and (reason is None or self.embed_all):  # needs a vector it never got: compute it
            return False
        run.table.put(row, features)
        if reason:
            run.quality[row] = reason
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


def _mark_unreached(run: _Run, count: int) -> None:
    """After an interruption: files whose work never came back are not reached, and neither
    are copies of files not reached."""
    for row in np.flatnonzero(~run.done[:count]).tolist():
        run.skip(row, NOT_REACHED)
    if run.copy_of:
        have = set(run.table.digests(np.flatnonzero(run.table.filled)).tolist())
        for copy, digest in list(run.copy_of.items()):
            if digest not in have:
                del run.copy_of[copy]
                run.skip(copy, NOT_REACHED)


def _resolve_copies(run: _Run, root: Path) -> list[int]:
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
            run.skip(row, run.decisions.reason[source])
        resolved.append(row)
    run.copy_of.clear()
    return resolved

def _scenes(root: Path | str, table: FeatureTable, rows: np.ndarray, cfg: Config, stages: dict[str, StageStats],
            progress: Progress | None, workers: int) -> Scenes:
    """The scenes among `rows` (what the near stage will judge), and their frames' foregrounds."""
    t = time.perf_counter()
    if isinstance(root, str):
        if cfg.scenes.mode != "crops":
            log.warning("frames of fixed cameras are judged as whole pictures in a URI folder (the scene test "
                        "reads files here)")
        return Scenes.none(len(table), cfg.scenes)
    with feats.opencv_single_threaded():
        found = analyse_scenes(Path(root), table, rows, cfg.scenes, progress, workers)
    stages["scenes"].seen = len(found.frames)
    stages["scenes"].seconds = time.perf_counter() - t
    return found


def _decide(run: _Run, store: VectorStore, cfg: Config, stages: dict[str, StageStats],
            find_scenes: Callable[[np.ndarray], Scenes]) -> tuple[dict[str, int], Scenes]:
    """The stages over the run's columns: quality -> exact -> near -> semantic, each seeing
    only what the one before kept; frames of one scene (found among what reaches the near
    stage) are grouped by the scene test last. Marks the removals in run.decisions; returns
    the chains each grouping stage cut."""
    table, decisions = run.table, run.decisions
    min_sharp = cfg.keep.min_sharpness

    def choose(members: list[int]) -> int:
        return choose_keeper(members, table, min_sharp)  # builds a Features record per member only

    # 1. quality: decided in the pass, marked here
    stages["quality"].seen = len(run.judged())
    for row, reason in run.quality.items():
        if decisions.code[row] == KEEP:
            decisions.remove(row, "quality", reason)
    stages["quality"].removed = len(decisions.rows(REMOVE))

    # 2a. exact copies
    t = time.perf_counter()
    rows = run.judged()
    stages["exact"].seen = len(rows)
    for group in exact.exact_groups(table.digests(rows)):
        members = rows[group].tolist()
        keeper = choose(members)
        for row in members:
            if row != keeper:
                decisions.remove(row, "exact", "identical bytes (SHA-256)", keeper)
                stages["exact"].removed += 1
    stages["exact"].seconds = time.perf_counter() - t

    scenes = find_scenes(run.judged())
    frame_pairs: list[tuple[int, int]] = []  # candidates of both stages inside one scene
    splits = {"near": _near_stage(run, cfg, stages, choose, scenes, frame_pairs),
              "semantic": _semantic_stage(run, store, cfg, stages, choose, scenes, frame_pairs)}
    _frame_stage(run, cfg, stages, scenes, frame_pairs)
    # The frame stage removes under both stage names after both ran: what each saw, in order.
    stages["semantic"].seen = stages["near"].seen - stages["near"].removed
    first_keeper = decisions.keeper.copy()
    decisions.assign_groups()
    _explain(run, store, cfg, scenes, first_keeper)
    return splits, scenes


def _picture_pairs(pairs: list[tuple[int, int]], scenes: Scenes, frame_pairs: list[tuple[int, int]]
                   ) -> list[tuple[int, int]]:
    """The pairs the picture test judges; pairs inside one scene go to `frame_pairs`, pairs
    of two scenes nowhere (two cameras never show one picture)."""
    out = []
    for a, b in pairs:
        if scenes.judged_by_scene(a, b):
            frame_pairs.append((a, b))
        elif not scenes.apart(a, b):
            out.append((a, b))
    return out


def _near_stage(run: _Run, cfg: Config, stages: dict[str, StageStats], choose: Callable[[list[int]], int],
                scenes: Scenes, frame_pairs: list[tuple[int, int]]) -> int:
    """2b. near-exact copies: close perceptual hashes, confirmed by the thumbnails."""
    t = time.perf_counter()
    table, near = run.table, cfg.near
    rows = run.judged()
    stages["near"].seen = len(rows)
    phash, dhash = table.columns["phash"], table.columns["dhash"]
    found = hashing.near_pairs(phash[rows], dhash[rows], table.thumb[rows], near)
    confirmed = _picture_pairs([(a, b) for a, b in rows[found].tolist()], scenes, frame_pairs)
    evidence = _Evidence(table, None, near)

    def near_copy(i: int, keeper: int) -> bool:
        # A frame of a scene goes only as a copy of a frame of its scene (the frame stage).
        return scenes.of(i) < 0 and evidence.near_copy(i, keeper)

    # Only confirmed pairs are grouped: a rejected candidate (another object on the same
    # background) must not join two groups. A keeper still removes only members confirmed
    # against itself.
    groups, splits = star_groups(confirmed, choose, near_copy)
    for g in groups:
        for i in g.subjects:
            run.decisions.remove(i, "near", "", g.keeper)
            stages["near"].removed += 1
    stages["near"].seconds = time.perf_counter() - t
    return splits


def _semantic_stage(run: _Run, store: VectorStore, cfg: Config, stages: dict[str, StageStats],
                    choose: Callable[[list[int]], int], scenes: Scenes, frame_pairs: list[tuple[int, int]]) -> int:
    """3. semantic duplicates: embeddings close in cosine, grouped around a keeper."""
    t = time.perf_counter()
    rows = run.judged()
    stages["semantic"].seen = len(rows)
    threshold = cfg.semantic.threshold
    vector_rows = run.vector_row[rows]
    found = semantic.similar_pairs(lambda start, stop: store.rows(vector_rows[start:stop]), threshold,
                                   count=len(rows), exact_up_to=cfg.semantic.exact_up_to, nprobe=cfg.semantic.nprobe)
    pairs = _picture_pairs([(int(rows[a]), int(rows[b])) for a, b, _ in found], scenes, frame_pairs)
    evidence = _Evidence(run.table, store, cfg.near, run.vector_row)

    def close(i: int, keeper: int) -> bool:
        if scenes.of(i) >= 0:
            return False  # a frame of a scene goes only as a copy of a frame of its scene
        cosine = evidence.cosine(i, keeper)
        return not cfg.semantic.chain_guard or (cosine is not None and cosine >= threshold)

    groups, splits = star_groups(pairs, choose, close)
    for g in groups:
        for i in g.subjects:
            run.decisions.remove(i, "semantic", "", g.keeper)
            stages["semantic"].removed += 1
    stages["semantic"].seconds = time.perf_counter() - t
    return splits


def _frame_stage(run: _Run, cfg: Config, stages: dict[str, StageStats], scenes: Scenes,
                 frame_pairs: list[tuple[int, int]]) -> None:
    """Frames of one scene, proposed by either stage, judged by the scene test: each group is
    its most typical frame (the one most others are the same as) and the frames that are the
    same as it. Counted under the stage whose picture test would have found the pair too."""
    t = time.perf_counter()
    alive = run.decisions.code == KEEP
    edges = sorted({(min(a, b), max(a, b)) for a, b in frame_pairs if alive[a] and alive[b]})
    same = [(a, b) for a, b in edges if scenes.same(a, b)]
    table, min_sharp = run.table, cfg.keep.min_sharpness
    evidence = _Evidence(table, None, cfg.near)

    def rank(row: int) -> tuple:
        return keep_rank(table[row], min_sharp)

    for keeper, subjects in cover_groups(same, rank):
        for i in subjects:
            stage = "near" if evidence.near_copy(i, keeper) else "semantic"
            run.decisions.remove(i, stage, "", keeper)
            run.decisions.test[i] = "scene"
            stages[stage].removed += 1
    stages["scenes"].seconds += time.perf_counter() - t


class _Evidence:
    """What the stages measure between two pictures, from the run's columns."""

    def __init__(self, table: FeatureTable, store: VectorStore | None, near: NearConfig,
                 vector_row: np.ndarray | None = None):
        self.table, self.store, self.near, self.vector_row = table, store, near, vector_row

    def hash_distances(self, i: int, j: int) -> tuple[int, int]:
        c = self.table.columns
        return (int(c["phash"][i] ^ c["phash"][j]).bit_count(), int(c["dhash"][i] ^ c["dhash"][j]).bit_count())

    def correlation(self, i: int, j: int) -> float:
        return thumb_correlation(self.table.thumb[i].tobytes(), self.table.thumb[j].tobytes())

    def near_copy(self, i: int, keeper: int) -> bool:
        dp, dd = self.hash_distances(i, keeper)
        return (dp <= self.near.max_phash or dd <= self.near.max_dhash) and \
            self.correlation(i, keeper) >= self.near.min_correlation

    def cosine(self, i: int, j: int) -> float | None:
        if self.store is None or self.vector_row is None or self.vector_row[i] < 0 or self.vector_row[j] < 0:
            return None
        a, b = self.store.rows([self.vector_row[i], self.vector_row[j]])
        return float(a @ b)


def _explain(run: _Run, store: VectorStore, cfg: Config, scenes: Scenes, first_keeper: np.ndarray) -> None:
    """Each removed duplicate's reason and scores, measured against its final keeper (the
    file that stays), not against a partner that was itself removed later."""
    decisions, table = run.decisions, run.table
    evidence = _Evidence(table, store, cfg.near, run.vector_row)
    paths = table.paths
    for row in np.flatnonzero((decisions.code == REMOVE) & (decisions.keeper >= 0)).tolist():
        keeper = int(decisions.keeper[row])
        stage = STAGES[decisions.stage[row]]
        through = f"; through {paths[first_keeper[row]]}" if first_keeper[row] != keeper else ""
        if table.sha256[row].tobytes() == table.sha256[keeper].tobytes():
            decisions.reason[row] = f"identical bytes to {paths[keeper]} (SHA-256)"
            decisions.extra_scores.pop(row, None)
            decisions.test[row] = "picture"
            continue
        if scenes.judged_by_scene(row, keeper):
            iou = round(scenes.overlap(row, keeper), 4)
            decisions.reason[row] = (f"the same frame as {paths[keeper]}: the same things at the same places "
                                     f"(foreground overlap {iou}){through}")
            decisions.extra_scores[row] = {"foreground_overlap": iou}
            decisions.test[row] = "scene"
            continue
        dp, dd = evidence.hash_distances(row, keeper)
        corr = round(evidence.correlation(row, keeper), 4)
        cos = evidence.cosine(row, keeper)
        scores: dict[str, float] = {"phash_distance": dp, "dhash_distance": dd, "thumb_correlation": corr}
        if cos is not None:
            scores["cosine"] = round(cos, 4)
        # Worded by what holds against the keeper: a near copy of it, or alike in its embedding.
        if cos is not None and (stage == "semantic" or not evidence.near_copy(row, keeper)):
            text = f"looks like {paths[keeper]} (cosine {round(cos, 4)})"
        else:
            text = f"same picture as {paths[keeper]} (pHash {dp}, dHash {dd} bits, thumbnail correlation {corr})"
        decisions.reason[row] = text + through
        decisions.extra_scores[row] = scores
        decisions.test[row] = "picture"
