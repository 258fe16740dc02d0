"""Whole frames from fixed cameras: judge what stands in front of the background.

A fixed camera's frames share a background that never changes; what differs between them
is small things that come, stop and go. Two such frames are one picture only when the same
things stand at nearly the same places. Whole-picture statistics cannot tell: two frames
with different people on one square have near-equal hashes, 16x16 thumbnails (median
correlation 0.944 thirty seconds apart on vtest.avi) and global embeddings. So:

1. Scenes. Pictures of one size whose 8x8 gray thumbnails, each divided by its mean level
   (exposure aside), differ by at most `view_difference` on average, and whose mean levels
   are within 25% (two flat walls of other colours are other views), show one view (leader
   clustering in path order, one size at a time, then views merged by their medians until
   nothing more merges); a view with `min_frames` pictures or more is a scene. A cloud's
   shade over part of the view changes those shapes: within a wider bound, a picture still
   shows the view when its relief (log levels less their neighbours' mean, where a light
   that changes smoothly cancels out) matches in size and in layout. A handful of
   near-identical crops never makes one.
2. Background (background.py). Each scene's background is the per-pixel median of up to `sample` of its
   frames, in gray at the stages' size as the read-once pass decoded them (grays.py; longer
   side 320: an object 3% of the frame wide is ~10 pixels), each lined up on their median
   first (a camera's shake: the shift phase correlation finds, up to 3% of the frame) and
   divided by the light on it (as in 3, unrefined); each pixel's noise is its temporal median
   absolute deviation over those frames, so waving leaves, JPEG edges and sensor noise set
   their own threshold.
3. Foreground (background.py). A frame's pixels that differ from the background, once lined up on it (the
   strip a lined-up frame took from outside itself is no evidence) and after the light that
   falls on each part of it (auto-exposure, a cloud's shade, a patch of sun: the median ratio
   to the background in cells 1/16 of the frame wide, an object that fills a cell voted out
   by its neighbours), by more than `noise` times their own
   noise plus `floor` gray levels, cleaned (opened, closed), in regions of at least
   `min_area` of the frame.
4. The test. Two frames of one scene are one picture when one of the stages proposed them
   (the picture test found them alike) and every thing in front of the background stands
   within `max_shift` of its own size of where it stood (the distance between its boxes'
   centres, over the box's longer side): a person who took a step is another picture, one
   who swayed is not, however thin they are (an overlap of masks, which walking legs and
   arms fail, is no measure). A thing is the regions of the two frames whose boxes overlap
   or stand that near; one that came or went moved infinitely far.
   Frames of two different scenes are never one picture, and a frame is never removed as a
   copy of a picture outside its scene. A frame whose foreground covers more than
   `max_foreground` of it is no view of the scene (a crop that happens to repeat), and a
   view whose largest foreground regions span more than `max_extent` of the frame in a
   quarter of its frames is crops on one background window, not a camera - the picture test
   judges those - unless it is footage: a person filling a webcam's picture. A camera
   filming gives frames in quick succession, nearly every one with a twin (16x16 thumbnails
   correlating 0.99); crops cut on one window have twins only where they have copies.
5. The keeper of a group of frames is its most typical frame - the one most others are the
   same as (refinery/dedup/stages/scene_frames.py) - not the busiest.

Why not a background subtractor run over time (MOG2 and the like)? A folder gives no frame
order, and a median over a sample needs none.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from refinery.config import ScenesConfig
from refinery.dedup.grays import Grays
from refinery.dedup.groups import components
from refinery.dedup.stages.background import Background, Box, Front, box_centre
from refinery.dedup.table import FeatureTable
from refinery.features import normalized_thumbs
from refinery.parallel import cpu_count, ordered_map

log = logging.getLogger(__name__)

LEADER_BLOCK = 1024  # pictures matched against the scenes found so far at once


def find_scenes(table: FeatureTable, rows: np.ndarray, cfg: ScenesConfig) -> np.ndarray:
    """A scene number for every row of `table` (-1: in none), for the pictures in `rows`."""
    scene = np.full(len(table), -1, np.int32)
    if cfg.mode == "crops" or len(rows) == 0:
        return scene
    min_frames = 2 if cfg.mode == "frames" else cfg.min_frames
    sizes = np.stack([table.columns["width"][rows], table.columns["height"][rows]], axis=1)
    next_id = 0
    for size in np.unique(sizes, axis=0):
        members = rows[(sizes == size).all(axis=1)]
        if len(members) < min_frames:
            continue
        views = _views(table.thumb[members], cfg.view_difference)
        for view in range(views.max() + 1):
            found = members[views == view]
            if len(found) >= min_frames:
                scene[found] = next_id
                next_id += 1
    return scene


LEVEL = np.log(1.25)  # the mean gray levels of one view's frames differ by less (auto-exposure: 8%)
# A cloud's shade or a patch of sun darkens or lights a part of the view: its 8x8 shape then
# differs from the view's by up to ~0.11 (a band of 75% light over a quarter of the frame).
# Within SHADE_SPREAD a picture still shows the view when its relief matches: its log levels
# less their 3x3 neighbourhood's mean, where a light that changes smoothly over the frame
# cancels out and the view's layout stays. The relief's distance is held to the same bound as
# the shape's (frames of one camera in shade reach ~0.04 to the view's median, other views
# within SHADE_SPREAD 0.07 and more), and only where the two reliefs are laid out alike
# (correlation RELIEF_LAYOUT or more: two crops on flat backgrounds have reliefs near zero,
# close in size but not in layout). benchmarks/README.md, "Real cameras".
SHADE_SPREAD = 0.15
RELIEF_LAYOUT = 0.5


@dataclass(frozen=True)
class _ViewFeatures:
    """8x8 thumbnails over their mean level (shape), that level (log) and their relief (log
    levels less their 3x3 neighbourhood's mean), row by row."""

    shape: np.ndarray
    level: np.ndarray
    relief: np.ndarray
    pattern: np.ndarray  # the relief less its mean, of unit length: its layout, whatever its strength

    @classmethod
    def of(cls, thumbs: np.ndarray) -> _ViewFeatures:
        small = thumbs.reshape(-1, 8, 2, 8, 2).astype(np.float32).mean(axis=(2, 4))
        logs = np.log(np.maximum(small, 1.0))
        # the 3x3 mean of an 8x8 grid, its border reflected, for every row at once
        padded = np.pad(logs, ((0, 0), (1, 1), (1, 1)), mode="reflect")
        around = sum(padded[:, dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)) / 9
        small, relief = small.reshape(-1, 64), (logs - around).reshape(-1, 64)
        mean = np.maximum(small.mean(axis=1, keepdims=True), 1.0)
        pattern = relief - relief.mean(axis=1, keepdims=True)
        pattern /= np.maximum(np.linalg.norm(pattern, axis=1, keepdims=True), 1e-6)
        return cls(small / mean, np.log(mean[:, 0]), relief, pattern)

    def __getitem__(self, rows: np.ndarray | list[int]) -> _ViewFeatures:
        return _ViewFeatures(self.shape[rows], self.level[rows], self.relief[rows], self.pattern[rows])

    def __len__(self) -> int:
        return len(self.level)


MERGE_ROUNDS = 4  # rounds of merging views by their medians (each round's medians hold more frames)


def _views(thumbs: np.ndarray, match: float) -> np.ndarray:
    """Which view each 16x16 thumbnail shows. Leader clustering first: busy frames of one
    camera, or its frames as a cloud's shade crosses it, can fall apart into several views;
    so the views of three or more pictures are then merged when their medians (the
    background, objects and passing shade voted out) match, again on the merged views'
    medians until nothing more merges, and every picture goes to the merged view whose
    median it matches best."""
    looks = _ViewFeatures.of(thumbs)
    first = _leaders(looks, match)
    big = [v for v in range(first.max() + 1) if np.count_nonzero(first == v) >= 3]
    if not big:
        return first
    groups = [[v] for v in big]  # each merged view: the first views it holds
    for _ in range(MERGE_ROUNDS):
        medians = _ViewFeatures.of(np.stack([np.median(thumbs[np.isin(first, g)], axis=0) for g in groups]))
        merged = _leaders(medians, match)
        if merged.max() + 1 == len(groups):
            break
        groups = [sum((groups[k] for k in np.flatnonzero(merged == m)), []) for m in range(merged.max() + 1)]
    scenes = _ViewFeatures.of(np.stack([np.median(thumbs[np.isin(first, g)], axis=0) for g in groups]))
    best, distance = _nearest(looks, scenes)
    return np.where(distance <= match, best, len(scenes) + first)


def view_distances(thumbs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """How far each 16x16 gray thumbnail is from showing the view of `reference` (one 16x16
    thumbnail), as `_distances` measures it. A picture with `view_difference` or less shows
    that view."""
    return _distances(_ViewFeatures.of(thumbs), _ViewFeatures.of(reference[None]))[:, 0]


def _distances(a: _ViewFeatures, b: _ViewFeatures) -> np.ndarray:
    """Mean absolute difference of the shapes of every row of `a` to every row of `b`, or of
    their reliefs where that is less, the shapes are within SHADE_SPREAD (a part of the view
    in shade) and the reliefs are laid out alike; infinite where their levels differ by more
    than a view's exposure can."""
    out = np.empty((len(a), len(b)), np.float32)
    for start in range(0, len(b), 256):  # (rows x 256 x 64) floats at a time
        part = slice(start, start + 256)
        shape = np.abs(a.shape[:, None, :] - b.shape[None, part, :]).mean(axis=2)
        # the relief only where it can matter: pairs within SHADE_SPREAD whose layouts agree
        i, j = np.nonzero(shape <= SHADE_SPREAD)
        laid = np.einsum("ij,ij->i", a.pattern[i], b.pattern[part][j]) >= RELIEF_LAYOUT
        i, j = i[laid], j[laid]
        relief = np.abs(a.relief[i] - b.relief[part][j]).mean(axis=1)
        shape[i, j] = np.minimum(shape[i, j], relief)
        out[:, part] = shape
    out[np.abs(a.level[:, None] - b.level[None, :]) > LEVEL] = np.inf
    return out


def _nearest(rows: _ViewFeatures, centres: _ViewFeatures, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the nearest centre and its distance to it."""
    best = np.zeros(len(rows), np.int64)
    distance = np.zeros(len(rows), np.float32)
    for start in range(0, len(rows), block):
        d = _distances(rows[np.arange(start, min(start + block, len(rows)))], centres)
        best[start : start + block], distance[start : start + block] = d.argmin(axis=1), d.min(axis=1)
    return best, distance


def _leaders(rows: _ViewFeatures, match: float) -> np.ndarray:
    """Leader clustering: each row joins the first group whose first row is within `match`,
    or starts a new one. Rows go in order of their level, so a block of them is compared with
    the groups of nearby levels only (the others cannot match); its new groups are made in
    order: the first row left leads one, and the rows after it within `match` join it (each
    row's distances to the new leaders only, not to every row of its block)."""
    label = np.full(len(rows), -1, np.int64)
    order = np.argsort(rows.level, kind="stable")
    leaders: list[int] = []
    levels: list[float] = []  # of the leaders, in increasing order
    for start in range(0, len(rows), LEADER_BLOCK):
        block = order[start : start + LEADER_BLOCK]
        first = int(np.searchsorted(levels, rows.level[block].min() - LEVEL))
        if first < len(leaders):
            best, distance = _nearest(rows[block], rows[leaders[first:]])
            hit = distance <= match
            label[block[hit]] = best[hit] + first
        left = block[label[block] < 0]
        while len(left):
            leader, left = int(left[0]), left[1:]
            joins = _distances(rows[left], rows[[leader]])[:, 0] <= match
            label[leader] = label[left[joins]] = len(leaders)
            leaders.append(leader)
            levels.append(float(rows.level[leader]))
            left = left[~joins]
    return label


def shift(a: Front, b: Front, most: float) -> float:
    """How far the things in front of the background moved from one frame to the other: the
    largest move of any of them as a share of its own size (the longer side of its box, in
    the frame where it is smaller): the distance between its box's centres, or half the
    change of the box's height or width where that is more (a thing that grew by a fifth
    moved a tenth). A thing is the regions of the two frames whose boxes overlap or lie
    within `most` of their size of each other (regions linked so in either frame
    are one thing: a person split in two by a lamp post is one, and so are the crumbs a
    swaying outline leaves beside it); a thing in one frame only moved
    infinitely far. 0.0 when neither frame has anything in front of the background.
    Plain Python: frames hold a handful of regions, where numpy's calls cost more than the sums."""
    na, nb = len(a.regions), len(b.regions)
    if not na or not nb:
        return 0.0 if na == nb else math.inf
    links: list[tuple[int, int]] = []
    for ia, box_a in enumerate(a.boxes):
        found = False
        for ib, box_b in enumerate(b.boxes):
            if _close(box_a, a.centres[ia][2], box_b, b.centres[ib][2], most):
                links.append((ia, na + ib))
                found = True
        if not found:
            return math.inf  # nothing of the other frame's near it: it came or went
    if len({ib for _, ib in links}) < nb:
        return math.inf
    if len(links) == na == nb:  # each region has one partner (the usual case): each pair is a thing
        return max(_moved(a.boxes[ia], a.centres[ia], b.boxes[ib - na], b.centres[ib - na]) for ia, ib in links)
    largest = 0.0
    # every region is linked, so each thing has regions in both frames
    for thing in components(links):
        box_a = _bounds([a.boxes[k] for k in thing if k < na])
        box_b = _bounds([b.boxes[k - na] for k in thing if k >= na])
        largest = max(largest, _moved(box_a, box_centre(box_a), box_b, box_centre(box_b)))
    return largest


def _moved(box_a: Box, centre_a: tuple[float, float, int], box_b: Box, centre_b: tuple[float, float, int]) -> float:
    """How far a thing moved between two frames, as a share of its size in the frame where it
    is smaller (a mask's shadow or a neighbour that merged with it in one frame does not make
    it bigger): its centre's move, or half the change of its height or width where that is more."""
    (ya, xa, sa), (yb, xb, sb) = centre_a, centre_b
    resized = (
        max(abs((box_a[2] - box_a[0]) - (box_b[2] - box_b[0])), abs((box_a[3] - box_a[1]) - (box_b[3] - box_b[1]))) / 2
    )
    return max(math.hypot(ya - yb, xa - xb), resized) / min(sa, sb)


def _close(a: Box, size_a: int, b: Box, size_b: int, most: float) -> bool:
    """Are two boxes within `most` of the larger one's size of each other? (Written without
    max and min: `shift` asks this 170,000 times a run.)"""
    gap_y = (a[0] if a[0] > b[0] else b[0]) - (a[2] if a[2] < b[2] else b[2])
    gap_x = (a[1] if a[1] > b[1] else b[1]) - (a[3] if a[3] < b[3] else b[3])
    gap = (gap_y * gap_y if gap_y > 0 else 0) + (gap_x * gap_x if gap_x > 0 else 0)
    return gap <= (most * (size_a if size_a > size_b else size_b)) ** 2


def _bounds(boxes: list[Box]) -> Box:
    """The box around some boxes."""
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


class Scenes:
    """Scene numbers and foregrounds of a run's pictures, and the test between two of them.

    Built by `analyse`; `Scenes.none(n)` has no scenes (every pair goes to the picture test).
    """

    def __init__(
        self,
        scene: np.ndarray,
        frames: dict[int, Front],
        cfg: ScenesConfig,
        backgrounds: dict[int, Background] | None = None,
    ):
        self.scene, self.frames, self.cfg = scene, frames, cfg
        self.backgrounds = backgrounds or {}  # scene number -> its background (a reference's frames are judged on it)
        self._judging = {row: int(scene[row]) for row in frames}  # `of`, asked for every pair of the run
        self._shifts: dict[tuple[int, int], float] = {}

    @classmethod
    def none(cls, n: int, cfg: ScenesConfig) -> Scenes:
        return cls(np.full(n, -1, np.int32), {}, cfg)

    def of(self, row: int) -> int:
        """The scene of `row` whose test judges it, or -1 (the picture test does)."""
        return self._judging.get(row, -1)

    def judged_by_scene(self, i: int, j: int) -> bool:
        """Both frames of one scene: the scene test decides."""
        s = self.of(i)
        return s >= 0 and s == self.of(j)

    def apart(self, i: int, j: int) -> bool:
        """Frames of two different scenes: never one picture."""
        si, sj = self.of(i), self.of(j)
        return si >= 0 and sj >= 0 and si != sj

    def shift(self, i: int, j: int) -> float:
        """The largest move of a thing in front of the background between frames i and j, as
        a share of its size (`shift`)."""
        key = (i, j) if i < j else (j, i)
        if key not in self._shifts:
            self._shifts[key] = shift(self.frames[i], self.frames[j], self.cfg.max_shift)
        return self._shifts[key]

    def same(self, i: int, j: int) -> bool:
        return self.shift(i, j) <= self.cfg.max_shift

    @property
    def count(self) -> int:
        return len({int(self.scene[row]) for row in self.frames})


def analyse(
    grays: Grays,
    rows: np.ndarray,
    cfg: ScenesConfig,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    workers: int = 0,
) -> Scenes:
    """Find the scenes among `rows` and what stands in front of each of their frames. A file
    that cannot be read now leaves its scene and goes to the picture test."""
    table = grays.table
    scene = find_scenes(table, rows, cfg)
    in_scene = np.flatnonzero(scene >= 0)
    if not len(in_scene):
        return Scenes(scene, {}, cfg)
    workers = workers or cpu_count()
    advance = progress("scenes", len(in_scene)) if progress else (lambda n: None)
    views = [np.flatnonzero(scene == number) for number in np.unique(scene[in_scene]).tolist()]

    def learn(members: np.ndarray) -> tuple[Background | None, dict[int, np.ndarray]]:
        """The view's background, and the frames it was learnt from (judged without reading them again)."""
        sample = {
            row: g
            for row in members[:: max(1, len(members) // cfg.sample)][: cfg.sample].tolist()
            if (g := grays(row)) is not None
        }
        if len(sample) < 3 or len({g.shape for g in sample.values()}) > 1:
            return None, {}
        return Background.learn(list(sample.values()), cfg), sample

    frames: dict[int, Front] = {}
    backgrounds: dict[int, Background] = {}
    # the backgrounds of the next views are learnt while the frames of this one are judged
    for members, (background, read) in zip(views, ordered_map(learn, views, workers, ahead=workers), strict=True):
        if background is not None:
            fronts = _fronts(grays, read, members, background, cfg, workers, advance)
            if fronts and (
                np.percentile([f.extent for f in fronts.values()], 75) <= cfg.max_extent
                or footage(table.thumb[members])
            ):
                frames.update(fronts)  # else: big objects in front of a shared window are crops
                backgrounds[int(scene[members[0]])] = background
        else:
            advance(len(members))
    log.debug("%d scenes, %d frames judged by what stands in front of them", len(views), len(frames))
    return Scenes(scene, frames, cfg, backgrounds)


FRONTS_AT_ONCE = 16  # frames a thread measures in one stack


def _fronts(
    grays: Grays,
    read: dict[int, np.ndarray],
    members: np.ndarray,
    background: Background,
    cfg: ScenesConfig,
    workers: int,
    advance: Callable[[int], None],
) -> dict[int, Front]:
    """What stands in front of `background` in each of the frames `members` (those it is no
    view of, and those that cannot be read now, left out); those in `read` are not read again."""

    def measure(rows: list[int]) -> list[tuple[int, Front]]:
        shape = background.median.shape
        got = [
            (row, gray)
            for row in rows
            if (gray := read.pop(row) if row in read else grays(row)) is not None and gray.shape == shape
        ]
        return list(zip([row for row, _ in got], background.frames([gray for _, gray in got], cfg), strict=True))

    fronts: dict[int, Front] = {}
    chunks = [members[k : k + FRONTS_AT_ONCE].tolist() for k in range(0, len(members), FRONTS_AT_ONCE)]
    for chunk, found in zip(chunks, ordered_map(measure, chunks, workers, ahead=2 * workers), strict=True):
        fronts.update((row, front) for row, front in found if front.foreground <= cfg.max_foreground)
        advance(len(chunk))
    return fronts


TWIN = 0.99  # 16x16 thumbnails of consecutive frames of a video correlate this much (crops: only copies)
FOOTAGE = 0.8  # share of a view's frames with a twin that makes it footage
TWIN_SAMPLE = 256  # frames whose twins are looked for


def footage(thumbs: np.ndarray) -> bool:
    """Do these frames of one view come from a camera filming (most of them have a twin, a
    frame whose 16x16 thumbnail correlates TWIN or more, as consecutive frames of a video
    do), rather than from a folder of crops cut on one background window (where only a copy
    has a twin)? Up to TWIN_SAMPLE frames, spread over the view, are looked at."""
    rows = normalized_thumbs(thumbs)
    sample = np.arange(0, len(rows), max(1, len(rows) // TWIN_SAMPLE))[:TWIN_SAMPLE]
    twinned = 0
    for k in sample.tolist():
        correlation = rows @ rows[k]
        correlation[k] = -1.0
        twinned += int(correlation.max(initial=-1.0) >= TWIN)
    return twinned >= FOOTAGE * len(sample)


def split_pairs(
    pairs: list[tuple[int, int]], scenes: Scenes, frame_pairs: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The pairs the picture test judges; pairs inside one scene go to `frame_pairs`, pairs
    of two scenes nowhere (two cameras never show one picture)."""
    out = []
    for a, b in pairs:
        if scenes.judged_by_scene(a, b):
            frame_pairs.append((a, b))
        elif not scenes.apart(a, b):
            out.append((a, b))
    return out
