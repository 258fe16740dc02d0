"""Video in, thinned frames out: `refinery frames VIDEO... --out DIR`.

A fixed camera's video is read once, frame after frame (OpenCV's VideoCapture, its FFmpeg
backend), and only the frames a person would keep reach the disk, as JPEG named by video and
time (`STEM_t000123.400.jpg`). Each sampled frame goes through the dedup funnel's tests, as
far as a stream allows:

- quality: blurred, too dark, burnt out (the quality stage's thresholds);
- the scene test (refinery/dedup/stages/scenes.py): the video's background is learnt from
  its first sampled frames (a per-pixel median, each frame over its gain, with each pixel's
  own noise) and learnt again from a spread of recent frames as the video goes on (the light
  changes over an hour); a frame is skipped when it shows the same things at the same places
  as one of the last kept frames (every region of their foregrounds overlapping by
  `scenes.min_overlap`) and its 16x16 thumbnail correlates with that frame's as the near
  stage asks (`near.min_correlation`); else it is kept.

Memory stays bounded whatever the length: the frames a background is learnt from, the last
kept frames' foregrounds, and a window of WINDOW frames decided together. Online decisions
only look back: a window's frames are compared with the last LOOK_BACK kept frames, so a
scene that comes back after many other kept frames is kept again (batch dedup would remove
it), and a kept frame is never replaced by a more typical frame of a later window.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from refinery.config import Config
from refinery.dedup.groups import cover_groups
from refinery.dedup.stages.quality import judge
from refinery.dedup.stages.scenes import Background, Frame, overlap
from refinery.features import THUMB, gray_work, laplacian_variance, normalized_thumbs
from refinery.io.fileio import create_exclusive

log = logging.getLogger(__name__)

# FFmpeg's own messages ("[mjpeg @ 0x...] overread 8") would interleave with refinery's one
# line per bad video: quiet unless the user asked for them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

LEARN_FROM = 32  # sampled frames a video's background is first learnt from
RELEARN_EVERY = 256  # sampled frames between two learnings of the background
LOOK_BACK = 32  # kept frames a new frame is compared with
# Frames decided together, as dedup decides a folder (each group keeps its most typical
# frame), held as the JPEGs they would be written as: 256 frames of 1920x1080 at quality 92
# take ~100 MB. vtest.avi keeps 456 frames with a window of 32, 442 with 128, 414 with 256
# (refinery dedup on all its frames: 404).
WINDOW = 256


@dataclass
class Written:
    """A frame kept: the file it went to, its time and its number in the video."""

    name: str
    t: float
    frame: int


@dataclass
class Span:
    """Consecutive sampled frames skipped for one reason."""

    start: float  # seconds
    end: float
    frames: int  # sampled frames in it
    kept_as: str | None  # the kept frame they duplicate (None: a quality reject)
    why: str


@dataclass
class VideoResult:
    video: str
    fps: float = 0.0
    frames: int = 0  # frames read
    sampled: int = 0
    written: list[Written] = field(default_factory=list)
    skipped: list[Span] = field(default_factory=list)
    error: str = ""  # why the video could not be read (to the end)
    interrupted: bool = False

    def to_dict(self) -> dict:
        return {"video": self.video, "fps": self.fps, "frames": self.frames, "sampled": self.sampled,
                "written": [vars(w) for w in self.written], "skipped": [vars(s) for s in self.skipped],
                "error": self.error or None, "interrupted": self.interrupted}


@dataclass
class _Measures:
    width: int
    height: int
    brightness: float
    sharpness: float


@dataclass
class _Sample:
    """A sampled frame waiting for (or being given) its decision."""

    t: float
    frame: int
    jpeg: bytes  # the frame as it would be written
    gray: np.ndarray  # at the stages' size, float32
    thumb: np.ndarray  # THUMB x THUMB gray, normalised (its dot product is a correlation)
    measures: _Measures  # what the quality stage looks at


@dataclass
class _Kept:
    name: str
    foreground: Frame
    thumb: np.ndarray


def frame_name(stem: str, t: float) -> str:
    """`STEM_t000123.400.jpg`: the video's stem and the frame's time in seconds."""
    return f"{stem}_t{t:010.3f}.jpg"


class _Thinner:
    """The decisions for one video, frame after frame."""

    def __init__(self, video: Path, out: Path, cfg: Config, jpeg_quality: int, result: VideoResult):
        self.video, self.out, self.cfg, self.jpeg_quality, self.result = video, out, cfg, jpeg_quality, result
        self.background: Background | None = None
        self.waiting: list[_Sample] = []  # before the first background
        self.recent: deque[np.ndarray] = deque(maxlen=LEARN_FROM)  # grays to learn the next background from
        self.kept: deque[_Kept] = deque(maxlen=LOOK_BACK)
        self.since_learnt = 0
        self.span_open = False  # the last frame decided was skipped: a span is open

    def add(self, sample: _Sample) -> None:
        if self.result.sampled % max(1, RELEARN_EVERY // LEARN_FROM) == 0 or self.background is None:
            self.recent.append(sample.gray)
        self.result.sampled += 1
        self.waiting.append(sample)
        if self.background is None:
            if len(self.waiting) >= LEARN_FROM:
                self.flush()
            return
        self.since_learnt += 1
        if self.since_learnt >= RELEARN_EVERY and len(self.recent) >= 3:
            self.background, self.since_learnt = Background.learn(list(self.recent), self.cfg.scenes), 0
        if len(self.waiting) >= WINDOW:
            self.flush()

    def flush(self) -> None:
        """Decide the frames that wait (learning the first background from them if there is
        none yet)."""
        if self.background is None and self.waiting:
            grays = [s.gray for s in self.waiting]
            self.background = Background.learn(grays, self.cfg.scenes) if len(grays) >= 3 else None
        window, self.waiting = self.waiting, []
        if window:
            self.decide(window)

    def decide(self, window: list[_Sample]) -> None:
        """Decide a window of consecutive frames as dedup decides a folder: quality first;
        then a frame the same as a frame kept before goes; the rest are covered by their most
        typical frames (the one most others in the window are the same as), which are kept."""
        verdict: list[tuple[str | None, str] | None] = [None] * len(window)  # (kept_as, why), None = keep
        fronts: list[Frame | None] = []
        for k, sample in enumerate(window):
            why = judge(sample.measures, self.cfg.quality)
            front = self.background.frame(sample.gray, self.cfg.scenes) if self.background is not None else None
            if front is not None and front.foreground > self.cfg.scenes.max_foreground:
                front = None  # no view of the background: it cannot be judged, it stays
            fronts.append(None if why else front)
            if why:
                verdict[k] = (None, why)
            elif front is not None:
                for kept in reversed(self.kept):
                    iou = self.same(sample.thumb, front, kept.thumb, kept.foreground)
                    if iou is not None:
                        verdict[k] = (kept.name, f"the same frame as {kept.name} (foreground overlap {iou:.2f})")
                        break
        open_rows = [k for k in range(len(window)) if verdict[k] is None and fronts[k] is not None]
        edges = [(a, b) for i, a in enumerate(open_rows) for b in open_rows[i + 1:]
                 if self.same(window[a].thumb, fronts[a], window[b].thumb, fronts[b]) is not None]
        keeper_of = {i: keeper for keeper, subjects in cover_groups(edges, lambda k: (k,)) for i in subjects}
        names: dict[int, str] = {}
        for k, sample in enumerate(window):  # in time order: a keeper is written before its span
            if verdict[k] is None and k not in keeper_of:
                name = self.write(sample)
                if name:
                    names[k] = name
                    front = fronts[k]
                    if front is not None:
                        self.kept.append(_Kept(name, front, sample.thumb))
            elif verdict[k] is None:
                keeper = keeper_of[k]
                iou = overlap(fronts[k], fronts[keeper])  # type: ignore[arg-type]
                name = names.get(keeper) or frame_name(self.video.stem, window[keeper].t)
                self.skip(sample, name, f"the same frame as {name} (foreground overlap {iou:.2f})")
            else:
                self.skip(sample, *verdict[k])  # type: ignore[misc]

    def same(self, thumb_a: np.ndarray, front_a: Frame | None, thumb_b: np.ndarray, front_b: Frame | None
             ) -> float | None:
        """The foreground overlap of two frames if they are one picture (as the near stage's
        thumbnail test and the scene test find), else None."""
        if front_a is None or front_b is None or float(thumb_a @ thumb_b) < self.cfg.near.min_correlation:
            return None
        iou = overlap(front_a, front_b)
        return iou if iou >= self.cfg.scenes.min_overlap else None

    def skip(self, sample: _Sample, kept_as: str | None, why: str) -> None:
        """Add the frame to the span of skipped frames it continues, or start one."""
        kind = kept_as or why.split(":")[0]  # the same kept frame, or the same quality reason
        spans = self.result.skipped
        if self.span_open and spans and (spans[-1].kept_as or spans[-1].why.split(":")[0]) == kind:
            spans[-1].end, spans[-1].frames = sample.t, spans[-1].frames + 1
        else:
            spans.append(Span(sample.t, sample.t, 1, kept_as, why))
        self.span_open = True

    def write(self, sample: _Sample) -> str | None:
        """The frame as JPEG under its name in `out` (a new file: never over anything)."""
        name = frame_name(self.video.stem, sample.t)
        self.span_open = False
        folder = os.open(self.out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd, tmp = create_exclusive(folder, name, 0o644)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(sample.jpeg)
                    f.flush()
                    os.fsync(f.fileno())
                os.link(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            except FileExistsError:
                log.error("%s: already there; not overwritten", self.out / name)
                return None
            finally:
                os.unlink(tmp, dir_fd=folder)
        finally:
            os.close(folder)
        self.result.written.append(Written(name, round(sample.t, 3), sample.frame))
        return name


def thin_video(video: Path, out: Path, cfg: Config, every: int = 1, fps: float = 0.0, jpeg_quality: int = 92,
               progress: Callable[[str, int], Callable[[int], None]] | None = None,
               stop: threading.Event | None = None) -> VideoResult:
    """Read `video` once and write the frames to keep into `out`; what was written and what
    was skipped, and why. Every `every`-th frame is sampled, or `fps` frames a second."""
    result = VideoResult(str(video))
    if not Path(video).is_file():
        result.error = "no such file"
        return result
    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            result.error = "not a video OpenCV can read"
            return result
        rate = capture.get(cv2.CAP_PROP_FPS) or 0.0
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        result.fps = round(rate, 3)
        step = every if not fps else max(1, round(rate / fps)) if rate > 0 else 1
        advance = progress(Path(video).name, total) if progress else (lambda n: None)
        thinner = _Thinner(Path(video), Path(out), cfg, jpeg_quality, result)
        index = 0
        while not (stop is not None and stop.is_set()):
            if index % step:
                if not capture.grab():
                    break
            else:
                ok, bgr = capture.read()
                if not ok:
                    break
                thinner.add(_sample(bgr, index, rate, jpeg_quality))
            index += 1
            advance(1)
        result.frames = index
        result.interrupted = stop is not None and stop.is_set()
        thinner.flush()
        if not result.interrupted:
            if index == 0:
                result.error = "no frame could be read (empty, truncated or not a video)"
            elif total and index < total - 1:
                result.error = f"decoding stopped at frame {index} of {total} (t={index / rate:.1f} s)" if rate else \
                    f"decoding stopped at frame {index} of {total}"
        return result
    finally:
        capture.release()


def _sample(bgr: np.ndarray, index: int, rate: float, jpeg_quality: int) -> _Sample:
    """A decoded frame as the tests see a picture: gray at the stages' size, its thumbnail,
    its brightness and sharpness."""
    image = Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))
    gray = gray_work(image)
    thumb = normalized_thumbs(cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA)[None])[0]
    height, width = bgr.shape[:2]
    measures = _Measures(width, height, float(gray.mean()), laplacian_variance(gray))
    _, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    return _Sample(index / rate if rate > 0 else float(index), index, jpeg.tobytes(), gray.astype(np.float32), thumb,
                   measures)
