"""The funnel's contract: what every stage is given and what it does.

A stage is an object with a `name` (its line in the run's stage table) and a `run(funnel)`
that judges the rows still kept (`funnel.run.kept_rows()`), marks its removals in
`funnel.run.decisions` and counts what it saw, removed and spent in `funnel.stats[name]`.
The stages run in one list, in order (dedup/run.py STAGES_IN_ORDER), each seeing only what
the one before kept; the Ray engine feeds the same list (it only reads and embeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

from refinery.config import Config
from refinery.dedup.grays import Grays
from refinery.dedup.groups import KeepRule
from refinery.dedup.reference import Match, Reference
from refinery.dedup.stages.moving import MovingCamera
from refinery.dedup.stages.scenes import Scenes
from refinery.dedup.state import Run, StageStats
from refinery.dedup.vectors import VectorStore
from refinery.parallel import Progress


@dataclass
class Funnel:
    """What the stages share: the run's columns and vectors, the settings, the counts, and
    what an earlier stage found for a later one (the scenes, the moving cameras, the pairs
    inside one scene)."""

    run: Run
    store: VectorStore
    cfg: Config
    stats: dict[str, StageStats]
    grays: Grays | None = None  # the pictures' grays, for the scene test (None: a URI folder)
    progress: Progress | None = None
    workers: int = 1
    scenes: Scenes | None = None  # set by the scene finder, before the near stage
    moving: MovingCamera | None = None  # likewise
    frame_pairs: list[tuple[int, int]] = field(default_factory=list)  # near and semantic candidates in a scene
    chain_splits: dict[str, int] = field(default_factory=dict)  # stage -> groups the star guard cut
    references: list[Reference] = field(default_factory=list)  # judged against, never judged (--against)
    # rows a reference holds (set by the reference stage): they stand in for their reference
    # picture - the keeper of any group they are in - and go once every stage has run
    proxies: dict[int, Match] = field(default_factory=dict)
    root: Path | None = None  # the judged folder (None: a URI), for what must be checked on disk

    @cached_property
    def keep(self) -> KeepRule:
        """Which member of a group stays (the settings' [keep]; made once, after the pass)."""
        return KeepRule(self.run.table, self.run.stat[:, 1].tolist(), self.cfg.keep)

    def choose(self, members: list[int]) -> int:
        """The keeper of `members` (rows of one group), by the keep rule; a row a reference
        holds first (its reference picture is what stays)."""
        held = [row for row in members if row in self.proxies]
        return self.keep.choose(held or members)

    def rank(self, row: int) -> tuple[object, ...]:
        """The keep rule's sort key, best first; a row a reference holds before any other."""
        return (row not in self.proxies, *self.keep.rank(row))

    def judged(self, rows: np.ndarray) -> int:
        """How many of `rows` a stage judges: a picture a reference holds only stands in for it."""
        return len(rows) - sum(1 for row in rows.tolist() if row in self.proxies) if self.proxies else len(rows)

    def found_scenes(self) -> tuple[Scenes, MovingCamera]:
        """The scenes and moving cameras the scene finder found (a stage after it asks)."""
        if self.scenes is None or self.moving is None:
            raise RuntimeError("the scene finder must run before the stages that ask for scenes")
        return self.scenes, self.moving


class Stage(Protocol):
    """One step of the funnel (see the module docstring)."""

    @property
    def name(self) -> str: ...  # its line in the run's stage table

    def run(self, funnel: Funnel) -> None: ...
