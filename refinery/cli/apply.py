"""`refinery apply DECISIONS`: act on what a review decided, with dedup's checks, journal and undo."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from refinery.cli.common import EXIT_FILE_ERRORS, EXIT_INTERRUPTED, echo, handle_errors, main, stop_on_signal
from refinery.cli.dedup import act_on

if TYPE_CHECKING:
    from refinery.dedup.checks import Planned
    from refinery.review.decisions import DecisionsFile

log = logging.getLogger("refinery")


@dataclass
class _Reviewed:
    """A decisions file as a plan to act on (refinery.dedup.plan.Plan), each line it refuses
    logged and counted."""

    root: Path
    decisions: DecisionsFile
    refused: int = 0

    @property
    def follow_symlinks(self) -> bool:  # links are followed as the run that judged the files followed them
        return self.decisions.follow_symlinks

    def planned(self, decision: str) -> list[Planned]:
        planned, refused = self.decisions.plan(decision)
        for path, why in refused:
            log.error("%s: not acted on: %s", self.root / path, why)
        self.refused += len(refused)
        return planned


@main.command("apply")
@click.argument("decisions_path", metavar="DECISIONS", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--move-rejects-to",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Move the files decided `remove` here (journaled; `refinery undo DEST` puts them back).",
)
@click.option(
    "--copy-keepers-to",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Copy the files decided `keep` here.",
)
@click.pass_context
@handle_errors
def apply_cmd(
    ctx: click.Context, decisions_path: Path, move_rejects_to: Path | None, copy_keepers_to: Path | None
) -> None:
    """Act on a decisions file (saved from the review page) or a dedup report.

    Every file is checked to be what was judged before it moves or is copied, and reached
    as the run that judged it did (through symbolic links only if it followed them); a
    removed duplicate whose keeper is not kept is left. Without --move-rejects-to or
    --copy-keepers-to, says what it would do, by the same checks.

    Example: refinery apply decisions.json --move-rejects-to rejects/
    """
    from refinery.dedup.actions import check_moves
    from refinery.dedup.plan import check_destinations, destination_journal
    from refinery.errors import RefineryError
    from refinery.review.decisions import load

    decisions = load(decisions_path)
    if not decisions.root.is_dir():
        raise RefineryError(f"{decisions_path}: its folder {decisions.root} is not there")
    check_destinations(decisions.root, move_rejects_to, copy_keepers_to)
    reviewed = _Reviewed(decisions.root, decisions)
    with stop_on_signal() as stop, destination_journal(move_rejects_to) as journal:
        if journal is None and copy_keepers_to is None:
            would = check_moves(decisions.root, reviewed.planned("remove"), follow_symlinks=decisions.follow_symlinks)
            echo(
                f"{would.done} files would be moved, {would.failed + reviewed.refused} left as they are; act "
                "with --move-rejects-to DEST or --copy-keepers-to DEST"
            )
            if would.failed or reviewed.refused:
                ctx.exit(EXIT_FILE_ERRORS)
            return
        failed = act_on(ctx, reviewed, journal, copy_keepers_to, stop, lambda: "")
        if stop.is_set():
            echo("interrupted: the files not yet moved stay where they are; the journal is whole")
            ctx.exit(EXIT_INTERRUPTED)
    if failed or reviewed.refused:
        ctx.exit(EXIT_FILE_ERRORS)
