"""`refinery frames VIDEO... --out DIR`: video in, thinned frames out (refinery/video/)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from refinery.cli.common import (
    EXIT_FILE_ERRORS,
    EXIT_INTERRUPTED,
    ProgressBars,
    echo,
    finite,
    handle_errors,
    main,
    stop_on_signal,
)

if TYPE_CHECKING:
    from refinery.video.results import VideoResult

log = logging.getLogger("refinery")


@main.command("frames")
@click.argument("videos", metavar="VIDEO...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the kept frames (STEM_t000123.400.jpg); made if missing, nothing in it overwritten.",
)
@click.option("--every", type=click.IntRange(1), default=None, help="Look at every N-th frame (default: every frame).")
@click.option(
    "--fps",
    type=click.FloatRange(0, min_open=True),
    default=None,
    callback=finite,
    help="Look at about this many frames a second instead.",
)
@click.option(
    "--quality",
    "jpeg_quality",
    type=click.IntRange(50, 100),
    default=92,
    show_default=True,
    help="JPEG quality of the frames written.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write every kept frame (time, frame number) and every skipped span (from, to, the kept "
    "frame it duplicates, why) as JSON.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a page that shows each kept frame beside the spans skipped as its duplicates "
    "(a picture of each span: its frame least like the keeper, where it differs in red).",
)
@click.option(
    "--no-quality", is_flag=True, help="Keep blank, dark, burnt-out and blurred frames too (config: quality.enabled)."
)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE")
@click.pass_context
@handle_errors
def frames_cmd(
    ctx: click.Context,
    videos: tuple[Path, ...],
    out: Path,
    every: int | None,
    fps: float | None,
    jpeg_quality: int,
    report: Path | None,
    html_path: Path | None,
    no_quality: bool,
    config_path: Path | None,
    assignments: tuple[str, ...],
) -> None:
    """Read each VIDEO once and write only the frames a person would keep.

    Blurred, dark and burnt-out frames are skipped, and so is every frame that shows the
    same things at the same places as a frame kept shortly before (the scene test of
    `refinery dedup`). Example: refinery frames camera1.mp4 --out frames/ --fps 2 --html r.html
    """
    from refinery.cli.common import settings
    from refinery.io.fileio import check_writable_folder
    from refinery.io.outputs import Kind, Output, check_outputs
    from refinery.video.extract import thin_video
    from refinery.video.folder import video_names

    if every and fps:
        raise click.UsageError("give --every or --fps, not both")
    cfg = settings(config_path, assignments + ("quality.enabled=false",) * no_quality, None, None, None)
    check_outputs(
        [
            Output(report, "--report", Kind.FRAMES_REPORT) if report else None,
            Output(html_path, "--html", Kind.PAGE) if html_path else None,
        ],
        inputs=[*videos, out, config_path],
    )
    check_writable_folder(out)
    results, failed, gone = [], 0, False
    names = video_names(list(videos))  # two clip.avi of two cameras: camA_clip, camB_clip
    with stop_on_signal() as stop, ProgressBars(ctx) as bars:
        for video, name in zip(videos, names, strict=True):
            if stop.is_set():
                break
            result = thin_video(
                video,
                out,
                cfg,
                every or 1,
                fps or 0.0,
                jpeg_quality,
                frame_bar(bars),
                stop,
                thumbnails=html_path is not None,
                name=name,
            )
            results.append(result)
            tell_result(video, result, len(videos) - len(results) if result.cannot_write else 0, out)
            failed += bool(result.error or result.taken)
            gone = gone or result.out_gone
            if result.cannot_write:
                break
    if report:
        write_report(report, out, results)
    if html_path:
        write_page(ctx, results, out, html_path)
    if stop.is_set():
        echo("interrupted: every frame written so far is whole; the report covers what was done")
        ctx.exit(EXIT_INTERRUPTED)
    if gone:
        ctx.exit(1)  # a refinery error that stopped the run
    if failed:
        ctx.exit(EXIT_FILE_ERRORS)


def tell_result(video: Path, result: VideoResult, left: int, out: Path) -> None:
    """The lines a video's thinning earns: its error, the names it found taken, what it looked
    at and wrote, and why no more videos are read (`left` of them) when `out` takes no more."""
    from refinery.parallel import peak_memory_mb
    from refinery.video.folder import frame_stem

    if result.error:  # the folder gone: one line, with what that leaves undone
        more = f"; {left} more video{'s' if left > 1 else ''} not read" if result.out_gone and left else ""
        log.error("%s: %s%s", video, result.error, more)
    if result.taken:
        log_taken(out, result)
    if result.sampled or not result.error:
        already = sum(bool(w.already) for w in result.written)
        echo(
            f"{video}: {result.sampled} frames looked at, {len(result.written) - already} written"
            + (f" ({already} already in {out}, the same bytes: not written again)" if already else "")
            + f", {sum(s.frames for s in result.skipped)} skipped ({result.fps:g} fps; "
            f"peak memory {peak_memory_mb():.0f} MB)"
            + (f"; its frames are named {frame_stem(result.name)}_t..." if result.name != Path(video).stem else "")
        )
    if result.cannot_write and left and not result.out_gone:
        log.error("stopped: nothing more can be written into %s; %d more video%s not read", out, left, "s" * (left > 1))


def write_report(report: Path, out: Path, results: list[VideoResult]) -> None:
    """`--report`: every video's frames written and spans skipped, as JSON."""
    from refinery.io.outputs import Kind, marked, write_output

    videos = {"out": str(out.resolve()), "videos": [r.to_dict() for r in results]}
    write_output(report, Kind.FRAMES_REPORT, json.dumps(marked(Kind.FRAMES_REPORT, videos), indent=1))


# Frames of the same video already there with other bytes: a run with other settings, most likely.
OTHER_RUN = " (an earlier run with other settings? give each its own --out)"


def log_taken(out: Path, result: VideoResult) -> None:
    """One line for the frames of a video whose names were taken in `out`: never overwritten,
    each went to a free name."""
    moved = [(w.instead_of, w.name) for w in result.written if w.instead_of]
    if len(moved) == 1:
        [(taken, free)] = moved
        log.error(
            "%s: already there, other bytes; not overwritten: the frame went to %s%s", out / taken, free, OTHER_RUN
        )
    else:
        (taken, free), n = moved[0], len(moved)
        log.error(
            "%s: %d frame names of %s were already there, other bytes (%s, ...); not overwritten: those frames "
            "went to free names (%s, ...)%s",
            out,
            n,
            result.video,
            taken,
            free,
            OTHER_RUN,
        )


def frame_bar(bars: ProgressBars) -> Callable[[str, int, float], Callable[[int], None]]:
    """A video's progress bar: frames read, and how far into the video that is."""

    def start(name: str, total: int, rate: float) -> Callable[[int], None]:
        advance = bars(name, total, unit="frame")
        bar, every = bars.bars[-1], max(1, round(rate))
        length = f" of {clock(total / rate)}" if rate and total else ""

        def read(n: int) -> None:
            advance(n)
            if rate and bar.n % every == 0:  # once a video second
                bar.set_postfix_str(f"video {clock(bar.n / rate)}{length}", refresh=False)

        return read

    return start


def clock(seconds: float) -> str:
    """1:02:03, or 2:03 under an hour."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def write_page(ctx: click.Context, results: list[VideoResult], out: Path, html_path: Path) -> None:
    """The review page of what was kept and skipped (no decisions to flip: the skipped frames
    were never written)."""
    from refinery.cli.review import review_written
    from refinery.review.page import write_review
    from refinery.video.page import review_report

    report, pictures = review_report(results, out)
    note = (
        "Each kept frame in " + str(out) + " beside the spans of frames skipped as its duplicates; a span's "
        "picture is its frame least like the keeper, red where it differs. Skipped frames were never written: "
        "to keep more, lower scenes.max_shift (refinery config) and run again."
    )
    with ProgressBars(ctx) as bars:
        stats = write_review(report, html_path, progress=bars, pictures=pictures, note=note)
    echo(review_written(html_path, stats))
