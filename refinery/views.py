"""Where a camera's view went between two pictures, from their 16x16 gray thumbnails
(features.THUMB): a panning camera's frames (dedup/stages/moving.py, refinery frames) and the
pan rule that keeps a view moved further than max_shift apart from its copies."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from refinery.features import THUMB

VIEW_REACH = 4  # thumbnail pixels: a view's move is looked for up to a quarter of the picture
# A panned view's middle matches this well where it went. A mirrored or reshaped crop's seldom
# does: of the 960 near and semantic copies of the crop corpora (seeds 0 and 2), one mirrored
# copy matches its original cleanly more than 0.15 away.
VIEW_MATCH = 0.9


VIEW_PAIRS = 1024  # pairs view_matches works on at once (~3 MB of windows)
_MIDDLE = THUMB - 2 * VIEW_REACH  # side of the middle that is looked for
_PLACES = 2 * VIEW_REACH + 1  # where it is looked for, along each axis


def view_match(a: bytes | np.ndarray, b: bytes | np.ndarray, width: int, height: int) -> tuple[float, bool]:
    """How far a camera panned or tilted between two pictures (THUMB x THUMB gray thumbnails of
    two WIDTH x HEIGHT pictures), as a share of the picture's longer side: where the middle
    half of one matches the other best (normalised correlation, to a fraction of a thumbnail
    pixel, up to VIEW_REACH pixels away; each way, the better match counts); and whether it
    matches there cleanly (VIEW_MATCH or better: one view, moved or not, not a mirrored or
    reshaped object). Flat middles (nothing to follow): (0.0, False). One pair of view_matches."""
    moved, clean = view_matches(_thumb_rows([a]), _thumb_rows([b]), np.array([width]), np.array([height]))
    return float(moved[0]), bool(clean[0])


def view_matches(a: np.ndarray, b: np.ndarray, width: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """view_match of row k of `a` and of `b` (uint8 thumbnails, THUMB * THUMB a row) for pictures
    width[k] x height[k]: (moved, clean), one a pair. A moving camera's frames ask for tens of
    thousands of pairs; numpy does them VIEW_PAIRS at a time, in exact integer arithmetic."""
    moved, clean = np.zeros(len(a)), np.zeros(len(a), bool)
    for start in range(0, len(a), VIEW_PAIRS):
        part = slice(start, start + VIEW_PAIRS)
        x, y = (np.asarray(t[part], np.float32).reshape(-1, THUMB, THUMB) for t in (a, b))
        found = [_middle_in(y, x), _middle_in(x, y)]
        second = found[1][0] > found[0][0]  # the better match of the two ways; -inf where a middle is flat
        peak, dx, dy = (np.where(second, two, one) for one, two in zip(*found, strict=True))
        w, h = width[part], height[part]
        away = np.hypot(dx * w / THUMB, dy * h / THUMB) / np.maximum(np.maximum(w, h), 1)
        moved[part] = np.where(peak > -np.inf, away, 0.0)  # both middles flat: nothing to follow
        clean[part] = peak >= VIEW_MATCH
    return moved, clean


def _thumb_rows(thumbs: list[bytes | np.ndarray]) -> np.ndarray:
    return np.stack([np.frombuffer(t, np.uint8) if isinstance(t, bytes) else np.asarray(t).ravel() for t in thumbs])


def _middle_in(pictures: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the middle half of each picture matches its other best: (the normalised
    correlation there, OpenCV's TM_CCOEFF_NORMED; its shift x and y in pixels); a flat middle
    (deviation under one gray level) gives -inf.

    Every sum is of integers below 2**24, so float32 holds them exactly and the correlations
    do not depend on the order of the additions."""
    n, m, places = len(pictures), _MIDDLE, _PLACES
    middle = pictures[:, VIEW_REACH : THUMB - VIEW_REACH, VIEW_REACH : THUMB - VIEW_REACH]
    # cross[k, y, x]: the middle times the other's window at (y, x). rows[k, r, x, i] is row r
    # of the other from column x on times row i of the middle; the window at (y, x) sums i = r - y.
    rows = np.matmul(sliding_window_view(others, m, axis=2).reshape(n, THUMB * places, m), middle.transpose(0, 2, 1))
    rows = rows.reshape(n, THUMB, places, m)
    cross = rows[:, :places, :, 0].astype(np.float64)
    for r in range(1, m):
        cross += rows[:, r : r + places, :, r]
    area = m * m
    s_t = middle.sum((1, 2), dtype=np.float64)
    var_t = area * np.square(middle, dtype=np.float64).sum((1, 2)) - s_t * s_t  # area**2 times the variance
    s_w, s_ww = (_window_sums(p, m).astype(np.float64) for p in (others, np.square(others)))
    var_w = area * s_ww - s_w * s_w
    flat_w = var_w <= area * np.minimum(0.5, 10 * np.finfo(np.float32).eps * s_ww)  # OpenCV's rule: a flat window is 0
    spread = np.sqrt(np.maximum(var_w, 1.0) * np.maximum(var_t, 1.0)[:, None, None])  # no zeros: a flat one is left out
    match = np.where(flat_w, 0.0, (area * cross - s_t[:, None, None] * s_w) / spread)
    best = match.reshape(n, -1).argmax(1)
    y, x = np.divmod(best, places)
    k = np.arange(n)
    peak = match[k, y, x]
    inner_y, inner_x = (0 < y) & (y < places - 1), (0 < x) & (x < places - 1)  # a peak at the edge stays there
    ys, xs = np.clip(y, 1, places - 2), np.clip(x, 1, places - 2)
    dy = y - VIEW_REACH + np.where(inner_y, _vertex(match[k, ys - 1, x], peak, match[k, ys + 1, x]), 0.0)
    dx = x - VIEW_REACH + np.where(inner_x, _vertex(match[k, y, xs - 1], peak, match[k, y, xs + 1]), 0.0)
    return np.where(var_t >= area * area, peak, -np.inf), dx, dy


def _window_sums(pictures: np.ndarray, side: int) -> np.ndarray:
    """The sum of every side x side window of each (float32) picture: (n, h - side + 1, w - side + 1)."""
    h, w = pictures.shape[1:]
    rows, cols = (_band(len_, side) for len_ in (h, w))
    sums: np.ndarray = rows @ pictures @ cols.T
    return sums


@lru_cache(maxsize=4)
def _band(length: int, side: int) -> np.ndarray:
    """(length - side + 1, length) float32: row k is 1 over k..k + side - 1, a window's place."""
    offset = np.arange(length)[None, :] - np.arange(length - side + 1)[:, None]
    return ((offset >= 0) & (offset < side)).astype(np.float32)


def _vertex(left: np.ndarray, mid: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Where the parabola through three equally spaced values peaks, from the middle one (-0.5
    to 0.5); 0 where it bends up or is flat."""
    bend = left - 2 * mid + right
    bends = bend < 0
    return np.where(bends, np.clip((left - right) / (2 * np.where(bends, bend, -1.0)), -0.5, 0.5), 0.0)
