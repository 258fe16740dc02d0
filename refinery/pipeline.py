"""The dedup funnel: scan, one pass of features (+ embeddings), then quality -> exact ->
near -> semantic, each stage seeing only what the one before kept."""

from __future__ import annotations

import dataclasses
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

from refinery import exact, hashing, quality, semantic
from refinery import features as feats
from refinery.cache import FeatureCache
from refinery.config import Config
from refinery.errors import UnreadableImage
from refinery.features import Features, measure, model_input, normalized_correlation, normalized_thumbs
from refinery.groups import choose_keeper, star_groups
from refinery.images import batches, decode_for_stages, read_bytes
from refinery.parallel import cpu_count, ordered_map, peak_memory_mb
from refinery.runner.embed import Progress
from refinery.runner.session import Embedder
from refinery.scan import Scan, Skipped, scan
from refinery.vectors import VectorStore

log = logging.getLogger(__name__)

STAGES = ("quality", "exact", "near", "semantic")
DECISIONS = ("keep", "remove", "error", "skip")
NOT_REACHED = "not reached: the run was interrupted"
# Cuts the part to embed out of a picture, or says why there is none: (image, "") or (None, why).
Crop = Callable[[Image.Image], tuple[Image.Image | None, str]]
NOT_LOADED = "not loaded"  # the provider of a run that found every vector in the cache


@dataclass(slots=True)
class FileDecision:
    """One line of the report: what happened to one file, and why."""

    path: str
    decision: str  # keep | remove | error
    stage: str | None = None  # the stage that removed it
    reason: str = ""
    group: int | None = None  # duplicate group id (shared with its keeper), or None
    kept_as: str | None = None  # the keeper this file is a duplicate of
    scores: dict = field(default_factory=dict)


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
    files: list[FileDecision]
    stages: dict[str, StageStats]
    seconds: float
    provider: str
    model: str
    chain_splits: dict[str, int] = field(default_factory=dict)  # stage -> groups the star guard cut
    cached: int = 0  # files taken from the cache, not read again
    workers: int = 1  # threads that read and embedded
    interrupted: bool = False  # stopped early (Ctrl-C): files not reached are `skip`ped
    peak_memory_mb: float = 0.0  # of the process, at the end of the run

    def summary(self) -> dict:
        counts = {d: sum(f.decision == d for f in self.files) for d in DECISIONS}
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
            "peak_memory_mb": round(self.peak_memory_mb),
        }


@dataclass(slots=True)
class _Scanned:
    """What the feature pass knows of one file."""

    rel: str
    features: Features | None = None
    error: str = ""
    copy_of: str | None = None  # sha256 already claimed by another file: not decoded again
    quality_reason: str | None = None
    vector: np.ndarray | None = None  # float32, only until it is written to the run's VectorStore
    vector_row: int = -1  # its row in the VectorStore
    stat: tuple[int, int] | None = None  # (size, mtime_ns): the cache key
    cached: bool = False
    done: bool = False  # its work came back (from the cache or a worker)
    skip: str = ""  # why it was not judged


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
    found = Scan([], []) if uri else scan(Path(root), cfg.run.follow_symlinks)
    paths = found.files
    # "pass" is the wall time of reading and embedding; "features" and "embed" are the thread
    # time spent on each inside it (they overlap on several threads).
    stages = {name: StageStats(name) for name in ("pass", "features", "embed", *STAGES)}
    workers = cfg.run.workers or cpu_count()
    with VectorStore(embedder.spec.output_dim, scratch_dir(cfg)) as store:
        if cfg.run.engine == "ray":
            scanned = _ray_pass(root, None if uri else paths, cfg, embedder, stages, progress, store)
        else:
            with feats.opencv_single_threaded():
                scanned = _feature_pass(Path(root), paths, cfg, embedder, stages, progress, cache, store, workers,
                                        stop)
        del paths  # from here on, memory per file is what the stages need
        decisions, splits = _decide(scanned, store, cfg, stages)
    decisions = sorted(decisions + [_skipped(Path(root), s) for s in found.skipped], key=lambda d: d.path)
    provider = "ray" if cfg.run.engine == "ray" else embedder.provider if embedder.loaded else NOT_LOADED
    return DedupResult(root, decisions, stages, time.perf_counter() - start, provider,
                       embedder.path.name, chain_splits=splits, cached=sum(s.cached for s in scanned),
                       workers=workers, interrupted=any(s.skip == NOT_REACHED for s in scanned),
                       peak_memory_mb=peak_memory_mb())


def _ray_pass(root: Path | str, paths: list[Path] | None, cfg: Config, embedder: Embedder,
              stages: dict[str, StageStats], progress: Progress | None, store: VectorStore) -> list[_Scanned]:
    """The feature pass on Ray: the same records as _feature_pass, every file computed
    (no cache, no exact-copy shortcut: actors share nothing)."""
    from refinery import ray_engine

    t = time.perf_counter()
    rels = None if paths is None else [p.relative_to(root).as_posix() for p in paths]
    advance = progress("reading (ray)", len(rels) if rels is not None else 0) if progress else (lambda n: None)
    scanned = []
    for record in ray_engine.feature_records(root, rels, cfg, embedder.path, advance):
        features, vector, error = ray_engine.to_features(record)
        item = _Scanned(record["path"], features=features, error=error, vector=vector, done=True)
        if error:
            log.error("%s/%s: %s", root, item.rel, error)
        elif features is not None:
            item.quality_reason = quality.judge(features, cfg.quality)
        scanned.append(item)
    _store_vectors(scanned, store)
    stages["pass"].seconds = time.perf_counter() - t
    return scanned


def _store_vectors(items: list[_Scanned], store: VectorStore) -> None:
    """Move the items' vectors to the store: memory keeps only their row numbers."""
    with_vectors = [item for item in items if item.vector is not None]
    if with_vectors:
        rows = store.append(np.stack([item.vector for item in with_vectors]))  # type: ignore[misc]
        for item, row in zip(with_vectors, rows, strict=True):
            item.vector_row, item.vector = row, None


def _skipped(root: Path, entry: Skipped) -> FileDecision:
    """The report line of an entry the scan left out (a link, a hidden folder, a broken link)."""
    if entry.decision == "error":
        log.error("%s: %s", root / entry.path, entry.reason)
    return FileDecision(entry.path, entry.decision, reason=entry.reason)


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
    found = scan(Path(root), cfg.run.follow_symlinks)
    stages = {name: StageStats(name) for name in ("pass", "features", "embed")}
    workers = cfg.run.workers or cpu_count()
    with VectorStore(embedder.spec.output_dim, scratch_dir(cfg)) as store, feats.opencv_single_threaded():
        scanned = _feature_pass(Path(root), found.files, cfg, embedder, stages, progress, cache, store, workers,
                                None, embed_all=True, crop=crop)
        kept = [s for s in scanned if s.vector_row >= 0 and not (s.error or s.skip)]
        vectors = (store.rows([s.vector_row for s in kept]) if kept
                   else np.zeros((0, embedder.spec.output_dim), np.float32))
    left_out = [(s.rel, s.error or s.skip) for s in scanned if s.error or s.skip]
    left_out += [(s.path, s.reason) for s in found.skipped]
    return FolderVectors([s.rel for s in kept], vectors, sorted(left_out), sum(s.cached for s in scanned))


def scratch_dir(cfg: Config) -> Path:
    """Where a run keeps its temporary files (the vectors): beside the cache, on disk."""
    from refinery.cache import default_cache_dir

    return Path(cfg.run.cache_dir) if cfg.run.cache_dir else default_cache_dir().parent


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return None


def _feature_pass(root: Path, paths: list[Path], cfg: Config, embedder: Embedder, stages: dict[str, StageStats],
                  progress: Progress | None, cache: FeatureCache | None, store: VectorStore,
                  workers: int, stop: threading.Event | None, embed_all: bool = False,
                  crop: Crop | None = None) -> list[_Scanned]:
    """Read, hash, decode, measure and embed every file once (or take it from the cache).

    Dedup embeds only the pictures that pass the quality stage; retrieval (`embed_all`)
    embeds every readable one. `crop` cuts the part to embed out of each picture (a face), or
    says there is none (the file is then `skip`ped with the reason).

    Files go to worker threads in chunks of one model batch; each worker decodes its chunk
    and runs the model on it. On the CPU each run uses one core (see make_embedder), so the
    cores are never handed work across threads and decoding never waits for the model.
    """
    claimed: set[str] = set()  # sha256 of every file decoded (or cached) so far
    lock = threading.Lock()

    def prepare(path: Path, item: _Scanned) -> np.ndarray | None:
        """Fill `item`'s features; return its model input, or None if it needs no vector."""
        try:
            data = read_bytes(path)
            sha = hashlib.sha256(data).hexdigest()
            with lock:
                if sha in claimed:  # an exact copy: costs a hash, not a decode
                    item.copy_of = sha
                    return None
                claimed.add(sha)
            decoded = decode_for_stages(data, path, embedder.spec)
            item.features = measure(item.rel, data, sha, decoded)
        except UnreadableImage as e:
            item.error = e.reason
            return None
        item.quality_reason = quality.judge(item.features, cfg.quality)
        if item.quality_reason and not embed_all:
            return None
        image = decoded.image
        if crop is not None:
            part, why_not = crop(image)
            if part is None:
                item.skip = why_not
                return None
            image = part
        return model_input(image, embedder.spec)

    def run_chunk(chunk: list[tuple[Path, _Scanned]]) -> tuple[list[_Scanned], float, float]:
        """Features and vectors for one chunk; (items, seconds decoding, seconds in the model)."""
        t0 = time.perf_counter()
        ready = [(item, tensor) for path, item in chunk if (tensor := prepare(path, item)) is not None]
        t1 = time.perf_counter()
        if ready:
            vectors = embedder.embed(np.stack([tensor for _, tensor in ready]))
            for (item, _), vector in zip(ready, vectors, strict=True):
                item.vector = vector
        return [item for _, item in chunk], t1 - t0, time.perf_counter() - t1

    def from_cache(item: _Scanned) -> bool:
        """Fill `item` from the cache if the file is unchanged and nothing is missing."""
        hit = cache.get(item.rel, *item.stat) if cache and item.stat else None
        if hit is None:
            return False
        features, vector = hit
        reason = quality.judge(features, cfg.quality)
        if vector is None and (reason is None or embed_all):  # needs a vector it never got: compute it
            return False
        item.features, item.quality_reason, item.vector, item.cached, item.done = features, reason, vector, True, True
        claimed.add(features.sha256)
        return True

    def remember(item: _Scanned) -> None:
        if cache and item.stat and item.features and not item.cached:
            cache.put(item.rel, *item.stat, item.features, item.vector)

    advance = progress("reading", len(paths)) if progress else (lambda n: None)
    scanned = [_Scanned(path.relative_to(root).as_posix(), stat=_stat(path)) for path in paths]
    todo = [(path, item) for path, item in zip(paths, scanned, strict=True) if not from_cache(item)]
    _store_vectors([item for item in scanned if item.cached], store)
    advance(len(paths) - len(todo))
    if todo:
        embedder.load()  # fail on a bad model before any work; settles a model's fixed batch size
    t = time.perf_counter()
    chunks = batches(todo, embedder.batch_size)
    # Leaving early (stop) waits for the batches under way and drops them.
    with closing(ordered_map(run_chunk, chunks, workers, ahead=2 * workers)) as results:
        for items, decoding, embedding in results:
            stages["features"].seconds += decoding
            stages["embed"].seconds += embedding
            for item in items:
                item.done = True
                if item.error:
                    log.error("%s: %s", root / item.rel, item.error)
                if not item.copy_of:  # a copy is remembered once it has its original's features
                    remember(item)
            _store_vectors(items, store)
            if cache:
                cache.commit()
            advance(len(items))
            if stop is not None and stop.is_set():
                break
    stages["pass"].seconds = time.perf_counter() - t
    _mark_unreached(scanned)
    _resolve_copies(scanned, root)
    if cache:
        for item in scanned:
            if item.copy_of and item.features:
                item.vector = store.rows([item.vector_row])[0] if item.vector_row >= 0 else None
                remember(item)
                item.vector = None
        cache.commit()
    return scanned


def _mark_unreached(scanned: list[_Scanned]) -> None:
    """After an interruption: files whose work never came back are not reached (whatever a
    worker had half-filled in), and neither are copies of them."""
    have = {s.features.sha256 for s in scanned if s.done and s.features}
    for s in scanned:
        if not s.done or (s.copy_of and s.copy_of not in have):
            s.features, s.vector, s.copy_of, s.quality_reason, s.error = None, None, None, None, ""
            s.skip = NOT_REACHED


def _resolve_copies(scanned: list[_Scanned], root: Path) -> None:
    """Files whose bytes were already claimed take the claimer's features under their own name."""
    by_sha = {s.features.sha256: s for s in scanned if s.features}
    for s in scanned:
        if s.copy_of is None:
            continue
        original = by_sha.get(s.copy_of)
        if original is None:
            s.error = "identical bytes to a file that could not be decoded"
            log.error("%s: %s", root / s.rel, s.error)
            continue
        s.features = dataclasses.replace(original.features, path=s.rel)  # type: ignore[type-var]
        s.quality_reason = original.quality_reason
        s.vector_row = original.vector_row
        s.skip = original.skip  # no face in the original: none in its copy


def _decide(scanned: list[_Scanned], store: VectorStore, cfg: Config,
            stages: dict[str, StageStats]) -> tuple[list[FileDecision], dict[str, int]]:
    features: list[Features] = [s.features for s in scanned]  # type: ignore[misc]  # None only on error
    decisions = [FileDecision(s.rel, "error", reason=s.error) if s.error
                 else FileDecision(s.rel, "skip", reason=s.skip) if s.skip
                 else FileDecision(s.rel, "keep", scores=f.scores()) for s, f in zip(scanned, features, strict=True)]
    min_sharp = cfg.keep.min_sharpness
    alive = [i for i, s in enumerate(scanned) if not (s.error or s.skip)]
    parent: dict[int, int] = {}  # removed file -> the file it is a duplicate of

    def remove(i: int, stage: str, reason: str, keeper: int | None = None, **scores: float) -> None:
        d = decisions[i]
        d.decision, d.stage, d.reason = "remove", stage, reason
        d.scores.update(scores)
        stages[stage].removed += 1
        if keeper is not None:
            parent[i] = keeper

    # 1. quality
    stages["quality"].seen = len(alive)
    for i in alive:
        reason = scanned[i].quality_reason
        if reason:
            remove(i, "quality", reason)
    alive = [i for i in alive if decisions[i].decision == "keep"]

    # 2a. exact copies
    t = time.perf_counter()
    stages["exact"].seen = len(alive)
    for group in exact.exact_groups(alive, features):
        keeper = choose_keeper(group, features, min_sharp)
        for i in group:
            if i != keeper:
                remove(i, "exact", "identical bytes (SHA-256)", keeper)
    alive = [i for i in alive if decisions[i].decision == "keep"]
    stages["exact"].seconds = time.perf_counter() - t

    def cosine(i: int, j: int) -> float:
        a, b = store.rows([scanned[i].vector_row, scanned[j].vector_row])
        return float(a @ b)

    def choose(members: list[int]) -> int:
        return choose_keeper(members, features, min_sharp)

    # 2b. near-exact copies: close perceptual hashes, confirmed by the thumbnails
    t = time.perf_counter()
    stages["near"].seen = len(alive)
    near = cfg.near

    def hash_distances(i: int, j: int) -> tuple[int, int]:
        fi, fj = features[i], features[j]
        return (fi.phash ^ fj.phash).bit_count(), (fi.dhash ^ fj.dhash).bit_count()

    candidates = hashing.near_pairs(alive, features, near)
    nodes = sorted({k for pair in candidates for k in pair})
    thumbs = dict(zip(nodes, normalized_thumbs([features[k].thumb for k in nodes]), strict=True))

    def correlation(i: int, j: int) -> float:
        return normalized_correlation(thumbs[i], thumbs[j], features[i].thumb == features[j].thumb)

    def near_copy(i: int, keeper: int) -> bool:
        dp, dd = hash_distances(i, keeper)
        return (dp <= near.max_phash or dd <= near.max_dhash) and correlation(i, keeper) >= near.min_correlation

    # Group only confirmed pairs: a rejected candidate (another object on the same background)
    # must not join two groups. A keeper still removes only members confirmed against itself.
    confirmed = [(i, j) for i, j in candidates if correlation(i, j) >= near.min_correlation]
    splits: dict[str, int] = {}
    groups, splits["near"] = star_groups(confirmed, choose, near_copy)
    for g in groups:
        for i in g.subjects:
            dp, dd = hash_distances(i, g.keeper)
            corr = round(correlation(i, g.keeper), 4)
            remove(i, "near", f"same picture as {features[g.keeper].path} (pHash {dp}, dHash {dd} bits, "
                   f"thumbnail correlation {corr})", g.keeper, phash_distance=dp, dhash_distance=dd,
                   thumb_correlation=corr)
    alive = [i for i in alive if decisions[i].decision == "keep"]
    stages["near"].seconds = time.perf_counter() - t

    # 3. semantic duplicates
    t = time.perf_counter()
    stages["semantic"].seen = len(alive)
    threshold = cfg.semantic.threshold
    rows = np.array([scanned[i].vector_row for i in alive], np.int64)
    found = semantic.similar_pairs(lambda start, stop: store.rows(rows[start:stop]), threshold, count=len(rows),
                                   exact_up_to=cfg.semantic.exact_up_to, nprobe=cfg.semantic.nprobe)
    pairs = [(alive[a], alive[b]) for a, b, _ in found]
    guard = cfg.semantic.chain_guard
    groups, splits["semantic"] = star_groups(
        pairs, choose, lambda i, keeper: not guard or cosine(i, keeper) >= threshold)
    for g in groups:
        for i in g.subjects:
            cos = round(cosine(i, g.keeper), 4)
            remove(i, "semantic", f"looks like {features[g.keeper].path} (cosine {cos})", g.keeper, cosine=cos)
    stages["semantic"].seconds = time.perf_counter() - t

    _assign_groups(decisions, parent)
    return decisions, splits


def _assign_groups(decisions: list[FileDecision], parent: dict[int, int]) -> None:
    """Follow each removed file to its final keeper; number the groups by keeper path."""
    def root_of(i: int) -> int:
        while i in parent:
            i = parent[i]
        return i

    members: dict[int, list[int]] = {}
    for i in parent:
        members.setdefault(root_of(i), []).append(i)
    for gid, keeper in enumerate(sorted(members, key=lambda k: decisions[k].path), start=1):
        decisions[keeper].group = gid
        for i in members[keeper]:
            decisions[i].group = gid
            decisions[i].kept_as = decisions[keeper].path
