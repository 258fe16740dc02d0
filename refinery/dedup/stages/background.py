"""A fixed camera's background and what stands in front of it (the method: scenes.py's
text, steps 2 and 3): the background learnt from a scene's frames - lined up on each other
(a camera's shake) and divided by the light on them (exposure, a cloud's shade) - with each
pixel's own noise, and a frame's regions in front of it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from refinery.config import ScenesConfig
from refinery.features import median, quantile

CLEAN = np.ones((3, 3), np.uint8)
Box = tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive)


@dataclass(frozen=True, slots=True)
class Region:
    """One connected region of a frame's foreground: its box (rows y0..y1, columns x0..x1,
    the ends excluded) and its area in pixels. Where it stands and how big it is are all the
    test asks of it."""

    y0: int
    x0: int
    y1: int
    x1: int
    area: int

    @property
    def box(self) -> Box:
        return self.y0, self.x0, self.y1, self.x1

    def moved(self, dy: int, dx: int) -> Region:
        return Region(self.y0 + dy, self.x0 + dx, self.y1 + dy, self.x1 + dx, self.area)


@dataclass(frozen=True, slots=True)
class Front:
    """What stands in front of its scene's background."""

    regions: tuple[Region, ...]
    foreground: float  # share of the frame
    extent: float  # the largest region's span, as a share of the frame's width or height
    boxes: tuple[Box, ...] = field(init=False)  # the regions' (made once: `shift` asks for them often)
    centres: tuple[tuple[float, float, int], ...] = field(init=False)  # and their centres and sizes

    def __post_init__(self) -> None:
        boxes = tuple(r.box for r in self.regions)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "centres", tuple(box_centre(b) for b in boxes))


def box_centre(box: Box) -> tuple[float, float, int]:
    """A box's centre (y, x) and its longer side."""
    y0, x0, y1, x1 = box
    return (y0 + y1) / 2, (x0 + x1) / 2, max(y1 - y0, x1 - x0)


def smooth(gray: np.ndarray) -> np.ndarray:
    """A 3x3 mean: a pixel's sensor noise and a JPEG's block edges count less."""
    return cv2.blur(gray, (3, 3))


@dataclass
class Background:
    """A scene's background, and each pixel's own noise."""

    median: np.ndarray
    threshold: np.ndarray  # per pixel, in gray levels
    light: _Light  # how a frame is lit, against the median
    aligner: _Aligner  # lines a frame up on the median

    @classmethod
    def learn(cls, frames: Sequence[np.ndarray], cfg: ScenesConfig) -> Background:
        stack = np.stack([smooth(f) for f in frames])
        # the reference the frames are registered on and their light measured against
        first = pixel_median(stack[:: max(1, len(stack) // 16)])
        align = _Aligner.on(first)
        shaken = False
        for k in range(len(stack)):
            frame = stack[k]
            stack[k] = lined = align(frame)
            shaken |= lined is not frame
        stack /= _Light.on(first, first > 10)(stack, refine=False)
        median = pixel_median(stack)
        # A camera none of whose sampled frames (up to `sample`, spread over the scene) moved
        # is taken as still: its frames are not registered (a third of a frame's cost), a
        # rare gust between the samples aside.
        aligner = _Aligner.on(median) if shaken else _Aligner.still(median)
        return cls(median, noise_threshold(stack, median, cfg), _Light.on(median, median > 10), aligner)

    def frames(self, grays: Sequence[np.ndarray], cfg: ScenesConfig) -> list[Front]:
        """What of each of `grays` (of the background's shape) stands in front of this background."""
        if not grays:
            return []
        lined = [self.aligner.line_up(smooth(gray)) for gray in grays]
        stack = np.stack([frame for frame, _, _ in lined])
        masks = (np.abs(stack / self.light(stack) - self.median) > self.threshold).view(np.uint8)
        out = []
        for mask, (_, dx, dy) in zip(masks, lined, strict=True):
            if dx or dy:
                mask[~covered(mask.shape, dx, dy)] = 0  # what the frame took from outside itself is no evidence
            regions = foreground_regions(mask, cfg)
            height, width = mask.shape
            extent = max((max((r.y1 - r.y0) / height, (r.x1 - r.x0) / width) for r in regions), default=0.0)
            out.append(Front(tuple(regions), sum(r.area for r in regions) / mask.size, extent))
        return out

    def frame(self, gray: np.ndarray, cfg: ScenesConfig) -> Front:
        """What of `gray` stands in front of this background."""
        return self.frames([gray], cfg)[0]


SHAKE = 0.03  # the largest shift a frame is registered by, as a share of its longer side (10 px at 320)
ALIGNED = 0.8  # a shift is taken where it brings the typical difference on the background's edges down by a fifth
SHAKE_EDGE = 40.0  # Sobel's answer on an edge of the background (a step of ~10 gray levels over two pixels)


@dataclass(frozen=True)
class _Aligner:
    """Lines frames up on a reference where a camera's shake (wind, traffic) moved them by up
    to SHAKE of their size: the shift phase correlation finds (the background dominates it;
    small things moving in front of it barely count), to within a third of a pixel. A shift
    under a quarter of a pixel is left as it is, and so is one that does not line up the
    reference's edges (the strongest fifth of its slopes: their median difference to the
    frame falls by less than a fifth) - over a plain background phase correlation can lock
    onto a thing moving in front of it (lining that up would hide its move), and there a
    shake changes nothing anyway. What depends on the reference alone is made once."""

    reference: np.ndarray
    window: np.ndarray  # Hanning window of the frame's size
    windowed: np.ndarray  # the reference times the window
    edges: np.ndarray | None  # every second pixel of every second row: on an edge; None: too plain to align on

    @classmethod
    def still(cls, reference: np.ndarray) -> _Aligner:
        """One that leaves every frame as it is."""
        return cls(reference, reference, reference, None)

    @classmethod
    def on(cls, reference: np.ndarray) -> _Aligner:
        if min(reference.shape) < 8:
            return cls.still(reference)
        window = cv2.createHanningWindow((reference.shape[1], reference.shape[0]), cv2.CV_32F)
        sampled = reference[::2, ::2]
        slope = np.abs(cv2.Sobel(sampled, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(sampled, cv2.CV_32F, 0, 1))
        edges = slope >= max(quantile(slope, 0.8), SHAKE_EDGE)
        return cls(reference, window, reference * window, edges if np.count_nonzero(edges) >= 30 else None)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.line_up(frame)[0]

    def line_up(self, frame: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The frame lined up on the reference, and the shift it was moved back by (0, 0: left as it was)."""
        if self.edges is None:
            return frame, 0.0, 0.0
        # The window is applied here: given to phaseCorrelate, OpenCV multiplies the inputs by it in place.
        (dx, dy), _ = cv2.phaseCorrelate(self.windowed, frame * self.window)
        if not (0.25 <= max(abs(dx), abs(dy)) <= SHAKE * max(frame.shape)):
            return frame, 0.0, 0.0
        back = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
        moved = cv2.warpAffine(
            frame, back, (frame.shape[1], frame.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        ref, before, after = self.reference[::2, ::2], frame[::2, ::2], moved[::2, ::2]
        gain = float(median(before[self.edges] / np.maximum(ref[self.edges], 1.0)))
        ref, before, after = gain * ref[self.edges], before[self.edges], after[self.edges]
        if median(np.abs(after - ref)) < ALIGNED * median(np.abs(before - ref)):
            return moved, dx, dy
        return frame, 0.0, 0.0


def covered(shape: tuple[int, ...], dx: float, dy: float) -> np.ndarray:
    """Where a picture of `shape` moved back by (dx, dy) still shows pixels of its own (bool)."""
    h, w = shape[:2]
    inside = np.zeros((h, w), bool)
    inside[_kept(h, dy), _kept(w, dx)] = True
    return inside


def _kept(length: int, shift: float) -> slice:
    """The pixels of a row (or column) of LENGTH that a picture moved back by SHIFT still covers."""
    cut = int(math.ceil(abs(shift)))
    return slice(0, max(0, length - cut)) if shift > 0 else slice(min(length, cut), length)


def noise_threshold(stack: np.ndarray, median: np.ndarray, cfg: ScenesConfig) -> np.ndarray:
    """Per pixel, how far from `median` a frame must be to show something in front of it:
    `noise` times the pixel's spread over `stack` (its median absolute deviation, as a
    standard deviation) plus `floor` gray levels."""
    spread = stack - median
    np.abs(spread, out=spread)
    return cfg.noise * (pixel_median(spread) * 1.4826) + cfg.floor


def foreground_regions(mask: np.ndarray, cfg: ScenesConfig) -> tuple[Region, ...]:
    """The connected regions of a foreground mask (uint8), cleaned (opened, closed), of at
    least `min_area` of the frame."""
    mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, CLEAN), cv2.MORPH_CLOSE, CLEAN)
    # 16-bit labels (a frame at the stages' size has under 2**16 regions): 2.5x faster
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_16U)
    smallest = max(1, int(round(cfg.min_area * mask.size)))
    return tuple(Region(y, x, y + h, x + w, area) for x, y, w, h, area in stats[1:].tolist() if area >= smallest)


def pixel_median(stack: np.ndarray) -> np.ndarray:
    """The per-pixel median of a stack of frames (the upper middle for an even count):
    np.partition finds it seven times faster than np.median, which also averages two."""
    middle = len(stack) // 2
    # each pixel's values side by side: partitioning along the stack's first axis strides
    # through memory, a third slower than copying it this way round first
    along = np.ascontiguousarray(stack.reshape(len(stack), -1).T)
    along.partition(middle, axis=1)  # in place: the copy is ours
    return np.ascontiguousarray(along[:, middle]).reshape(stack.shape[1:])  # not a view that keeps `along`


LIGHT_CELLS = 16  # the light is measured on a grid this many cells across (20 px at 320)
LIGHT_STEP = 2  # px: the light is read on every 2nd pixel of every 2nd row (100 a cell at 320 px)
LIGHT_REFINE = 0.05  # a pixel off the coarse light by more is an object, not light


@dataclass(frozen=True)
class _Light:
    """How much brighter each pixel of a frame is lit than `reference`: auto-exposure, a
    cloud's shade, a patch of sun. The median ratio in each cell of a grid LIGHT_CELLS
    across (objects smaller than half a cell aside), each cell then the median of its 3x3
    cells (an object that fills a cell is voted out), then refined in each cell by the median
    of what is left off that, counting only pixels within LIGHT_REFINE of it, where they are
    half the cell or more (the 3x3 median flattens the middle of a shadow's band; an object
    stands further off, and a cell it mostly fills keeps the coarse light); spread smoothly
    over the frame. Cells with nothing lit take the whole frame's gain. What depends on the
    reference alone is made once (a scene measures every frame against one), and frames are
    measured a stack at a time (numpy's calls on one small frame cost more than their sums,
    and hold the interpreter's lock)."""

    reference: np.ndarray
    lit: np.ndarray
    grid: tuple[int, int, int, int]  # rows, cols and each cell's height and width, px; 0 cells: one gain for all
    under: np.ndarray | None  # the reference where the light is read (NaN: not lit, never counted)

    @classmethod
    def on(cls, reference: np.ndarray, lit: np.ndarray) -> _Light:
        h, w = reference.shape
        cols = LIGHT_CELLS if w >= h else max(1, round(LIGHT_CELLS * w / h))
        rows = max(1, round(cols * h / w))
        ch, cw = h // rows // LIGHT_STEP * LIGHT_STEP, w // cols // LIGHT_STEP * LIGHT_STEP
        if ch < 2 * LIGHT_STEP or cw < 2 * LIGHT_STEP or not lit.any():
            return cls(reference, lit, (0, 0, 0, 0), None)
        sampled = np.s_[: rows * ch : LIGHT_STEP, : cols * cw : LIGHT_STEP]
        under = np.where(lit[sampled], np.maximum(reference[sampled], 1e-3), np.nan).astype(np.float32)
        return cls(reference, lit, (rows, cols, ch, cw), under)

    def __call__(self, frames: np.ndarray, refine: bool = True) -> np.ndarray:
        """The light on each of `frames` (N x H x W), N x H x W."""
        rows, cols, ch, cw = self.grid
        if self.under is None:
            return np.stack([np.full_like(f, _gain(f, self.reference, self.lit)) for f in frames])
        ratio = frames[:, : rows * ch : LIGHT_STEP, : cols * cw : LIGHT_STEP] / self.under
        grids = _cell_medians(ratio, rows, cols, np.nan)
        counted = np.isfinite(grids)
        gain_only = ~counted.any(axis=(1, 2))
        for k in np.flatnonzero(~counted.all(axis=(1, 2)) & ~gain_only).tolist():
            grids[k][~counted[k]] = np.median(grids[k][counted[k]])  # nothing lit in a cell: the frame's own gain
        if rows >= 3 and cols >= 3:
            grids = np.stack([cv2.medianBlur(grid, 3) for grid in grids])
        if refine:
            size = (ratio.shape[2], ratio.shape[1])
            off = ratio / np.stack([cv2.resize(grid, size, interpolation=cv2.INTER_LINEAR) for grid in grids])
            grids *= _cell_medians(np.where(np.abs(off - 1) <= LIGHT_REFINE, off, np.nan), rows, cols, 1.0, least=0.5)
        light = _spread(grids, ch, cw, frames.shape[1], frames.shape[2])
        for k in np.flatnonzero(gain_only).tolist():
            light[k] = _gain(frames[k], self.reference, self.lit)
        return light


def _spread(grids: np.ndarray, ch: int, cw: int, h: int, w: int) -> np.ndarray:
    """Grids of cells CH x CW px (N x rows x cols) as N x H x W pictures: linear between the
    cells' centres, and carried on linearly from the outer ones to the frame's border (held
    flat there, a light that changes near the border would turn into foreground)."""
    grids = np.maximum(_extend(grids), 0.05)
    _, rows, cols = grids.shape
    # the cells cover the frame to within a cell: what is left past the outer ones, held flat
    short = (max(0, ch + h - rows * ch), max(0, cw + w - cols * cw))
    out = np.empty((len(grids), h, w), np.float32)
    for k, grid in enumerate(grids):
        whole = cv2.resize(grid, (cols * cw, rows * ch), interpolation=cv2.INTER_LINEAR)
        if any(short):
            whole = cv2.copyMakeBorder(whole, 0, short[0], 0, short[1], cv2.BORDER_REPLICATE)
        out[k] = whole[ch : ch + h, cw : cw + w]
    return out


def _extend(grids: np.ndarray) -> np.ndarray:
    """Grids (N x rows x cols) with one more cell on every side, on the line through the last
    two (numpy's "odd" reflection, rows first; written out, as np.pad costs a frame 0.1 ms)."""
    n, rows, cols = grids.shape
    if min(rows, cols) < 2:
        return np.pad(grids, ((0, 0), (1, 1), (1, 1)), mode="reflect", reflect_type="odd")
    out = np.empty((n, rows + 2, cols + 2), grids.dtype)
    out[:, 1:-1, 1:-1] = grids
    out[:, 0, 1:-1], out[:, -1, 1:-1] = 2 * grids[:, 0] - grids[:, 1], 2 * grids[:, -1] - grids[:, -2]
    out[:, :, 0], out[:, :, -1] = 2 * out[:, :, 1] - out[:, :, 2], 2 * out[:, :, -2] - out[:, :, -3]
    return out


def _cell_medians(values: np.ndarray, rows: int, cols: int, fill: float, least: float = 0.0) -> np.ndarray:
    """The median of `values` (N x H x W; NaN: not counted) in each cell of a ROWS x COLS
    grid, N x ROWS x COLS float32 (the lower middle for an even count); FILL where a cell has
    nothing to count, or under LEAST of its pixels. By one sort of every cell: np.nanmedian
    takes a masked path on cells this small, 20x slower."""
    n, h, w = values.shape
    cells = values.reshape(n, rows, h // rows, cols, w // cols).transpose(0, 1, 3, 2, 4).reshape(n, rows, cols, -1)
    cells = np.sort(cells, axis=3)  # NaN sorts last
    counted = np.count_nonzero(~np.isnan(cells), axis=3)
    middle = np.take_along_axis(cells, np.maximum(counted - 1, 0)[..., None] // 2, axis=3)[..., 0]
    enough = counted > max(0, int(least * cells.shape[3]) - 1)
    return np.where(enough & (middle > 0.05), middle, fill).astype(np.float32)


def _gain(frame: np.ndarray, reference: np.ndarray, lit: np.ndarray) -> float:
    """How much brighter `frame` is than `reference`, by the median ratio (objects aside)."""
    if not lit.any():
        return 1.0
    gain = float(np.median(frame[lit][::7] / reference[lit][::7]))  # a seventh of the pixels is plenty
    return gain if gain > 0.05 else 1.0
