"""The `refinery` command. Each command parses options, makes one library call, and
turns refinery's errors into one-line messages. Heavy modules are imported inside the
commands that need them, so `refinery --help` is instant and the runner never sees torch.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from refinery import __version__
from refinery.errors import ConfigError, RefineryError

log = logging.getLogger("refinery")

# Exit codes: 0 success, 1 refinery error (bad model, parity failure, ...), 2 usage error,
# 3 finished but some input files could not be read or moved (each named on an error line),
# 130 stopped by Ctrl-C or SIGTERM (the report covers what was done; the journal is whole).
EXIT_FILE_ERRORS = 3
EXIT_INTERRUPTED = 130


class SettingError(click.ClickException):
    """A bad setting (config file or --set): a usage error, exit code 2, one line."""

    exit_code = 2


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn RefineryError into click's one-line error (exit code 1; 2 for a bad setting),
    Ctrl-C into exit code 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as e:
            raise SettingError(str(e)) from e
        except RefineryError as e:
            raise click.ClickException(str(e)) from e
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config, --set, --model, --device, --batch-size: shared by every command that embeds."""
    func = click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
                        help="Override one setting, e.g. --set semantic.threshold=0.96 (repeatable).")(func)
    func = click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        default=None, help="A refinery TOML config (default: `refinery config --show`).")(func)
    func = click.option("--batch-size", type=click.IntRange(1), default=None,
                        help="Images per model call (config: model.batch_size).")(func)
    func = click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "coreml"]), default=None,
                        help="Execution provider; auto = CoreML on Apple Silicon, CUDA on NVIDIA, else CPU.")(func)
    func = click.option("--model", "model", default=None,
                        help="An exported .onnx model, or 'default' for the one that ships.")(func)
    return func


@contextmanager
def stop_on_signal() -> Iterator[threading.Event]:
    """An event that Ctrl-C (SIGINT) or SIGTERM sets; the library checks it between batches and
    between files, so a run stops with its report, cache and journal whole. A second Ctrl-C
    quits at once."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log.warning("stopping after the work under way (Ctrl-C again to quit at once)")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _ClickHandler(logging.Handler):
    """Log records as plain lines on stderr, through tqdm so progress bars stay whole."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        tqdm.write(prefix + record.getMessage(), file=sys.stderr)


@click.group()
@click.version_option(__version__, prog_name="refinery")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Errors only; no progress bars.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Clean large image datasets: quality, exact/near and semantic duplicates."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    root = logging.getLogger("refinery")
    root.handlers[:] = [_ClickHandler()]
    root.setLevel(level)
    root.propagate = False
    ctx.obj = {"quiet": quiet}


def settings(config_path: Path | None, assignments: tuple[str, ...], model: str | None,
             device: str | None, batch_size: int | None) -> Any:
    """The config file, then --set overrides, then the named flags."""
    import dataclasses

    from refinery.config import apply_overrides, load_config

    cfg = apply_overrides(load_config(config_path), list(assignments))
    return dataclasses.replace(cfg, model=cfg.model.override(model=model, device=device, batch_size=batch_size))


def make_embedder(cfg: Any) -> Any:
    from refinery.runner.session import Embedder

    m = cfg.model
    # Every worker runs the model on its own batches with one thread: on shared CPU cores that
    # beats one run spread over all of them (benchmarks/speed.py), and it suits GPUs as well.
    return Embedder(m.path, device=m.device, batch_size=m.batch_size, threads=m.threads or 1)


def progress_bar(ctx: click.Context, label: str, total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="img", disable=ctx.obj["quiet"] or None,
                file=sys.stderr, leave=False)


class ProgressBars:
    """A progress reporter for the library (label, total) -> advance; closes its bars on exit."""

    def __init__(self, ctx: click.Context):
        self.ctx = ctx
        self.bars: list[Any] = []

    def __call__(self, label: str, total: int) -> Callable[[int], None]:
        self.bars.append(progress_bar(self.ctx, label, total))
        return self.bars[-1].update

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars:
            bar.close()


@main.command("embed")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output .npz with arrays `paths` (relative to FOLDER) and `vectors` (float32).")
@model_options
@click.pass_context
@handle_errors
def embed_cmd(ctx: click.Context, folder: Path, out: Path, config_path: Path | None, assignments: tuple[str, ...],
              model: str | None, device: str | None, batch_size: int | None) -> None:
    """Embed every image under FOLDER with the runner (onnxruntime, no torch).

    Example: refinery embed photos/ --out vectors.npz
    """
    import numpy as np

    from refinery.dedup.featurepass import embed_every_picture
    from refinery.io.fileio import atomic_path
    from refinery.runner.session import l2_normalize

    cfg = settings(config_path, assignments, model, device, batch_size)
    embedder = make_embedder(cfg).load()  # the device asked for, or one line saying why not
    cache = open_cache(cfg, embedder, folder)
    try:
        with ProgressBars(ctx) as bars:
            found = embed_every_picture(folder, cfg, embedder, bars, cache)
    finally:
        if cache:
            cache.close()
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, paths=np.array(found.paths, dtype=str), vectors=l2_normalize(found.vectors).astype(np.float32))
    log.info("wrote %s: %d vectors of %d-d; %d files unreadable", out, len(found.paths), found.vectors.shape[1],
             found.errors)
    if found.errors:
        ctx.exit(EXIT_FILE_ERRORS)


@main.command("export-model")
@click.option("--arch", default="fastreid-r50-ibn", show_default=True,
              help="Architecture to export; `refinery export-model --list` shows them.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint file (fastreid: default configs/vehicleid_bot_R50-ibn.pth; "
                   "ImageNet archs: the weights inside their package).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Output prefix: writes PREFIX.onnx, PREFIX.json, PREFIX.mlpackage. "
                   "Default: models/<arch>.")
@click.option("--format", "formats", default="onnx,coreml", show_default=True,
              help="Comma-separated: onnx, coreml.")
@click.option("--opset", type=click.IntRange(17), default=18, show_default=True, help="ONNX opset.")
@click.option("--fp16", is_flag=True, help="Also write PREFIX.fp16.onnx (float16 weights).")
@click.option("--int8", "int8_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Also write PREFIX.int8.onnx, static QDQ calibrated on images in this folder.")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Real images to check parity on (default: synthetic pictures).")
@click.option("--stem-pool", type=click.Choice(["pad", "ceil"]), default=None,
              help="fastreid stem max-pool; default from the checkpoint's layout (old zoo: pad).")
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow full unpickling of a checkpoint that holds more than tensors.")
@click.option("--list", "list_only", is_flag=True, help="List the architectures and exit.")
@handle_errors
def export_model_cmd(arch: str, checkpoint: Path | None, out: Path | None, formats: str, opset: int,
                     fp16: bool, int8_dir: Path | None, images: Path | None, stem_pool: str | None,
                     trust_checkpoint: bool, list_only: bool) -> None:
    """Export a PyTorch model to ONNX (and Core ML) once, and prove parity.

    Example: refinery export-model --checkpoint configs/vehicleid_bot_R50-ibn.pth --out models/vehicleid
    """
    from refinery.export.registry import ARCHS, get_arch

    if list_only:
        for a in ARCHS.values():
            click.echo(f"{a.name:20s} {a.description}\n{'':20s} weights: {a.weights}")
        return
    get_arch(arch)  # fail on an unknown name before importing torch
    try:
        from refinery.export.pipeline import ExportOptions, export_model
    except ImportError as e:
        raise click.ClickException(f"export needs PyTorch and friends ({e.name} is missing): "
                                   "pip install 'refinery[export]'") from e

    opts = ExportOptions(
        arch=arch, out=out or Path("models") / arch, checkpoint=checkpoint,
        formats=tuple(f.strip() for f in formats.split(",") if f.strip()), opset=opset, fp16=fp16,
        int8_calibration=int8_dir, images=images, stem_pool=stem_pool,
        trust_checkpoint=trust_checkpoint)
    result = export_model(opts, step=lambda s: log.info("%s ...", s))
    log.info("parity on %s", result.parity_source)
    for report in result.parity:
        click.echo(report.line())
    if result.int8:
        click.echo(result.int8.line())
    if result.coreml_note:
        click.echo(result.coreml_note)
    for path in result.files:
        click.echo(f"wrote {path}")


@main.command("dedup")
@click.argument("folder")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON report: a summary and one entry per file.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the per-file decisions as CSV.")
@click.option("--move-rejects-to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Move removed files here (relative paths kept, journaled; `refinery undo DEST` puts them back).")
@click.option("--copy-keepers-to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy the kept files here (relative paths kept).")
@click.option("--no-cache", is_flag=True, help="Compute everything again; neither read nor write the cache.")
@click.option("--follow-symlinks", is_flag=True,
              help="Judge symbolic links to files and folders outside FOLDER too (config: run.follow_symlinks).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
              help="Where reading and embedding run: threads here, or Ray (RAY_ADDRESS, else a local instance; "
                   "FOLDER may then be a URI). Config: run.engine.")
@model_options
@click.pass_context
@handle_errors
def dedup_cmd(ctx: click.Context, folder: str, report: Path | None, csv_path: Path | None,
              move_rejects_to: Path | None, copy_keepers_to: Path | None, no_cache: bool, follow_symlinks: bool,
              engine: str | None, config_path: Path | None, assignments: tuple[str, ...], model: str | None,
              device: str | None, batch_size: int | None) -> None:
    """Find blurred, dark, burnt-out, copied and near-identical images under FOLDER.

    A dry run unless --move-rejects-to or --copy-keepers-to is given; nothing is deleted.

    Example: refinery dedup photos/ --report report.json --move-rejects-to rejects/
    """
    from refinery.config import apply_overrides
    from refinery.dedup.report import write_csv, write_json
    from refinery.dedup.run import run_dedup

    cfg = settings(config_path, assignments, model, device, batch_size)
    if no_cache:
        cfg = apply_overrides(cfg, ["run.cache=false"])
    if follow_symlinks:
        cfg = apply_overrides(cfg, ["run.follow_symlinks=true"])
    if engine:
        cfg = apply_overrides(cfg, [f"run.engine={engine}"])
    root = dedup_root(folder, cfg.run.engine, move_rejects_to or copy_keepers_to)
    # Everything that can be checked before a long run is checked now: where the results
    # go, and that the destination is free (its lock is held until the moves are done).
    preflight(root, report, csv_path, move_rejects_to, copy_keepers_to)
    embedder = make_embedder(cfg)
    with stop_on_signal() as stop, destination_journal(move_rejects_to) as journal:
        cache = open_cache(cfg, embedder, Path(folder)) if isinstance(root, Path) else None
        try:
            with ProgressBars(ctx) as bars:
                result = run_dedup(root, cfg, embedder, bars, cache, stop)
        finally:
            if cache:
                cache.close()
        if report:
            write_json(result, report)
        if csv_path:
            write_csv(result, csv_path)
        click.echo(summary_table(result))
        if stop.is_set():
            click.echo("interrupted: nothing was moved; run again to finish (what was read is in the cache)")
            ctx.exit(EXIT_INTERRUPTED)
        failed = act_on(ctx, result, cfg, journal, copy_keepers_to, stop)
        if stop.is_set():
            click.echo("interrupted: the files not yet moved stay where they are; the journal is whole")
            ctx.exit(EXIT_INTERRUPTED)
    if failed or any(f.decision == "error" for f in result.files):
        ctx.exit(EXIT_FILE_ERRORS)


def preflight(root: Path | str, report: Path | None, csv_path: Path | None, move_rejects_to: Path | None,
              copy_keepers_to: Path | None) -> None:
    """Refuse now, in one line, what would fail or do harm after the whole scan."""
    from refinery.dedup.actions import check_destination
    from refinery.io.fileio import check_writable, check_writable_folder

    for path in (report, csv_path):
        if path is None:
            continue
        if isinstance(root, Path) and path.exists() and path.resolve().is_relative_to(root.resolve()):
            raise RefineryError(f"{path} is a file in the folder being judged; write the report elsewhere")
        check_writable(path)
    for flag, dest in (("--move-rejects-to", move_rejects_to), ("--copy-keepers-to", copy_keepers_to)):
        if dest is not None and isinstance(root, Path):
            check_destination(root, dest, flag)
    if copy_keepers_to is not None:
        check_writable_folder(copy_keepers_to)


@contextmanager
def destination_journal(dest: Path | None) -> Iterator[Any]:
    """The journal of --move-rejects-to, its lock held for the whole run (None for no moves)."""
    if dest is None:
        yield None
        return
    from refinery.dedup.journal import open_journal

    with open_journal(dest, create=True) as journal:
        journal.read()  # a journal that cannot be trusted is refused now, not after the scan
        yield journal


def dedup_root(folder: str, engine: str, acting: Path | None) -> Path | str:
    """FOLDER as run_dedup takes it: a local folder, or (Ray engine, no moves) a URI."""
    if "://" in folder:
        if engine != "ray":
            raise click.UsageError(f"{folder} is a URI: only --engine ray reads those")
        if acting:
            raise click.UsageError("moving or copying files needs a local FOLDER")
        return folder
    if not Path(folder).is_dir():
        raise click.BadParameter(f"{folder} is not a folder", param_hint="FOLDER")
    return Path(folder)


def act_on(ctx: click.Context, result: Any, cfg: Any, journal: Any, copy_keepers_to: Path | None,
           stop: threading.Event) -> int:
    """Move the removed files or copy the kept ones, as asked; how many could not be."""
    from refinery.dedup import actions

    if journal is None and copy_keepers_to is None:
        click.echo("dry run: nothing was moved (use --move-rejects-to DEST or --copy-keepers-to DEST)")
        return 0
    folder = Path(result.root)
    failed = 0
    if journal is not None:
        removed = result.planned("remove")
        with progress_bar(ctx, "moving", len(removed)) as bar:
            done = actions.move_out(folder, removed, journal, cfg.run.follow_symlinks, bar.update, stop)
        failed += done.failed
        click.echo(f"moved {done.done} of {len(removed)} files to {journal.dest} "
                   f"(undo: refinery undo {journal.dest})" + left_in_place(done.failed))
    if copy_keepers_to and not stop.is_set():
        kept = result.planned("keep")
        with progress_bar(ctx, "copying", len(kept)) as bar:
            done = actions.copy_out(folder, kept, copy_keepers_to, bar.update, stop)
        failed += done.failed
        click.echo(f"copied {done.done} of {len(kept)} files to {copy_keepers_to}" + left_in_place(done.failed))
    return failed


def left_in_place(failed: int) -> str:
    return f"; {failed} left where they are (each named on an error line)" if failed else ""


def open_cache(cfg: Any, embedder: Any, folder: Path, variant: str = "") -> Any:
    """The feature cache for this model and folder, or None when switched off."""
    if not cfg.run.cache:
        return None
    from refinery.io.cache import FeatureCache, default_cache_dir
    from refinery.io.fileio import file_sha256

    return FeatureCache(Path(cfg.run.cache_dir) if cfg.run.cache_dir else default_cache_dir(),
                        file_sha256(embedder.path), folder, variant, embedder.spec.output_dim)


def summary_table(result: Any) -> str:
    """Files per stage kept/removed, time per stage, images/s end to end."""
    from refinery.dedup.run import NOT_LOADED

    s = result.stages
    lines = [f"{'stage':10s} {'in':>7s} {'kept':>7s} {'removed':>8s} {'seconds':>8s}"]
    lines.append(f"{'read+embed':10s} {len(result.files):7d} {'':7s} {'':8s} {s['pass'].seconds:8.1f}")
    for name in ("quality", "exact", "near", "semantic"):
        st = s[name]
        lines.append(f"{name:10s} {st.seen:7d} {st.kept:7d} {st.removed:8d} {st.seconds:8.1f}")
    if result.scenes:
        lines.append(f"scenes: {result.scenes} fixed-camera views; {result.scene_frames} frames judged by what stands "
                     f"in front of their background ({s['scenes'].seconds:.1f} s)")
    summary = result.summary()
    where = "not loaded" if result.provider == NOT_LOADED else f"on {result.provider}"
    lines.append(f"{len(result.files)} files: {summary['keep']} kept, {summary['remove']} removed, "
                 f"{summary['error']} unreadable, {summary['skip']} skipped; "
                 f"{summary['seconds']:.1f} s, {summary['images_per_s']} images/s "
                 f"({result.model} {where}; {result.cached} from the cache; "
                 f"peak memory {summary['peak_memory_mb']} MB)")
    if result.cached < len(result.files) and result.provider != "ray":
        lines.append(f"read+embed on {result.workers} threads: {s['features'].seconds:.1f} s decoding and measuring, "
                     f"{s['embed'].seconds:.1f} s in the model (thread time)")
    return "\n".join(lines)


@main.command("undo")
@click.argument("dest", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
@handle_errors
def undo_cmd(ctx: click.Context, dest: Path) -> None:
    """Put back every file a dedup run moved to DEST (reads DEST/.refinery/journal.jsonl).

    Example: refinery undo rejects/
    """
    from refinery.dedup import actions
    from refinery.dedup.journal import open_journal

    with stop_on_signal() as stop, open_journal(dest, create=False) as journal, \
            progress_bar(ctx, "restoring", 0) as bar:
        done = actions.undo(journal, bar.update, stop)
    click.echo(f"restored {done.done} files; {done.skipped} could not be restored (each named above)")
    if stop.is_set():
        ctx.exit(EXIT_INTERRUPTED)
    if done.skipped:
        ctx.exit(EXIT_FILE_ERRORS)


@main.command("index")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The index folder to write (built again in place, incrementally, if it exists).")
@click.option("--faces", is_flag=True, help="Index the largest face of each picture (Haar cascade); "
                                             "pictures without one are listed, not indexed.")
@click.option("--sift", is_flag=True, help="Also keep SIFT features, for `refinery search --method sift`.")
@model_options
@click.pass_context
@handle_errors
def index_cmd(ctx: click.Context, folder: Path, out: Path, faces: bool, sift: bool, config_path: Path | None,
              assignments: tuple[str, ...], model: str | None, device: str | None, batch_size: int | None) -> None:
    """Make FOLDER searchable by image: embeddings (FAISS), thumbnails, optionally SIFT.

    Example: refinery index photos/ --out photos.index
    """
    from refinery.retrieval.index import RetrievalIndex, build_index, check_index_folder

    cfg = settings(config_path, assignments, model, device, batch_size)
    check_index_folder(out)  # before the work: an OUT that is not an index is never written into
    embedder = make_embedder(cfg)
    previous = None
    if (out / "index.json").exists():
        try:
            previous = RetrievalIndex.load(out, device="cpu")
        except RefineryError as e:
            log.info("not reusing %s: %s", out, e)
    cache = open_cache(cfg, embedder, folder, "faces" if faces else "")
    try:
        with ProgressBars(ctx) as bars:
            index = build_index(folder, cfg, embedder, cache, bars, faces=faces, with_sift=sift, previous=previous)
    finally:
        if cache:
            cache.close()
    index.save(out)
    for rel, why in index.meta["left_out"]:
        log.warning("%s: left out: %s", folder / rel, why)
    click.echo(f"indexed {len(index.paths)} pictures of {folder} in {out} ({index.meta['kind']} index, "
               f"{index.meta['model']['name']}, {index.meta['cached']} embeddings from the cache); "
               f"{len(index.meta['left_out'])} left out")


@main.command("search")
@click.argument("index_path", metavar="INDEX", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("queries", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-k", type=click.IntRange(1), default=10, show_default=True, help="Results per query.")
@click.option("--method", default="embedding", show_default=True,
              help="embedding, pixel-l1, pixel-l2, pixel-cosine, pixel-pearson, or sift (index built with --sift).")
@click.option("--metric", type=click.Choice(["cosine", "l2"]), default="cosine", show_default=True,
              help="For embeddings: cosine similarity (higher is closer) or squared L2 distance (lower is).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: [{query, results: [{rank, score, path}]}].")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a contact sheet of each query and its results.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "coreml"]), default="auto", show_default=True)
@click.pass_context
@handle_errors
def search_cmd(ctx: click.Context, index_path: Path, queries: tuple[Path, ...], k: int, method: str, metric: str,
               as_json: bool, html_out: Path | None, device: str) -> None:
    """The pictures in INDEX most like each QUERY picture: rank, score, path.

    Example: refinery search photos.index query.jpg -k 5
    """
    import json

    from refinery.errors import UnreadableImage
    from refinery.io.images import read_bytes
    from refinery.retrieval.index import NoFace, RetrievalIndex

    index = RetrievalIndex.load(index_path, device=device)
    answers, failed = [], 0
    for query in queries:
        try:
            hits = index.search(read_bytes(query), str(query), k, method, metric)
        except (UnreadableImage, NoFace) as e:  # this query only: the others go on
            log.error("%s", e)
            failed += 1
            continue
        answers.append((query, hits))
    if as_json:
        click.echo(json.dumps([{"query": str(q), "results": [vars(h) for h in hits]} for q, hits in answers],
                              indent=1))
    else:
        for query, hits in answers:
            click.echo(f"query: {query}")
            for h in hits:
                click.echo(f"{h.rank:4d}  {h.score:9.4f}  {h.path}")
    if html_out:
        from refinery.retrieval.sheet import write_sheet

        write_sheet(html_out, index.root, answers)
        log.info("wrote %s", html_out)
    if failed:
        ctx.exit(EXIT_FILE_ERRORS)


@main.command("eval")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--models", default="default", show_default=True,
              help="Comma-separated embedding models to compare (each an .onnx path or 'default').")
@click.option("--methods", default=None,
              help="Comma-separated subset of: embedding, pixel-l1, pixel-l2, pixel-cosine, pixel-pearson, sift "
                   "(default: all).")
@click.option("-k", type=click.IntRange(1), default=5, show_default=True, help="k of precision@k and recall@k.")
@click.option("--faces", is_flag=True, help="Crop the largest face first, for queries and gallery.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help='Write {"methods": {NAME: {top1, top5, precision_at_k, recall_at_k, map, queries_per_s}}}.')
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "coreml"]), default="auto", show_default=True)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE")
@click.pass_context
@handle_errors
def eval_cmd(ctx: click.Context, folder: Path, models: str, methods: str | None, k: int, faces: bool,
             json_out: Path | None, device: str, config_path: Path | None, assignments: tuple[str, ...]) -> None:
    """Retrieval quality of each method on FOLDER's class sub-folders (held-out queries).

    Example: refinery eval /usr/share/tuxpaint/stamps --json eval.json
    """
    import json

    from refinery.io.fileio import write_text_atomic
    from refinery.retrieval.evaluate import evaluate, table

    cfg = settings(config_path, assignments, None, None, None)
    wanted = [m.strip() for m in methods.split(",")] if methods else None
    with ProgressBars(ctx) as bars:
        results = evaluate(folder, cfg, [m.strip() for m in models.split(",")], wanted, k, faces, device, bars,
                           cache_for=lambda emb: open_cache(cfg, emb, folder, "faces" if faces else ""))
    click.echo(table(results, k))
    if json_out:
        write_text_atomic(json_out, json.dumps({"k": k, "methods": {name: s.to_dict() for name, s in results.items()}},
                                               indent=1))


@main.command("config")
@click.option("--show", is_flag=True, help="Print the settings in effect (defaults, or --config FILE).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE")
@handle_errors
def config_cmd(show: bool, config_path: Path | None, assignments: tuple[str, ...]) -> None:
    """Show refinery's settings as TOML.

    Example: refinery config --show > my.toml
    """
    from refinery.config import apply_overrides, default_config_path, load_config, to_toml

    cfg = apply_overrides(load_config(config_path), list(assignments))
    click.echo(f"# {config_path or default_config_path()}")
    click.echo(to_toml(cfg))


@main.command("train")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for checkpoint.pt, model.onnx (+ .json), start.onnx and heldout/.")
@click.option("--arch", type=click.Choice(["mobilenetv2", "resnet50", "fastreid-r50-ibn"]), default=None,
              help="Backbone (default: train.arch, mobilenetv2).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Backbone weights (fastreid-r50-ibn needs one; mobilenetv2 defaults to its ImageNet weights).")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs (default: train.epochs).")
@click.option("--faces", is_flag=True, help="Crop the largest face first (Haar cascade), as retrieval does.")
@click.option("--resume", is_flag=True, help="Go on from OUT/checkpoint.pt (same settings; epochs may grow).")
@click.option("--no-eval", is_flag=True, help="Skip the before/after table on the held-out identities.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a setting, e.g. --set train.margin=0.3 (see `refinery config --show`).")
@click.pass_context
@handle_errors
def train_cmd(ctx: click.Context, folder: Path, out: Path, arch: str | None, checkpoint: Path | None,
              epochs: int | None, faces: bool, resume: bool, no_eval: bool, config_path: Path | None,
              assignments: tuple[str, ...]) -> None:
    """Fine-tune an embedding with a triplet loss on FOLDER's identity sub-folders (extra [train]).

    One sub-folder per identity; a share of the identities (train.test_share) is held out, by
    name, for a before/after `refinery eval`. Writes OUT/model.onnx, which `refinery dedup
    --model` and `refinery index --model` take as it is.

    Example: refinery train people/ --out runs/people --epochs 3
    """
    from refinery.config import apply_overrides

    try:
        from refinery.train.loop import train
    except ImportError as e:
        raise RefineryError(f"refinery train needs the [train] extra: pip install '.[train]' ({e})") from None
    cfg = apply_overrides(settings(config_path, assignments, None, None, None),
                          [f"train.arch={arch}"] * bool(arch) + [f"train.epochs={epochs}"] * bool(epochs))
    bars: list[Any] = []

    def progress(label: str, total: int) -> Callable[[float], None]:
        bars.append(progress_bar(ctx, label, total))
        bar = bars[-1]
        bar.unit = "batch"

        def advance(loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update(1)
        return advance

    try:
        result = train(folder, out, cfg.train, checkpoint, faces, resume, progress, evaluate=not no_eval)
    finally:
        for bar in bars:
            bar.close()
    click.echo(f"trained on {len(result.train_identities)} identities, held out {len(result.test_identities)}; "
               f"mean loss per epoch: {', '.join(f'{x:.4f}' for x in result.losses)}")
    if result.table:
        click.echo(result.table)
    click.echo(f"wrote {result.model} (use: refinery dedup DIR --model {result.model})")


def _register_serve() -> None:
    """`refinery serve` lives in refinery/serve.py (light to import: fastapi and uvicorn load
    only when it runs)."""
    from refinery.serve import serve_command

    main.add_command(serve_command, "serve")


_register_serve()
