"""`refinery review REPORT --html PAGE`: a dedup report as a page to check and flip decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from refinery.cli.common import ProgressBars, echo, handle_errors, main


@main.command("review")
@click.argument("report", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Write the review page here: one HTML file that opens from disk.",
)
@click.option(
    "--decisions",
    "decisions_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Resume a review: the page starts with the flips of this decisions file (saved from a page of REPORT).",
)
@click.option(
    "--large-previews",
    is_flag=True,
    help="Embed each picture at 640 px too, shown when it is clicked and its original is out of reach "
    "(a page ~5x as heavy).",
)
@click.pass_context
@handle_errors
def review_cmd(
    ctx: click.Context, report: Path, html_path: Path, decisions_path: Path | None, large_previews: bool
) -> None:
    """Show a dedup report as one HTML page: every group, keeper beside duplicates, riskiest
    first; flip decisions there and save them as decisions.json for `refinery apply`.

    Example: refinery review report.json --html review.html
    (resume: refinery review report.json --decisions decisions.json --html review.html)
    """
    from refinery.io.outputs import Kind, Output, check_outputs
    from refinery.review import decisions
    from refinery.review.page import resumed, write_review
    from refinery.review.report import load_report

    data = load_report(report)
    flips = resumed(data, decisions.load(decisions_path)) if decisions_path else None
    # The pictures the page shows are inputs too: a page written over one would lose it.
    inputs = [report, decisions_path, Path(data["summary"]["root"])]
    check_outputs([Output(html_path, "--html", Kind.PAGE)], inputs=inputs)
    with ProgressBars(ctx) as bars:
        stats = write_review(data, html_path, progress=bars, resume=flips, large_previews=large_previews)
    echo(review_written(html_path, stats) + (f"; {len(flips)} flips of {decisions_path} resumed" if flips else ""))


def review_written(path: Path, stats: Any) -> str:
    """The line that says a review page was written (dedup --html prints it too)."""
    return f"wrote {path} ({stats.groups} groups, {stats.bytes / 1e6:.1f} MB)"
