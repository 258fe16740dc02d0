"""A video opened for OpenCV without its name ever reaching OpenCV or FFmpeg, and a decoded
frame as the tests see a picture (gray at the stages' size, its thumbnail, its quality
figures, and the JPEG it would be written as)."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from refinery.dedup.stages.quality import Measures
from refinery.errors import UnreadableVideo
from refinery.features import THUMB, colour_clipping, laplacian_variance, quality_figures, scale_work
from refinery.io.scan import IMAGE_SUFFIXES, sniff

# FFmpeg's own messages ("[mjpeg @ 0x...] overread 8") would interleave with refinery's one
# line per bad video: quiet unless the user asked for them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@dataclass
class Sample:
    """A sampled frame waiting for (or being given) its decision."""

    t: float
    frame: int
    jpeg: bytes  # the frame as it would be written
    gray: np.ndarray  # at the stages' size, uint8 (a quarter of float32's memory)
    small: np.ndarray  # THUMB x THUMB gray, uint8
    measures: Measures  # what the quality stage looks at


@contextmanager
def opened(video: Path) -> Iterator[cv2.VideoCapture]:
    """The video opened for OpenCV's FFmpeg backend through /dev/fd/N of a descriptor of it,
    never by its own name: OpenCV crashes (SIGSEGV) on a name that is not UTF-8, and FFmpeg
    reads "concat:..." or "%d" in a name as instructions. The descriptor is checked to be a
    regular file first (a FIFO would wait forever for a writer). Raises UnreadableVideo."""
    try:
        fd = os.open(video, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnreadableVideo(
            "no such file (a broken symbolic link)" if os.path.islink(video) else "no such file"
        ) from None
    except OSError as e:
        raise UnreadableVideo(f"cannot open: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UnreadableVideo("a folder, not a video")
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableVideo("not a regular file (a FIFO, a device or a socket): not read")
        if st.st_size == 0:
            raise UnreadableVideo("no frame could be read (an empty file)")
        if _a_picture(os.pread(fd, 32, 0), Path(video).suffix.lower()):
            raise UnreadableVideo("a picture, not a video: `refinery dedup` judges pictures")
        api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
        level = cv2.utils.logging.getLogLevel()  # a file that is not a video: our one line, not OpenCV's warning
        cv2.utils.logging.setLogLevel(min(level, cv2.utils.logging.LOG_LEVEL_ERROR))
        try:
            capture = cv2.VideoCapture(f"/dev/fd/{fd}", api)
        finally:
            cv2.utils.logging.setLogLevel(level)
        try:
            yield capture
        finally:
            capture.release()
    finally:
        os.close(fd)


def _a_picture(head: bytes, suffix: str) -> bool:
    """A still picture by its first bytes and its name (OpenCV would read it as a one-frame
    video). A GIF may be an animation, and a raw MJPEG stream starts like a JPEG: neither is
    refused unless it is named like a still picture."""
    kind = sniff(head)
    return kind is not None and kind != "gif" and suffix in IMAGE_SUFFIXES


def finite(value: float) -> float:
    """A figure OpenCV reports, or 0 where it is not a positive number (NaN, -1, inf)."""
    return value if math.isfinite(value) and value > 0 else 0.0


def sample(bgr: np.ndarray, index: int, rate: float, jpeg_quality: int) -> Sample:
    """A decoded frame as the tests see a picture: gray at the stages' size, its thumbnail,
    what the quality stage judges of it."""
    gray = scale_work(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))  # PIL's "L" weights, as dedup decodes
    small = cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    height, width = bgr.shape[:2]
    measures = Measures(
        width, height, laplacian_variance(gray), **quality_figures(gray), **colour_clipping(bgr)
    )  # BGR or RGB: the channels' order does not matter there
    _, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    return Sample(index / rate if rate > 0 else float(index), index, jpeg.tobytes(), gray, small, measures)
