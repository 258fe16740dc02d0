"""Acting on a plan: the removed files moved out (journaled, undoable), the kept ones copied,
each checked first to be what was judged. A plan is a dedup result or a reviewed decisions
file; `refinery dedup` and `refinery apply` both act through `act_on`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from refinery.dedup import actions
from refinery.dedup.actions import move_out
from refinery.dedup.checks import Planned
from refinery.dedup.copies import copy_out
from refinery.dedup.journal import Journal, open_journal
from refinery.dedup.transfer import ActionResult
from refinery.parallel import Progress


class Plan(Protocol):
    """What can be acted on: the judged folder, how it was reached, and its files by decision."""

    @property
    def root(self) -> Path | str: ...

    @property
    def follow_symlinks(self) -> bool: ...  # the judging run went through symbolic links

    def planned(self, decision: str) -> list[Planned]: ...


@dataclass
class Acted:
    """What act_on did: each step's counts (None where it was not asked for), and its plan's size."""

    moved: ActionResult | None = None
    to_move: int = 0
    copied: ActionResult | None = None
    to_copy: int = 0

    @property
    def failed(self) -> int:
        return sum(step.failed for step in (self.moved, self.copied) if step is not None)


def check_destinations(root: Path | str, move_rejects_to: Path | None, copy_keepers_to: Path | None) -> None:
    """Refuse now, in one line, a destination that would fail or do harm after the whole scan:
    one inside the judged folder or holding it, or a copy destination that cannot be written."""
    from refinery.io.fileio import check_writable_folder

    for flag, dest in (("--move-rejects-to", move_rejects_to), ("--copy-keepers-to", copy_keepers_to)):
        if dest is not None and isinstance(root, Path):
            actions.check_destination(root, dest, flag)
    if copy_keepers_to is not None:
        check_writable_folder(copy_keepers_to)


@contextmanager
def destination_journal(dest: Path | None) -> Iterator[Journal | None]:
    """The journal of the moves' destination, its lock held for the whole block (None for no
    moves); a journal that cannot be trusted is refused now, before anything is judged."""
    if dest is None:
        yield None
        return
    with open_journal(dest, create=True) as journal:
        journal.read()
        yield journal


def act_on(
    plan: Plan,
    *,
    journal: Journal | None = None,
    copy_keepers_to: Path | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Acted:
    """Move the plan's removed files to the journal's folder and/or copy its kept files to
    `copy_keepers_to`; stops between two files when `stop` is set (no copying after a stop)."""
    folder, acted = Path(plan.root), Acted()
    if journal is not None:
        removed = plan.planned("remove")
        acted.to_move = len(removed)
        advance = progress("moving", len(removed)) if progress else (lambda n: None)
        acted.moved = move_out(
            folder, removed, journal, follow_symlinks=plan.follow_symlinks, advance=advance, stop=stop
        )
    if copy_keepers_to is not None and not (stop and stop.is_set()):
        kept = plan.planned("keep")
        acted.to_copy = len(kept)
        advance = progress("copying", len(kept)) if progress else (lambda n: None)
        acted.copied = copy_out(
            folder, kept, copy_keepers_to, follow_symlinks=plan.follow_symlinks, advance=advance, stop=stop
        )
    return acted
