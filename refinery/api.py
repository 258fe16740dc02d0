"""refinery from Python: the main jobs as functions, for a notebook or a pipeline. They do what
the commands do, with the same settings, checks and safety (docs/api.md shows each).

    from refinery import api

    result = api.dedup("photos/")              # a dry run: nothing moves
    result.summary()["remove"]                 # how many files would go
    api.duplicates(result)                     # {"a.jpg": ["a_copy.jpg", ...], ...}
    for line in result.files:                  # FileDecision: path, decision, stage, reason, ...
        ...
    api.act(result, move_rejects_to="rejects/")   # journaled: `refinery undo rejects/` puts them back

    index = api.index("photos/", "photos.index")
    api.search(index, "query.jpg", k=5)        # [Hit(rank, score, path), ...], best first

No torch: only onnxruntime runs the model, as in the commands.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path

from refinery.config import Config, apply_overrides, load_config
from refinery.dedup.decisions import FileDecision
from refinery.dedup.plan import Acted, act_on, check_destinations, destination_journal
from refinery.dedup.reference import check_references
from refinery.dedup.run import DedupResult, run_dedup
from refinery.errors import RefineryError
from refinery.io.cache import open_cache
from refinery.io.images import read_bytes
from refinery.parallel import Progress
from refinery.retrieval.index import Hit, RetrievalIndex, build_index
from refinery.runner.session import embedder_for

PathLike = str | Path


def settings(config: PathLike | None = None, **overrides: object) -> Config:
    """The settings a command would use: a TOML file (default: refinery's own), then
    overrides by `section_key` name or as `{"section.key": value}` (api.settings(None,
    semantic_threshold=0.9)); every value checked as the file's are (ConfigError)."""
    cfg = load_config(Path(config) if config is not None else None)
    keys = {key: key if "." in key else key.replace("_", ".", 1) for key in overrides}
    return apply_overrides(cfg, [f"{keys[key]}={_toml(value)}" for key, value in overrides.items()])


def dedup(
    folder: PathLike,
    *,
    config: Config | PathLike | None = None,
    model: str | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    against: PathLike | Sequence[PathLike] = (),
    splits: Sequence[str] = (),
) -> DedupResult:
    """Judge every picture under `folder` as `refinery dedup` does, moving nothing: a result
    with a FileDecision per file (`result.files`) and the run's figures (`result.summary()`).
    The model's calibrated semantic threshold applies unless `config` sets another; the
    feature cache is used as the command uses it (run.cache).

    `against`: a reference, or several (folders, or indexes made by `index`), as `refinery
    dedup FOLDER --against REF`: their pictures are keepers never judged, and a picture of
    `folder` that one holds goes, its line's `kept_as` the reference picture's full path and
    `against` the reference.

    `splits`: dataset splits, earliest first (["train", "val", "test"]), as `--splits`: a
    group keeps the earliest split's copy, and `result.summary()["splits"]` counts the
    duplicates across and within splits (keep.splits)."""
    if not Path(folder).is_dir():
        raise RefineryError(f"{folder} is not a folder")
    cfg = _config(config, model, device)
    if splits:
        cfg = apply_overrides(cfg, [f"keep.splits={_toml(','.join(splits))}"])
    embedder = embedder_for(cfg.model)
    cache = open_cache(cfg, embedder, Path(folder))
    # a Config made in code: its threshold is the caller's when it is not the default
    threshold_set = None if isinstance(config, Config) else config is not None and _sets_threshold(config)
    try:
        references = [Path(against)] if isinstance(against, (str, Path)) else [Path(p) for p in against]
        check_references(Path(folder), references, [])
        return run_dedup(
            Path(folder),
            cfg,
            embedder,
            progress=progress,
            cache=cache,
            stop=stop,
            threshold_set=threshold_set,
            against=references,
        )
    finally:
        if cache:
            cache.close()


def duplicates(result: DedupResult) -> dict[str, list[str]]:
    """Each kept file with the files removed as its duplicates (paths relative to the folder),
    keepers in path order; pictures removed for their quality are not in it."""
    found: dict[str, list[str]] = {}
    for line in result.files:
        if line.decision == "remove" and line.kept_as is not None:
            found.setdefault(line.kept_as, []).append(line.path)
    return dict(sorted(found.items()))


def removed(result: DedupResult) -> list[FileDecision]:
    """The report lines of the files the run would remove, in path order."""
    return [line for line in result.files if line.decision == "remove"]


def act(
    result: DedupResult,
    *,
    move_rejects_to: PathLike | None = None,
    copy_keepers_to: PathLike | None = None,
    progress: Progress | None = None,
) -> Acted:
    """Move the removed files to `move_rejects_to` (journaled and locked; `refinery undo DEST`
    puts them back) and/or copy the kept ones to `copy_keepers_to`, each file checked first to
    be what the run judged, as `refinery dedup --move-rejects-to` does."""
    if isinstance(result.root, str):
        raise RefineryError(f"{result.root} is a URI: moving or copying files needs a local folder")
    moves = Path(move_rejects_to) if move_rejects_to is not None else None
    copies = Path(copy_keepers_to) if copy_keepers_to is not None else None
    check_destinations(Path(result.root), moves, copies)
    with destination_journal(moves) as journal:
        return act_on(result, journal=journal, copy_keepers_to=copies, progress=progress)


def index(
    folder: PathLike,
    out: PathLike,
    *,
    config: Config | PathLike | None = None,
    model: str | None = None,
    device: str | None = None,
    faces: bool = False,
    sift: bool = False,
    progress: Progress | None = None,
) -> RetrievalIndex:
    """Make `folder` searchable by image, as `refinery index FOLDER --out OUT` does, and save it
    to `out` (a new or empty folder, or an index to build again: never one holding other files)."""
    from refinery.retrieval.storage import check_index_folder

    cfg = _config(config, model, device)
    check_index_folder(Path(out))
    embedder = embedder_for(cfg.model)
    cache = open_cache(cfg, embedder, Path(folder), "faces" if faces else "")
    try:
        built = build_index(Path(folder), cfg, embedder, cache=cache, progress=progress, faces=faces, with_sift=sift)
    finally:
        if cache:
            cache.close()
    built.save(Path(out))
    return built


def search(
    index: RetrievalIndex | PathLike,
    query: PathLike | bytes | None = None,
    *,
    text: str | None = None,
    k: int = 10,
    method: str = "embedding",
    metric: str = "cosine",
    device: str = "auto",
) -> list[Hit]:
    """The `k` pictures of `index` (one, or the folder it was saved to) most like `query` (a
    picture's path or bytes) or nearest the words `text` (a CLIP index), best first. A score
    is a similarity (higher is closer) for cosine, a distance (lower is closer) for l2 and
    the pixel methods' distances."""
    if (query is None) == (text is None):
        raise ValueError("give a query picture or text, not both and not neither")
    loaded = index if isinstance(index, RetrievalIndex) else RetrievalIndex.load(Path(index), device=device)
    if text is not None:
        return loaded.search_text(text, k, metric)
    if isinstance(query, bytes):
        return loaded.search(query, "query", k, method, metric)
    if query is None:  # cannot be: checked above
        raise ValueError("no query")
    return loaded.search(read_bytes(Path(query)), str(query), k, method, metric)


def _config(config: Config | PathLike | None, model: str | None, device: str | None) -> Config:
    cfg = config if isinstance(config, Config) else settings(config)
    return dataclasses.replace(cfg, model=cfg.model.override(model=model, device=device))


def _sets_threshold(config: PathLike) -> bool:
    from refinery.config import user_sets

    return user_sets("semantic", "threshold", Path(config), ())


def _toml(value: object) -> str:
    from refinery.config import toml_value

    return toml_value(value)
