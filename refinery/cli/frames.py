"""`refinery frames VIDEO... --out DIR`: video in, thinned frames out (refinery/frames.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from refinery.cli.common import EXIT_FILE_ERRORS, EXIT_INTERRUPTED, ProgressBars, handle_errors, main, stop_on_signal

log = logging.getLogger("refinery")


@main.command("frames")
@click.argument("videos", metavar="VIDEO...", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the kept frames (STEM_t000123.400.jpg); made if missing, nothing in it overwritten.")
@click.option("--every", type=click.IntRange(1), default=None, help="Look at every N-th frame (default: every frame).")
@click.option("--fps", type=click.FloatRange(0, min_open=True), default=None,
              help="Look at about this many frames a second instead.")
@click.option("--quality", "jpeg_quality", type=click.IntRange(50, 100), default=92, show_default=True,
              help="JPEG quality of the frames written.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every kept frame (time, frame number) and every skipped span (from, to, the kept "
                   "frame it duplicates, why) as JSON.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE")
@click.pass_context
@handle_errors
def frames_cmd(ctx: click.Context, videos: tuple[Path, ...], out: Path, every: int | None, fps: float | None,
               jpeg_quality: int, report: Path | None, config_path: Path | None, assignments: tuple[str, ...]) -> None:
    """Read each VIDEO once and write only the frames a person would keep.

    Blurred, dark and burnt-out frames are skipped, and so is every frame that shows the
    same things at the same places as a frame kept shortly before (the scene test of
    `refinery dedup`). Example: refinery frames camera1.mp4 --out frames/ --fps 2 --report r.json
    """
    from refinery.cli.common import settings
    from refinery.frames import thin_video
    from refinery.io.fileio import check_writable, check_writable_folder, write_text_atomic
    from refinery.parallel import peak_memory_mb

    if every and fps:
        raise click.UsageError("give --every or --fps, not both")
    cfg = settings(config_path, assignments, None, None, None)
    check_writable_folder(out)
    if report:
        check_writable(report)
    results, failed = [], 0
    with stop_on_signal() as stop, ProgressBars(ctx) as bars:
        for video in videos:
            if stop.is_set():
                break
            result = thin_video(video, out, cfg, every or 1, fps or 0.0, jpeg_quality, bars, stop)
            results.append(result)
            if result.error:
                log.error("%s: %s", video, result.error)
                failed += 1
            click.echo(f"{video}: {result.sampled} frames looked at, {len(result.written)} written, "
                       f"{sum(s.frames for s in result.skipped)} skipped ({result.fps:g} fps; "
                       f"peak memory {peak_memory_mb():.0f} MB)")
    if report:
        write_text_atomic(report, json.dumps({"out": str(out.resolve()), "videos": [r.to_dict() for r in results]},
                                             indent=1))
    if stop.is_set():
        click.echo("interrupted: every frame written so far is whole; the report covers what was done")
        ctx.exit(EXIT_INTERRUPTED)
    if failed:
        ctx.exit(EXIT_FILE_ERRORS)
