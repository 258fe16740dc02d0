"""Per-file features, all from one read and one decode of each file.

The bytes are read once: SHA-256 comes from them, and the decode works on them. From the
decoded picture come a small gray copy (quality scores, edge density, perceptual hashes)
and, for pictures that pass the quality stage, the model input. Stages only read these
records; they never open a file again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from PIL import Image

from refinery.io.images import WORK_SIZE, Decoded

THUMB = 16  # side of the gray thumbnail kept per picture
# Bump when a feature is computed differently (decode size, WORK_SIZE, a formula): cached
# features of another version are not reused.
FEATURES_VERSION = 5  # 5: a lossy WebP, HEIF or AVIF has a compression (io/images.UNKNOWN_LOSS)


@dataclass(slots=True)  # slots: no per-object dict, a third less memory per file
class Features:
    """What refinery knows about one readable image file."""

    path: str  # relative to the scanned folder, with forward slashes
    file_size: int  # bytes
    sha256: str
    width: int
    height: int
    sharpness: float  # variance of the Laplacian of the gray picture at WORK_SIZE
    brightness: float  # mean gray level, 0..255
    edge_density: float  # share of pixels at WORK_SIZE at the centre of a strong edge (Edges.density): detail
    dhash: int  # 64-bit gradient-sign hash
    phash: int  # 64-bit DCT hash
    thumb: bytes = b""  # THUMB x THUMB gray thumbnail, uint8: confirms near-exact copies
    # mean JPEG luminance quantiser (1 = quality 100); 0 = lossless; io/images.UNKNOWN_LOSS: lossy, how much unknown
    compression: float = 0.0
    # What the quality stage judges (quality_figures): detail lost to blur, to black, to white.
    edge_width: float = 0.0  # px at WORK_SIZE: how wide even the sharpest edges are (0: no edges to say)
    smear_width: float = 0.0  # px: the sharpest edges' width in the orientation where they are widest
    smear_angle: float = 0.0  # degrees (0 = horizontal): the direction of that widest orientation
    cross_width: float = 0.0  # px: the sharpest edges' width across that direction (a smear leaves those sharp)
    light: float = 0.0  # gray level its brightest parts reach (99.5th percentile, noise averaged away)
    shade: float = 0.0  # gray level its darkest parts reach, leaving out what is clipped to white
    white: float = 0.0  # share of the picture clipped to white with nothing in it
    white_edge: float = 1.0  # share of that white's border that is a crisp edge (a background's is)
    clipped: float = 0.0  # share of the picture with every colour channel clipped to white
    clipped_colour: float = 0.0  # share of that region's border where one channel is clipped, another not
    detail: float = 0.0  # share of the picture with any detail in it
    noise: float = 0.0  # gray levels of sensor noise (standard deviation), measured where it is smooth

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["thumb"] = self.thumb.hex()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Features:
        """The inverse of to_dict."""
        return cls(**{**data, "thumb": bytes.fromhex(data["thumb"])})


@contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """OpenCV without its own thread pool for the block: refinery's workers already keep every
    core busy with one picture each, and OpenCV's threads would only fight them."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def gray_work(image: Image.Image) -> np.ndarray:
    """The picture (RGB, or gray "L") as uint8 gray, longer side scaled to WORK_SIZE (never up)."""
    if image.mode == "L":
        return scale_work(np.asarray(image))
    return gray_of(np.asarray(image if image.mode == "RGB" else image.convert("RGB")))  # convert copies even RGB


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """An RGB array as uint8 gray at WORK_SIZE: OpenCV's luma, PIL's "L" weights (frames
    decode video with OpenCV and take the same gray)."""
    return scale_work(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def scale_work(gray: np.ndarray) -> np.ndarray:
    """A uint8 gray picture, longer side scaled to WORK_SIZE (never up)."""
    h, w = gray.shape
    scale = WORK_SIZE / max(h, w)
    if scale < 1:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return gray


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the Laplacian: low when a picture has no edges left (blur).
    OpenCV's meanStdDev is 5x faster than numpy's var, and sums in float64 whatever it is
    given: the Laplacian of uint8 fits in int16 (|4 x 255|), the same figure at a third of the cost."""
    _, std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_16S))
    return float(std[0, 0]) ** 2


def dhash(gray: np.ndarray) -> int:
    """Difference hash: signs of horizontal gradients on a 9x8 thumbnail, 64 bits."""
    small = np.rint(area_mean(gray, 9, 8))
    return _pack(small[:, 1:] > small[:, :-1])


def area_mean(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    """`gray` shrunk to width x height (float32), each cell the mean of the area it covers, as
    cv2.resize's INTER_AREA (to within its rounding). Two small matrix products: 7x faster than
    INTER_AREA where the sides do not divide (its general path), as for dhash's 9x8. (A picture
    under 9x8 is enlarged to the same overlap means, where INTER_AREA would repeat pixels.)"""
    shrunk: np.ndarray = (
        _area_weights(gray.shape[0], height) @ gray.astype(np.float32) @ _area_weights(gray.shape[1], width).T
    )
    return shrunk


@lru_cache(maxsize=64)
def _area_weights(source: int, target: int) -> np.ndarray:
    """target x source: row i holds the share of each source cell in [i, i + 1) * source / target."""
    bounds = np.arange(target + 1) * source / target
    cells = np.arange(source)
    overlap = np.minimum(cells + 1, bounds[1:, None]) - np.maximum(cells, bounds[:-1, None])
    weights: np.ndarray = np.clip(overlap, 0, None)
    weights = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
    weights.flags.writeable = False  # shared by every caller through the cache
    return weights


def phash(gray: np.ndarray) -> int:
    """Perceptual hash: signs of the 8x8 lowest DCT frequencies (DC left out of the median)
    of a 32x32 thumbnail against their median, 64 bits."""
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    rest = low.flat[1:]  # 63 values: their median is the middle one, found without a full sort
    return _pack(low > np.partition(rest, len(rest) // 2)[len(rest) // 2])


def normalized_thumbs(thumbs: list[bytes] | np.ndarray) -> np.ndarray:
    """Gray thumbnails (bytes, or uint8 rows) as zero-mean, unit-length rows: the dot product
    of two rows is their Pearson correlation. A flat thumbnail gives a zero row."""
    if len(thumbs) == 0:
        return np.zeros((0, THUMB * THUMB), np.float32)
    if isinstance(thumbs, np.ndarray):
        x = thumbs.reshape(len(thumbs), -1).astype(np.float32)
    else:
        x = np.frombuffer(b"".join(thumbs), np.uint8).reshape(len(thumbs), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    rows: np.ndarray = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return rows


def thumb_correlation(a: bytes, b: bytes) -> float:
    """Pearson correlation of two gray thumbnails: ~1 for the same picture (even re-encoded,
    resized, recoloured or blurred), lower once an object differs. Flat thumbnails: 1 if equal."""
    x, y = normalized_thumbs([a, b])
    return normalized_correlation(x, y, a == b)


def normalized_correlation(x: np.ndarray, y: np.ndarray, same_bytes: bool) -> float:
    """thumb_correlation from rows of normalized_thumbs."""
    if not x.any() or not y.any():  # a flat thumbnail has no shape to correlate: equal or not
        return float(same_bytes)
    return float(x @ y)


# What quality_figures measures, in the order of Features' fields.
QUALITY_FIGURES = (
    "edge_width",
    "smear_width",
    "smear_angle",
    "cross_width",
    "light",
    "shade",
    "white",
    "white_edge",
    "clipped",
    "clipped_colour",
    "detail",
    "noise",
)
# Quality figures are measured on the gray work picture (WORK_SIZE across) and on a copy
# reduced 4x more, where noise is averaged away and what is left is what a person sees.
EDGE_CONTRAST = 24  # gray levels an edge must span to tell its width (noise and texture do not)
CANNY_LOW = 20  # Canny's low threshold: a slope of ~2.5 gray levels a pixel (its Sobel answers 8x)
STEEP_LEVELS = 512  # steepness (1 / width, 0..1) is counted in this many levels
SHARPEST = 0.97  # the quantile of steepness that stands for an orientation's sharpest edges
EDGE_WINDOW = 11  # px: the neighbourhood whose range is an edge's contrast (wider than a blurred edge)
ORIENTATIONS = 8  # bins of edge orientation: motion blur widens the edges of one orientation only
MIN_EDGES = 30  # edge (or smooth) pixels a figure needs before it says anything
# Edge pixels an orientation needs before its width counts. Not a share of all edges: a smear
# leaves few edges across its path, and those few are what shows it.
ORIENTATION_EDGES = 60
BLUR_EVIDENCE = 400  # edge pixels a picture needs before its blur is judged
BLUR_SIDE = 160  # px: in a smaller picture (a thumbnail) a gradient is a few pixels wide: no proof of blur
EMPTY = 3  # gray levels: a 3x3 neighbourhood of the reduced copy spanning less holds nothing
DETAIL = 6  # gray levels: one spanning this much holds something
CLIPPED_WHITE = 225  # a reduced pixel above this with nothing around it is lost to white
NOISE_RANGE = 40  # gray levels: a 3x3 neighbourhood spanning more holds an edge, not just noise
CRISP_STEP = 60  # gray levels a clipped region's border must step by within 5 reduced pixels


STRONG_EDGE = 200  # Sobel L1 answer (gray levels x 8) of an edge the edge density counts


@dataclass(frozen=True, slots=True)
class Edges:
    """A gray work picture's Sobel gradients (int16) and where Canny finds edge centres at
    thresholds low enough for a blurred edge's gentle slope. Computed once per picture: the
    quality figures and the edge density both read it."""

    gx: np.ndarray
    gy: np.ndarray
    centres: np.ndarray  # flat indices of Canny's edge pixels

    @classmethod
    def of(cls, gray: np.ndarray) -> Edges:
        # Canny's own border, so that Canny on these gradients is Canny on the picture.
        gx = cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.Sobel(gray, cv2.CV_16S, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        return cls(gx, gy, np.flatnonzero(cv2.Canny(gx, gy, CANNY_LOW, 2 * CANNY_LOW) > 0))

    def density(self) -> float:
        """The share of pixels at the centre of a strong edge (Sobel's answer 200: a step of
        about 50 gray levels over two pixels): detail, e.g. a readable plate. Strong edges
        only, as Canny's 200 at 100/200 (its thinning does not depend on its thresholds, so
        these centres hold those): a blurred or smeared copy of a picture keeps some weak edges,
        and the keep rule must see it has lost its strong ones."""
        x, y = self.gx.ravel()[self.centres], self.gy.ravel()[self.centres]
        strong = np.count_nonzero(np.abs(x.astype(np.int32)) + np.abs(y.astype(np.int32)) >= STRONG_EDGE)
        return strong / self.gx.size


def quality_figures(gray: np.ndarray, edges: Edges | None = None) -> dict[str, float]:
    """What the quality stage judges of a gray work picture: the width of its sharpest edges
    (in the orientation where they are narrowest, and in the one where they are widest), how
    far its light and shade reach, how much of it is clipped to white or holds any detail,
    and its noise. `edges`: Edges.of(gray) where the caller has it. About 0.6 ms at
    WORK_SIZE on one core, half of it Canny: arithmetic runs on the edge centres only."""
    if edges is None:
        edges = Edges.of(gray)
    kernel = np.ones((EDGE_WINDOW, EDGE_WINDOW), np.uint8)
    darkest = cv2.erode(gray, kernel)
    contrast = cv2.subtract(cv2.dilate(gray, kernel), darkest)
    # Each edge at its centre only (Canny's thinning): a busy or striped background must not
    # outnumber the few edges that show how sharp the picture is.
    at = edges.centres[contrast.ravel()[edges.centres] >= EDGE_CONTRAST]
    counts = _steepness_counts(edges.gx.ravel()[at], edges.gy.ravel()[at], contrast.ravel()[at])
    width, smear, direction, cross = edge_widths(counts, max(gray.shape))
    # The darkest tone beside each edge (thin strokes count): an object on white keeps its
    # dark outlines, a blown-out picture has none left.
    beside = (
        np.bincount(darkest.ravel()[at], minlength=256)
        if len(at) >= MIN_EDGES
        else cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    )
    h, w = gray.shape
    reduced = cv2.resize(gray, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    three = np.ones((3, 3), np.uint8)
    spread = cv2.subtract(cv2.dilate(reduced, three), cv2.erode(reduced, three))
    clipped = (spread < EMPTY) & (reduced > CLIPPED_WHITE)
    return {
        "edge_width": width,
        "smear_width": smear,
        "smear_angle": direction,
        "cross_width": cross,
        "light": quantile(reduced, 0.995),
        "shade": _histogram_quantile(beside, 0.05),
        "white": float(clipped.mean()),
        "white_edge": _crisp_border(reduced, clipped),
        "detail": float((spread >= DETAIL).mean()),
        "noise": noise_level(gray, contrast < NOISE_RANGE),
    }


CLIP = 250  # a channel at or above this is clipped
UNCLIPPED = 220  # a channel under this is not near it
COLOUR_SIDE = 80  # px: colour clipping is judged on the picture sampled about this many pixels across


def colour_clipping(rgb: np.ndarray) -> dict[str, float]:
    """How much of a colour picture is clipped to white in every channel, and how much of that
    region's border is clipped in one channel but not in another. Exposure pushed past white
    clips a colour's strongest channel first, so a blown-out colour picture fades into its
    white through clipped colours; a high-key picture's colours fade to white together, and a
    white background meets its object at an outline. Sampled every few pixels (large regions
    are what matter): a few hundredths of a millisecond. Gray pictures say nothing here."""
    step = max(1, max(rgb.shape[:2]) // COLOUR_SIDE)
    channels = cv2.split(np.ascontiguousarray(rgb[::step, ::step]))
    brightest, darkest = channels[0], channels[0]
    for channel in channels[1:]:
        brightest, darkest = cv2.max(brightest, channel), cv2.min(darkest, channel)
    white = darkest >= CLIP
    border = (cv2.dilate(white.view(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~white
    colour = (brightest >= CLIP) & (darkest < UNCLIPPED)
    return {"clipped": float(white.mean()), "clipped_colour": float(colour[border].mean()) if border.any() else 0.0}


def _steepness_counts(gx: np.ndarray, gy: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Edge pixels counted by orientation (ORIENTATIONS rows of 180 / ORIENTATIONS degrees,
    the first centred on 0; an edge and its opposite are one) and steepness (STEEP_LEVELS
    columns over 0..1): slope over the contrast it climbs, 1 / the edge's width."""
    if len(gx) == 0:
        return np.zeros((ORIENTATIONS, STEEP_LEVELS))
    magnitude, angle = cv2.cartToPolar(gx.astype(np.float32), gy.astype(np.float32), angleInDegrees=True)
    steep = magnitude / (8 * contrast.astype(np.float32).reshape(magnitude.shape))  # Sobel answers 8x the slope
    # Counted in half-orientations first, then each orientation gathers the two halves around
    # its centre and the two opposite: integer gradients put many edges at exact multiples of
    # 45 degrees, which must not sit on a border between two bins.
    halves = cv2.calcHist([angle, steep], [0, 1], None, [4 * ORIENTATIONS, STEEP_LEVELS], [0, 360, 0, 1])
    b = 2 * np.arange(ORIENTATIONS)
    opposite = 2 * ORIENTATIONS  # half-orientations from a direction to its opposite
    return (halves[b - 1] + halves[b] + halves[b - 1 + opposite] + halves[b + opposite]).astype(np.float64)


def _histogram_quantile(counts: np.ndarray, q: float) -> float:
    """The bin where the q-quantile of what `counts` counts falls."""
    cumulative = np.cumsum(counts)
    return float(np.searchsorted(cumulative, q * cumulative[-1]))


def _crisp_border(reduced: np.ndarray, clipped: np.ndarray) -> float:
    """The share of the clipped region's border where the picture steps by a crisp edge (60
    gray levels within 5 reduced pixels): a white background ends at its object's outline, a
    blown-out sky or face fades into what is left of the picture. 1 where nothing is clipped."""
    region = clipped.astype(np.uint8)
    border = (cv2.dilate(region, np.ones((3, 3), np.uint8)) > 0) & ~clipped
    if not border.any():
        return 1.0
    kernel = np.ones((5, 5), np.uint8)
    step = cv2.subtract(cv2.dilate(reduced, kernel), cv2.erode(reduced, kernel))
    return float((step[border] >= CRISP_STEP).mean())


def edge_widths(counts: np.ndarray, side: int) -> tuple[float, float, float, float]:
    """(width, smear, angle) from `counts`, edge centres by orientation (rows, 180 / rows
    degrees each, the first centred on 0) and steepness (columns: slope over contrast, 1 /
    width, 0..1): how wide the sharpest edges are, in pixels, in the orientation where they are narrowest and in the one
    where they are widest, that one's direction in degrees, and how wide they are across it
    (the narrowest orientation within 22.5 degrees of square to it). A clean step is 2 px wide, a
    Gaussian defocus of sigma s about 2.5 s; defocus widens every orientation, motion blur the
    orientations along its path. (0, 0, 0) when too few edges say it (a smooth picture, a
    thumbnail `side` px across); cross 0 where no orientation across has edges."""
    total = counts.sum()
    if side < BLUR_SIDE or total < BLUR_EVIDENCE:
        return 0.0, 0.0, 0.0, 0.0
    orientations, levels = counts.shape
    cumulative = np.cumsum(counts, axis=1)
    sharpest = np.count_nonzero(cumulative < SHARPEST * cumulative[:, -1:], axis=1)  # each row's quantile
    widths = {
        b: levels / (int(sharpest[b]) + 0.5) for b in range(orientations) if cumulative[b, -1] >= ORIENTATION_EDGES
    }
    if not widths:
        return 0.0, 0.0, 0.0, 0.0
    # A smear widens the orientations on both sides of its own too (by the cosine of 22.5
    # degrees): an orientation counts as wide only as far as both neighbours are, so one bin
    # of a drawing's soft curves, or a sharp subject that has no edges of one orientation in
    # front of a defocused background, is no motion.
    smear = {
        b: min(w, widths.get((b - 1) % orientations, 0.0), widths.get((b + 1) % orientations, 0.0))
        for b, w in widths.items()
    }
    widest = max(smear, key=smear.__getitem__)
    # A smear leaves the edges across its path sharp; a soft subject in front of one sharp
    # pattern (a blurred planet on stripes) leaves every orientation but the pattern's soft.
    square = orientations // 2
    across = [widths[b] for b in ((widest + square + d) % orientations for d in (-1, 0, 1)) if b in widths]
    return min(widths.values()), smear[widest], widest * 180 / orientations, min(across, default=0.0)


def noise_level(gray: np.ndarray, smooth: np.ndarray) -> float:
    """Standard deviation of the noise (Immerkaer 1996, "Fast noise variance estimation"): the
    mean absolute answer to a mask that cancels planes and ramps, taken only where the picture
    is `smooth` (an edge or a letter answers the mask too). 0 when too little is smooth."""
    if min(gray.shape) < 3 or np.count_nonzero(smooth) < MIN_EDGES:
        return 0.0
    # The mask [[1, -2, 1], [-2, 4, -2], [1, -2, 1]] is Sobel's second derivative in x and y.
    response = np.abs(cv2.Sobel(gray, cv2.CV_16S, 2, 2, ksize=3))
    return float(np.sqrt(np.pi / 2) / 6 * cv2.mean(response, mask=smooth.view(np.uint8))[0])


def quantile(values: np.ndarray, q: float) -> float:
    """The q-quantile of `values` (any shape; no interpolation), by a partial sort: 5x
    np.percentile's speed."""
    flat = values.ravel()
    k = int(q * (len(flat) - 1))
    return float(np.partition(flat, k)[k])


def median(values: np.ndarray) -> np.floating:
    """np.median of a 1-D array (of what it holds; no NaN checks), by one partial sort: a
    third of np.median's time on the few thousand values a shaken frame's edges give, where
    its own checks cost more than the sort."""
    half = len(values) // 2
    middle: np.floating
    if len(values) % 2:
        middle = np.partition(values, half)[half]
    else:
        two = np.partition(values, (half - 1, half))
        middle = (two[half - 1] + two[half]) / two.dtype.type(2)
    return middle


def _pack(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


def measure(rel: str, data: bytes, sha256: str, decoded: Decoded, gray: np.ndarray | None = None) -> Features:
    """Every feature of a picture decoded from `data` (`gray`: its gray_of, if made already)."""
    rgb = np.asarray(decoded.image)  # RGB: decode flattens every mode to it
    gray = gray_of(rgb) if gray is None else gray
    edges = Edges.of(gray)
    return Features(
        path=rel,
        file_size=len(data),
        sha256=sha256,
        width=decoded.width,
        height=decoded.height,
        sharpness=laplacian_variance(gray),
        brightness=cv2.mean(gray)[0],  # 8x numpy's mean of uint8
        edge_density=edges.density(),
        dhash=dhash(gray),
        phash=phash(gray),
        thumb=cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA).tobytes(),
        compression=decoded.quantiser,
        **quality_figures(gray, edges),
        **colour_clipping(rgb),
    )
