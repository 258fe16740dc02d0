"""Where a removed frame of one fixed camera differs from its keeper, for the review page: the
removed frame in gray, red where the two differ, a box around each such region."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Frames of one camera: a pixel differs where its gray level, each frame over its own mean
# level, differs by more than this (0.15: a person on a square; JPEG noise and a 5% change of
# light stay under it).
DIFF_THRESHOLD = 0.15
DIFF_MIN_PIXELS = 3  # smaller specks of difference get no box


def _level(image: Image.Image) -> np.ndarray:
    """Gray levels, lightly smoothed, over their mean: two frames of one camera under a little
    more or less light compare equal."""
    gray = np.asarray(image.convert("L").filter(ImageFilter.BoxBlur(1)), dtype=np.float32)
    return gray / max(float(gray.mean()), 1.0)


def difference(removed: Image.Image, keeper: Image.Image) -> Image.Image:
    """`removed` dimmed to gray, red where it differs from `keeper` (another frame of the same
    camera; resized to match if it is not the same size), each such region boxed in red."""
    if keeper.size != removed.size:
        keeper = keeper.resize(removed.size, Image.Resampling.BILINEAR)
    mask = (np.abs(_level(removed) - _level(keeper)) > DIFF_THRESHOLD).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))  # JPEG specks out
    gray = np.asarray(removed.convert("L"), dtype=np.float32) * 0.55 + 60
    pixels = np.repeat(gray[:, :, None], 3, axis=2).astype(np.uint8)
    pixels[mask > 0] = (235, 30, 30)
    out = Image.fromarray(pixels)
    draw = ImageDraw.Draw(out)
    count, _, boxes, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    for x, y, w, h, area in boxes[1:count].tolist():
        if area >= DIFF_MIN_PIXELS:
            draw.rectangle([x - 2, y - 2, x + w + 1, y + h + 1], outline=(255, 0, 0))
    return out
