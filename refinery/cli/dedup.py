"""`refinery dedup`, `undo` and `config`: the funnel, its moves and its settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from refinery.cli.common import (
    EXIT_FILE_ERRORS,
    EXIT_INTERRUPTED,
    ProgressBars,
    echo,
    handle_errors,
    main,
    make_embedder,
    model_options,
    open_cache,
    progress_bar,
    settings,
    stop_on_signal,
)
from refinery.io.names import printable

if TYPE_CHECKING:
    from refinery.config import Config
    from refinery.dedup.journal import Journal
    from refinery.dedup.plan import Plan
    from refinery.dedup.run import DedupResult
    from refinery.runner.session import Embedder

log = logging.getLogger("refinery")


@main.command("dedup")
@click.argument("folder")
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON report: a summary and one entry per file.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the per-file decisions as CSV.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the review page: every decision as pictures, to flip and save (`refinery review`).",
)
@click.option(
    "--move-rejects-to",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Move removed files here (relative paths kept, journaled; `refinery undo DEST` puts them back).",
)
@click.option(
    "--copy-keepers-to",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Copy the kept files here (relative paths kept).",
)
@click.option("--no-cache", is_flag=True, help="Compute everything again; neither read nor write the cache.")
@click.option(
    "--no-quality",
    is_flag=True,
    help="Keep blank, dark, burnt-out and blurred pictures: only duplicates go (config: quality.enabled).",
)
@click.option(
    "--follow-symlinks",
    is_flag=True,
    help="Judge symbolic links to files and folders outside FOLDER too (config: run.follow_symlinks).",
)
@click.option(
    "--keep",
    "keep_policy",
    type=click.Choice(["best", "largest", "oldest", "newest"]),
    default=None,
    help="Which member of a group stays: best (sharp, most pixels, least lossy, most detail; the default), "
    "largest, oldest or newest (config: keep.policy).",
)
@click.option(
    "--prefer",
    metavar="FOLDER",
    default=None,
    help="Files under FOLDER (inside the judged one) stay before any other (config: keep.prefer).",
)
@click.option(
    "--splits",
    metavar="NAMES",
    default=None,
    help="Dataset splits, earliest first (e.g. train,val,test; folders of those names anywhere in a path): "
    "a group keeps the earliest split's copy, and duplicates across and within splits are counted "
    "(config: keep.splits).",
)
@click.option(
    "--against",
    "against",
    multiple=True,
    metavar="REF",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Judge FOLDER against REF (a folder, or an index made by `refinery index`; repeatable): REF's "
    "pictures are keepers that are never judged, moved or written, and a picture of FOLDER that REF holds "
    "goes.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default=None,
    help="Where reading and embedding run: threads here, or Ray (RAY_ADDRESS, else a local instance; "
    "FOLDER may then be a URI). Config: run.engine.",
)
@model_options
@click.pass_context
@handle_errors
def dedup_cmd(
    ctx: click.Context,
    folder: str,
    report: Path | None,
    csv_path: Path | None,
    html_path: Path | None,
    move_rejects_to: Path | None,
    copy_keepers_to: Path | None,
    no_cache: bool,
    no_quality: bool,
    follow_symlinks: bool,
    keep_policy: str | None,
    prefer: str | None,
    splits: str | None,
    against: tuple[Path, ...],
    engine: str | None,
    config_path: Path | None,
    assignments: tuple[str, ...],
    model: str | None,
    device: str | None,
    batch_size: int | None,
) -> None:
    """Find blurred, dark, burnt-out, copied and near-identical images under FOLDER.

    A dry run unless --move-rejects-to or --copy-keepers-to is given; nothing is deleted.

    Example: refinery dedup photos/ --report report.json --move-rejects-to rejects/
    """
    from refinery.config import apply_overrides, user_sets
    from refinery.dedup.plan import destination_journal
    from refinery.dedup.report import write_csv, write_json

    cfg = apply_overrides(
        settings(config_path, assignments, model, device, batch_size),
        flag_settings(no_cache, no_quality, follow_symlinks, engine, keep_policy, prefer, splits),
    )
    root = dedup_root(folder, cfg.run.engine, move_rejects_to or copy_keepers_to)
    outputs = {"--report": report, "--csv": csv_path, "--html": html_path}
    destinations = {"--move-rejects-to": move_rejects_to, "--copy-keepers-to": copy_keepers_to}
    check_where_results_go(root, outputs, destinations, config_path, against)
    preflight(root, move_rejects_to, copy_keepers_to, cfg.keep.prefer)
    embedder = make_embedder(cfg)
    threshold_set = user_sets("semantic", "threshold", config_path, assignments)  # else the model's own
    with stop_on_signal() as stop, destination_journal(move_rejects_to) as journal:
        result = judge(ctx, root, cfg, embedder, stop=stop, threshold_set=threshold_set, against=against)
        if report:
            write_json(result, report)
        if csv_path:
            write_csv(result, csv_path)
        echo(summary_table(result), lines=True)
        if stop.is_set():
            echo("interrupted: nothing was moved; run again to finish (what was read is in the cache)")
            ctx.exit(EXIT_INTERRUPTED)
        if html_path:  # before anything moves: the page shows the files where they are
            write_page(ctx, result, html_path)
        failed = act_on(
            ctx, result, journal, copy_keepers_to, stop, lambda: dry_run_summary(result, reviewed=html_path is not None)
        )
        if stop.is_set():
            echo("interrupted: the files not yet moved stay where they are; the journal is whole")
            ctx.exit(EXIT_INTERRUPTED)
    if failed or any(f.decision == "error" for f in result.files):
        ctx.exit(EXIT_FILE_ERRORS)


def check_where_results_go(
    root: Path | str,
    outputs: dict[str, Path | None],
    destinations: dict[str, Path | None],
    config_path: Path | None,
    against: tuple[Path, ...],
) -> None:
    """Checked before the long run: where the results go (never over an input, never into a
    reference) and that the destinations are free (locked till the moves end)."""
    from refinery.dedup.reference import check_references
    from refinery.io.outputs import Kind, Output, check_outputs

    if outputs["--html"] and not isinstance(root, Path):
        raise click.UsageError("--html reads the pictures again: it needs a local FOLDER")
    kinds = {"--report": Kind.REPORT, "--csv": Kind.CSV, "--html": Kind.PAGE}
    check_outputs(
        [Output(path, flag, kinds[flag]) if path else None for flag, path in outputs.items()],
        inputs=[root if isinstance(root, Path) else None, config_path],
        destinations=list(destinations.items()),
    )
    check_references(root, list(against), [*outputs.items(), *destinations.items()])


def judge(
    ctx: click.Context,
    root: Path | str,
    cfg: Config,
    embedder: Embedder,
    *,
    stop: threading.Event,
    threshold_set: bool,
    against: tuple[Path, ...],
) -> DedupResult:
    """The run itself, with progress bars and the folder's feature cache."""
    from refinery.dedup.run import run_dedup

    cache = open_cache(cfg, embedder, Path(root)) if isinstance(root, Path) else None
    try:
        with ProgressBars(ctx) as bars:
            return run_dedup(
                root,
                cfg,
                embedder,
                progress=bars,
                cache=cache,
                stop=stop,
                threshold_set=threshold_set,
                against=against,
            )
    finally:
        if cache:
            cache.close()


def flag_settings(
    no_cache: bool,
    no_quality: bool,
    follow_symlinks: bool,
    engine: str | None,
    keep_policy: str | None = None,
    prefer: str | None = None,
    splits: str | None = None,
) -> list[str]:
    """dedup's own flags as the settings they stand for (`--set` assignments)."""
    import json

    flags = [
        (bool(keep_policy), f"keep.policy={keep_policy}"),
        (prefer is not None, f"keep.prefer={json.dumps(prefer)}"),
        (splits is not None, f"keep.splits={json.dumps(splits)}"),
        (no_cache, "run.cache=false"),
        (no_quality, "quality.enabled=false"),
        (follow_symlinks, "run.follow_symlinks=true"),
        (bool(engine), f"run.engine={engine}"),
    ]
    return [assignment for given, assignment in flags if given]


def write_page(ctx: click.Context, result: DedupResult, html_path: Path) -> None:
    """The review page of a dedup run (`--html`)."""
    from refinery.cli.review import review_written
    from refinery.dedup.report import report_dict
    from refinery.review.page import write_review

    with ProgressBars(ctx) as bars:
        stats = write_review(report_dict(result), html_path, progress=bars)
    echo(review_written(html_path, stats))


def preflight(root: Path | str, move_rejects_to: Path | None, copy_keepers_to: Path | None, prefer: str) -> None:
    """Refuse now, in one line, what would fail or do harm after the whole scan: a preferred
    folder (keep.prefer) that is not in the judged one, a destination
    (refinery.dedup.plan.check_destinations; the files a command writes are checked by
    refinery.io.outputs.check_outputs)."""
    from refinery.dedup.plan import check_destinations

    if prefer and isinstance(root, Path) and not (root / prefer).is_dir():
        raise click.BadParameter(f"no folder {prefer} in {root}", param_hint="--prefer / keep.prefer")
    check_destinations(root, move_rejects_to, copy_keepers_to)


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


def dry_run_summary(result: DedupResult, examples: int = 4, reviewed: bool = False) -> str:
    """What a dry run would do, a few removals as examples (one of each stage first), and how
    to see them all and act on them."""
    from refinery.dedup.decisions import STAGES

    removed = [f for f in result.files if f.decision == "remove"]
    lines = ["dry run: nothing was moved."]
    if removed:
        shown: list[Any] = []
        for stage in reversed(STAGES):  # the riskier kinds first
            shown += [f for f in removed if f.stage == stage][:1]
        shown += [f for f in removed if f not in shown][: max(0, examples - len(shown))]
        lines.append(f"{len(removed)} files would be removed, for example:")
        lines += [f"  {printable(f.path)}: {printable(f.reason)}" for f in shown[:examples]]
        if not reviewed:
            lines.append(
                "see them all as pictures: add --html review.html (or `refinery review REPORT.json --html "
                "review.html`);"
            )
    lines.append("act with --move-rejects-to DEST (undo: refinery undo DEST) or --copy-keepers-to DEST")
    return "\n".join(lines)


def act_on(
    ctx: click.Context,
    plan: Plan,
    journal: Journal | None,
    copy_keepers_to: Path | None,
    stop: threading.Event,
    dry_run_text: Callable[[], str],
) -> int:
    """Move the removed files or copy the kept ones, as asked, and say what was done; how
    many could not be. With neither, prints `dry_run_text()`."""
    from refinery.dedup import plan as plans

    if journal is None and copy_keepers_to is None:
        echo(dry_run_text(), lines=True)
        return 0
    with ProgressBars(ctx) as bars:
        acted = plans.act_on(plan, journal=journal, copy_keepers_to=copy_keepers_to, progress=bars, stop=stop)
    if journal is not None and acted.moved is not None:
        echo(
            f"moved {acted.moved.done} of {acted.to_move} files to {journal.dest} "
            f"(undo: refinery undo {journal.dest})" + left_in_place(acted.moved.failed)
        )
    if copy_keepers_to is not None and acted.copied is not None:
        echo(
            f"copied {acted.copied.done} of {acted.to_copy} files to {copy_keepers_to}"
            + left_in_place(acted.copied.failed)
        )
    return acted.failed


def left_in_place(failed: int) -> str:
    return f"; {failed} left where they are (each named on an error line)" if failed else ""


def summary_table(result: DedupResult) -> str:
    """Files per stage kept/removed, time per stage, images/s end to end."""
    from refinery.dedup.decisions import STAGES
    from refinery.dedup.run import NOT_LOADED

    s = result.stages
    lines = [f"{'stage':10s} {'in':>7s} {'kept':>7s} {'removed':>8s} {'seconds':>8s}"]
    lines.append(f"{'read+embed':10s} {len(result.files):7d} {'':7s} {'':8s} {s['pass'].seconds:8.1f}")
    # the reference's line (--against) where it runs: after the exact copies, before the near ones
    order = [*STAGES[:2], "against", *STAGES[2:]] if "against" in s else list(STAGES)
    for name in order:
        st = s[name]
        lines.append(f"{name:10s} {st.seen:7d} {st.kept:7d} {st.removed:8d} {st.seconds:8.1f}")
    if result.splits:
        from refinery.dedup.splits import matrix_table

        lines.append(matrix_table(result.splits))
    if result.scenes:
        lines.append(
            f"scenes: {result.scenes} fixed-camera views; {result.scene_frames} frames judged by what stands "
            f"in front of their background ({s['scenes'].seconds:.1f} s)"
        )
    summary = result.summary()
    where = "not loaded" if result.provider == NOT_LOADED else f"on {result.provider}"
    lines.append(
        f"{len(result.files)} files: {summary['keep']} kept, {summary['remove']} removed, "
        f"{summary['error']} unreadable, {summary['skip']} skipped; "
        f"{summary['seconds']:.1f} s, {summary['images_per_s']} images/s "
        f"({result.model} {where}; {result.cached} from the cache; "
        f"peak memory {summary['peak_memory_mb']} MB)"
    )
    if result.cached < len(result.files) and result.provider != "ray":
        lines.append(
            f"read+embed on {result.workers} threads: {s['features'].seconds:.1f} s decoding and measuring, "
            f"{s['embed'].seconds:.1f} s in the model (thread time)"
        )
    return "\n".join(lines)


@main.command("undo")
@click.argument("dest", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
@handle_errors
def undo_cmd(ctx: click.Context, dest: Path) -> None:
    """Put back every file a dedup run moved to DEST (reads DEST/.refinery/journal.jsonl).

    Example: refinery undo rejects/
    """
    from refinery.dedup.journal import open_journal
    from refinery.dedup.undo import undo

    with (
        stop_on_signal() as stop,
        open_journal(dest, create=False) as journal,
        progress_bar(ctx, "restoring", 0) as bar,
    ):
        done = undo(journal, advance=bar.update, stop=stop)
    echo(f"restored {done.done} files; {done.skipped} could not be restored (each named above)")
    if stop.is_set():
        ctx.exit(EXIT_INTERRUPTED)
    if done.skipped:
        ctx.exit(EXIT_FILE_ERRORS)


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
    echo(f"# {config_path or default_config_path()}")
    echo(to_toml(cfg), lines=True)
