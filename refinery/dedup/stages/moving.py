"""Frames of a camera that pans or tilts: no still background, so each frame gets its own.

A fixed camera's frames are judged by what stands in front of their shared background
(scenes.py). A moving camera has none: the view drifts, and whole-picture statistics
(hashes, thumbnails, embeddings) cannot see a passer-by who came, went or took a step. So:

1. Neighbours. A frame that no scene judges, with at least LEAST others of its size whose
   views its own matches cleanly 3-22% of the picture away (views.view_match, on the
   16x16 thumbnails; candidates are the pictures whose embeddings are CANDIDATE alike), is a
   frame of a moving camera. Crops rarely are: a copy of a crop moves its object, not the
   view, and a group of copies has a handful of members.
2. Its background. Up to NEIGHBOURS of them, spread over those shifts, lined up on it
   (phase correlation on the gray pictures at the stages' size): the per-pixel median,
   where a walker who moved further than their width between the neighbours is voted out,
   and each pixel's spread over them as its noise (scenes.py's rule: `noise` times it plus
   `floor`). Where fewer than three neighbours reach, nothing is measured.
3. The test. Two such frames are one picture when every thing in front of its own
   background, moved into the other frame's place by the view's shift, stands within
   `max_shift` of its size of where it stood (scenes.shift), over the part of the view both
   frames show. A moving camera's frame and one that is not (a scene's, where the pan stood
   still at its end, or a picture's) have no common ground and are never one picture.
Every other pair is left to the picture test - after the pan rule, which holds for all pairs
of one size (MovingCamera.panned).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from refinery import ann
from refinery.config import ScenesConfig
from refinery.dedup.grays import Grays
from refinery.dedup.stages.background import (
    Front,
    covered,
    foreground_regions,
    noise_threshold,
    pixel_median,
    smooth,
)
from refinery.dedup.stages.scenes import Scenes, shift
from refinery.dedup.table import FeatureTable
from refinery.dedup.vectors import VectorStore
from refinery.parallel import ordered_map
from refinery.views import view_match, view_matches

log = logging.getLogger(__name__)

CANDIDATE = 0.9  # cosine at which pictures are looked at as a frame's neighbours
NEAREST, FURTHEST = 0.03, 0.22  # a neighbour's view is this far away, as a share of the picture
NEIGHBOURS = 8  # a background is learnt from this many
LEAST = 4  # fewer neighbours: not a moving camera's frame
CACHE = 512  # gray pictures kept


@dataclass(frozen=True)
class _Own:
    """A frame's things in front of its own background, and the part of it that was measured."""

    front: Front
    measured: np.ndarray  # bool, where three or more neighbours reach


class MovingCamera:
    """The test between two frames of a camera that moves (see the module's text)."""

    def __init__(
        self,
        grays: Grays | None,
        table: FeatureTable,
        cfg: ScenesConfig,
        neighbours: dict[int, list[int]],
        views: dict[tuple[int, int], tuple[float, bool]] | None = None,
        workers: int = 1,
    ):
        self.grays, self.table, self.cfg, self.neighbours, self.workers = grays, table, cfg, neighbours, workers
        self._views = views or {}  # view_match of the pairs looked at, (i, j) with i < j
        self._grays: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._grays_lock = threading.Lock()  # `same_pairs` reads on several threads
        self._own: dict[int, _Own | None] = {}
        self._verdicts: dict[tuple[int, int], bool] = {}
        self._windows: dict[tuple[int, ...], np.ndarray] = {}

    @classmethod
    def none(cls, table: FeatureTable, cfg: ScenesConfig) -> MovingCamera:
        return cls(None, table, cfg, {})

    @classmethod
    def find(
        cls,
        grays: Grays,
        rows: np.ndarray,
        scenes: Scenes,
        store: VectorStore,
        vector_row: np.ndarray,
        cfg: ScenesConfig,
        exact_up_to: int,
        nprobe: int,
        workers: int = 1,
    ) -> MovingCamera:
        """The frames of moving cameras among `rows` (those no scene judges), with their neighbours."""
        table = grays.table
        if cfg.mode == "crops":
            return cls.none(table, cfg)
        rows = np.array([r for r in rows.tolist() if scenes.of(r) < 0 and vector_row[r] >= 0], np.int64)
        if len(rows) <= LEAST:
            return cls.none(table, cfg)
        vectors = vector_row[rows]
        found = ann.similar_pairs(
            lambda start, stop: store.rows(vectors[start:stop]),
            CANDIDATE,
            count=len(rows),
            exact_up_to=exact_up_to,
            nprobe=nprobe,
        )
        views = _views(table, [(int(rows[a]), int(rows[b])) for a, b, _ in found])
        near: dict[int, list[tuple[float, int]]] = {}
        for (i, j), (moved, clean) in views.items():
            if clean and NEAREST <= moved <= FURTHEST:
                near.setdefault(i, []).append((moved, j))
                near.setdefault(j, []).append((moved, i))
        neighbours = {i: _spread(sorted(found_i)) for i, found_i in near.items() if len(found_i) >= LEAST}
        log.debug("%d frames of moving cameras", len(neighbours))
        return cls(grays, table, cfg, neighbours, views, workers)

    @property
    def count(self) -> int:
        return len(self.neighbours)

    def same(self, i: int, j: int) -> bool:
        """False when the camera panned more than max_shift of the picture between the two;
        when both are frames of a moving camera and a thing in front moved further than
        max_shift of its size between them, or when only one of them is; True otherwise (the
        picture test decides)."""
        if self.panned(i, j):
            return False
        if i not in self.neighbours and j not in self.neighbours:
            return True
        if (i in self.neighbours) != (j in self.neighbours):
            return False  # a moving camera's frame and one that is not (a scene's, at a pan's end): no common ground
        key = (i, j) if i < j else (j, i)
        if key not in self._verdicts:
            self._verdicts[key] = self._test_pair(*key)
        return self._verdicts[key]

    def panned(self, i: int, j: int) -> bool:
        """Did the camera pan or tilt by more than max_shift of the picture between two
        pictures of one size (their thumbnails match cleanly that far apart,
        views.view_match)? A view moved that far is another picture, as a thing moved
        that share of its size is."""
        c = self.table.columns
        width, height = int(c["width"][i]), int(c["height"][i])
        if (width, height) != (int(c["width"][j]), int(c["height"][j])):
            return False
        key = (i, j) if i < j else (j, i)
        if key not in self._views:
            self._views[key] = view_match(self.table.thumb[key[0]], self.table.thumb[key[1]], width, height)
        moved, clean = self._views[key]
        return clean and moved > self.cfg.max_shift

    def same_pairs(self, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The pairs that are `same`. What their verdicts need - the own background of each
        frame of a moving camera among them, then the test of each pair of two - is made
        first, on `workers` threads (phase correlation, warping and medians let go of the
        interpreter's lock)."""
        self._views.update(_views(self.table, [(i, j) for i, j in pairs if (min(i, j), max(i, j)) not in self._views]))
        both = {(i, j) if i < j else (j, i) for i, j in pairs if i in self.neighbours and j in self.neighbours}
        todo = sorted(key for key in both - self._verdicts.keys() if not self.panned(*key))
        rows = sorted({row for key in todo for row in key} - self._own.keys())
        for row, own in zip(rows, ordered_map(self._learn, rows, self.workers, 2 * self.workers), strict=True):
            self._own[row] = own
        verdicts = ordered_map(lambda key: self._test_pair(*key), todo, self.workers, 4 * self.workers)
        for key, verdict in zip(todo, verdicts, strict=True):
            self._verdicts[key] = verdict
        return [(i, j) for i, j in pairs if self.same(i, j)]

    def _test_pair(self, i: int, j: int) -> bool:
        own_i, own_j = self._own_of(i), self._own_of(j)
        a, b = self._gray(i), self._gray(j)
        if own_i is None or own_j is None or a is None or b is None or a.shape != b.shape:
            return True
        dx, dy = self._offset(a, b)
        h, w = a.shape
        if math.hypot(dx, dy) > self.cfg.max_shift * max(h, w):
            return False
        # j's things in i's place; both frames' things only where both were measured
        both = own_i.measured & _moved(own_j.measured, dx, dy)
        things_i = [r for r in own_i.front.regions if _within(r.box, both)]
        things_j = [r for r in (r.moved(-round(dy), -round(dx)) for r in own_j.front.regions) if _within(r.box, both)]
        return (
            shift(Front(tuple(things_i), 0.0, 0.0), Front(tuple(things_j), 0.0, 0.0), self.cfg.max_shift)
            <= self.cfg.max_shift
        )

    def _own_of(self, row: int) -> _Own | None:
        if row not in self.neighbours:
            return None
        if row not in self._own:
            self._own[row] = self._learn(row)
        return self._own[row]

    def _learn(self, row: int) -> _Own | None:
        """The frame's things in front of the median of its neighbours lined up on it."""
        frame = self._gray(row)
        if frame is None:
            return None
        h, w = frame.shape
        stack, reach = [], np.zeros((h, w), np.uint8)
        for other in self.neighbours[row]:
            gray = self._gray(other)
            if gray is None or gray.shape != frame.shape:
                continue
            dx, dy = self._offset(frame, gray)
            back = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
            stack.append(cv2.warpAffine(gray, back, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
            reach += covered(frame.shape, dx, dy)  # where the moved frame has pixels of its own
        if len(stack) < LEAST:
            return None
        lined = np.stack(stack)
        measured = reach >= 3
        background = pixel_median(lined)
        mask = ((np.abs(frame - background) > noise_threshold(lined, background, self.cfg)) & measured).astype(np.uint8)
        regions = foreground_regions(mask, self.cfg)
        return _Own(Front(regions, sum(r.area for r in regions) / mask.size, 0.0), measured)

    def _offset(self, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        """How far `b`'s view lies from `a`'s, in pixels (phase correlation)."""
        # at half the size: a quarter of the work, to within a pixel of the stages' size
        a, b = a[::2, ::2], b[::2, ::2]
        window = self._windows.get(a.shape)
        if window is None:
            window = self._windows.setdefault(a.shape, cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F))
        (dx, dy), _ = cv2.phaseCorrelate(a * window, b * window)
        return 2 * float(dx), 2 * float(dy)

    def _gray(self, row: int) -> np.ndarray | None:
        with self._grays_lock:
            if row in self._grays:
                self._grays.move_to_end(row)
                return self._grays[row]
        gray = self.grays(row) if self.grays is not None else None
        smoothed = None if gray is None else smooth(gray)
        with self._grays_lock:
            self._grays[row] = smoothed
            if len(self._grays) > CACHE:
                self._grays.popitem(last=False)
        return smoothed


def _views(table: FeatureTable, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[float, bool]]:
    """view_match of each pair of pictures of one size, all at once, keyed (i, j) with i < j
    (pairs of two sizes left out)."""
    if not pairs:
        return {}
    width, height = table.columns["width"], table.columns["height"]
    ends = np.sort(np.array(pairs, np.int64), axis=1)
    first, second = ends[(width[ends[:, 0]] == width[ends[:, 1]]) & (height[ends[:, 0]] == height[ends[:, 1]])].T
    moved, clean = view_matches(
        table.thumb[first], table.thumb[second], width[first].astype(np.float64), height[first].astype(np.float64)
    )
    keys = zip(first.tolist(), second.tolist(), strict=True)
    return dict(zip(keys, zip(moved.tolist(), clean.tolist(), strict=True), strict=True))


def _spread(found: list[tuple[float, int]]) -> list[int]:
    """Up to NEIGHBOURS of the neighbours (sorted by how far their view lies), spread over that range."""
    step = max(1, len(found) // NEIGHBOURS)
    return [row for _, row in found[::step]][:NEIGHBOURS]


def _moved(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """A mask of one frame in the place of the other, whose view lies (dx, dy) away."""
    back = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
    return cv2.warpAffine(
        mask.astype(np.uint8),
        back,
        (mask.shape[1], mask.shape[0]),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    ).astype(bool)


def _within(box: tuple[int, int, int, int], measured: np.ndarray) -> bool:
    """Does the box lie (its centre) where both frames were measured?"""
    y = min(max((box[0] + box[2]) // 2, 0), measured.shape[0] - 1)
    x = min(max((box[1] + box[3]) // 2, 0), measured.shape[1] - 1)
    return bool(measured[y, x])
