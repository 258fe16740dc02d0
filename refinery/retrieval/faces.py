"""The largest face in a picture, found with OpenCV's Haar cascade (the XML ships with OpenCV 4)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

CASCADE = "haarcascade_frontalface_default.xml"
MARGIN = 0.2  # grow the box by this share of its side on every edge: hair, chin and ears help
NO_FACE = "no face found"

_local = threading.local()  # a CascadeClassifier is not safe to share between threads


def _cascade() -> cv2.CascadeClassifier:
    if not hasattr(_local, "cascade"):
        path = Path(cv2.data.haarcascades) / CASCADE  # type: ignore[attr-defined]
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise RuntimeError(f"cannot load the face detector {path}; is opencv-python-headless 4.x installed?")
        _local.cascade = cascade
    mine: cv2.CascadeClassifier = _local.cascade  # a threading.local's attributes are untyped
    return mine


def largest_face(image: Image.Image) -> tuple[Image.Image | None, str]:
    """(the largest face, cropped with a margin, "") or (None, "no face found")."""
    gray = cv2.equalizeHist(np.asarray(image.convert("L")))
    side = min(gray.shape)
    boxes = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(max(24, side // 12),) * 2)
    if len(boxes) == 0:
        return None, NO_FACE
    x, y, w, h = max(boxes, key=lambda b: int(b[2]) * int(b[3]))
    dx, dy = int(w * MARGIN), int(h * MARGIN)
    box = (max(0, x - dx), max(0, y - dy), min(image.width, x + w + dx), min(image.height, y + h + dy))
    return image.crop(box), ""
