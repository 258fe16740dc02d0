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

import cv2
import numpy as np
from PIL import Image

from refinery.io.images import WORK_SIZE, Decoded

THUMB = 16  # side of the gray thumbnail kept per picture
# Bump when a feature is computed differently (decode size, WORK_SIZE, a formula): cached
# features of another version are not reused.
FEATURES_VERSION = 2


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
    edge_density: float  # share of Canny edge pixels at WORK_SIZE: detail, e.g. a readable plate
    dhash: int  # 64-bit gradient-sign hash
    phash: int  # 64-bit DCT hash
    thumb: bytes = b""  # THUMB x THUMB gray thumbnail, uint8: confirms near-exact copies
    compression: float = 0.0  # mean JPEG luminance quantiser (1 = quality 100); 0 = lossless or unknown

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def to_dict(self) -> dict:
        d = asdict(self)
        d["thumb"] = self.thumb.hex()
        return d

    @classmethod
    def from_dict(cls, data: dict) -> Features:
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
    """The picture as uint8 gray, longer side scaled to WORK_SIZE (never up)."""
    return scale_work(np.asarray(image.convert("L")))


def scale_work(gray: np.ndarray) -> np.ndarray:
    """A uint8 gray picture, longer side scaled to WORK_SIZE (never up)."""
    h, w = gray.shape
    scale = WORK_SIZE / max(h, w)
    if scale < 1:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    return gray


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the Laplacian: low when a picture has no edges left (blur).
    OpenCV's meanStdDev is 5x faster than numpy's var on the float64 Laplacian, same figure."""
    _, std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_64F))
    return float(std[0, 0]) ** 2


def dhash(gray: np.ndarray) -> int:
    """Difference hash: signs of horizontal gradients on a 9x8 thumbnail, 64 bits."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return _pack(small[:, 1:] > small[:, :-1])


def phash(gray: np.ndarray) -> int:
    """Perceptual hash: signs of the 8x8 lowest DCT frequencies (DC left out of the median)
    of a 32x32 thumbnail against their median, 64 bits."""
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    return _pack(low > np.median(low.flat[1:]))


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
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


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


def _pack(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


def measure(rel: str, data: bytes, sha256: str, decoded: Decoded) -> Features:
    """Every feature of a picture decoded from `data`."""
    gray = gray_work(decoded.image)
    edges = cv2.Canny(gray, 100, 200)
    return Features(
        path=rel, file_size=len(data), sha256=sha256,
        width=decoded.width, height=decoded.height,
        sharpness=laplacian_variance(gray),
        brightness=float(gray.mean()),
        edge_density=float(np.count_nonzero(edges)) / edges.size,
        dhash=dhash(gray), phash=phash(gray),
        thumb=cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA).tobytes(),
        compression=decoded.quantiser)


