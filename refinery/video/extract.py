"""thin_video: one video read once, to its end, and each sampled frame given to the decisions
(refinery/video/thin.py), which write the frames to keep into a folder."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import cv2

from refinery.config import Config
from refinery.errors import CannotWrite, NameRefused, OutGone, UnreadableVideo
from refinery.video.folder import FramesFolder, frame_stem, gone, name_max
from refinery.video.read import finite, opened, sample
from refinery.video.results import VideoResult
from refinery.video.thin import Thinner

# (video name, frame count, frames per second) -> what counts the frames read
FrameProgress = Callable[[str, int, float], Callable[[int], None]]


def thin_video(
    video: Path,
    out: Path,
    cfg: Config,
    every: int = 1,
    fps: float = 0.0,
    jpeg_quality: int = 92,
    progress: FrameProgress | None = None,
    stop: threading.Event | None = None,
    thumbnails: bool = False,
    name: str | None = None,
) -> VideoResult:
    """Read `video` once and write the frames to keep into `out`; what was written and what
    was skipped, and why. Every `every`-th frame is sampled, or `fps` frames a second.
    `progress(name, frames, fps)` is told of the video and returns what counts frames read.
    With `thumbnails`, each skipped span keeps a thumbnail for the review page. The frames'
    names begin with `name` (the run's name for the video, video_names), else its stem.
    A video that cannot be read, or whose frames cannot all be written, is the result's
    `error`; with `cannot_write`, frames cannot be written into `out` at all (the folder went
    away: `out_gone`)."""
    result = VideoResult(str(video), name or Path(video).stem, pictures={} if thumbnails else None)
    out = Path(out)
    try:
        folder = os.open(out, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        result.error, result.cannot_write, result.out_gone = f"{gone(out)}; not read", True, True
        return result
    try:
        with opened(Path(video)) as capture:
            if not capture.isOpened():
                result.error = "not a video OpenCV can read"
                return result
            stem = frame_stem(result.name, name_max(folder))
            thinner = Thinner(FramesFolder(out, folder, stem), cfg, result)
            _thin(capture, thinner, every, fps, jpeg_quality, progress, stop)
    except UnreadableVideo as e:
        result.error = str(e)
    finally:
        os.close(folder)
    return result


def _thin(
    capture: cv2.VideoCapture,
    thinner: Thinner,
    every: int,
    fps: float,
    jpeg_quality: int,
    progress: FrameProgress | None,
    stop: threading.Event | None,
) -> None:
    """Read the opened video to its end (or to `stop`) through `thinner`; what went wrong is
    its result's `error`."""
    result = thinner.result
    rate = finite(capture.get(cv2.CAP_PROP_FPS))
    total = int(finite(capture.get(cv2.CAP_PROP_FRAME_COUNT)))  # raw streams say -1, or nonsense
    result.fps = round(rate, 3)
    step = every if not fps else max(1, round(rate / fps)) if rate > 0 else 1
    advance = progress(Path(result.video).name, total, rate) if progress else (lambda n: None)
    try:
        index = _read(capture, thinner, step, rate, jpeg_quality, advance, stop)
        result.interrupted = stop is not None and stop.is_set()
        thinner.flush(final=True)
    except CannotWrite as e:  # a full disk, a folder gone: every frame written so far is whole
        result.error = f"{e}; the frames from {e.t:.3f} s on were not decided"
        result.cannot_write, result.out_gone = not isinstance(e, NameRefused), isinstance(e, OutGone)
        return
    if not result.interrupted:
        if index == 0:
            result.error = "no frame could be read (empty, truncated or not a video)"
        elif total and index < total - 1:
            result.error = (
                f"decoding stopped at frame {index} of {total} (t={index / rate:.1f} s)"
                if rate
                else f"decoding stopped at frame {index} of {total}"
            )


def _read(
    capture: cv2.VideoCapture,
    thinner: Thinner,
    step: int,
    rate: float,
    jpeg_quality: int,
    advance: Callable[[int], None],
    stop: threading.Event | None,
) -> int:
    """Read the video to its end (or to `stop`), giving every `step`-th frame to `thinner`;
    the number of frames read."""
    index = 0
    while not (stop is not None and stop.is_set()):
        if index % step:
            if not capture.grab():
                break
        else:
            ok, bgr = capture.read()
            if not ok:
                break
            thinner.result.frames = index + 1
            thinner.add(sample(bgr, index, rate, jpeg_quality))
        index += 1
        thinner.result.frames = index
        advance(1)
    return index
