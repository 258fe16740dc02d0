"""Video in, thinned frames out: `refinery frames VIDEO... --out DIR`.

A video is read once, frame after frame (OpenCV's VideoCapture, its FFmpeg backend), and only
the frames a person would keep reach the disk, as JPEG named by video and time
(`STEM_t000123.400.jpg`). Each sampled frame goes through the dedup funnel's tests, as far as
a stream allows:

- quality: blurred, too dark, burnt out (the quality stage's thresholds);
- the scene test (refinery/dedup/stages/scenes.py), for the frames that show the camera's
  view: frames are decided a window at a time, on a background learnt afresh for each window
  (a per-pixel median, each frame over the light on it, with each pixel's own noise) from a spread
  of the last WINDOW frames: people who stop for a few seconds are voted out, and the light
  may change over an hour. A frame is skipped when it shows the same things at the same
  places as a kept frame (every thing within `scenes.max_shift` of its own size of where it
  stood there) and its 16x16 thumbnail correlates with that frame's by
  `scenes.video_correlation` (dedup's near and semantic stages propose its pairs; a video
  has no embeddings);
- the near stage's picture test for the frames that do not show the background's view (a
  cut to another shot, a camera that moves) or mostly show something in front of it: pHash
  or dHash close and thumbnails correlating by `near.min_correlation`.
Else a frame is kept. There is no semantic stage (no embeddings): on a film, frames of one
shot that only the embedding finds alike are all kept.

Memory stays bounded whatever the length: a window of WINDOW frames (as the JPEGs they would
be written as, and in gray at the stages' size), the grays a background is learnt from, and
the last kept frames' foregrounds. Online decisions only look back: a window's frames are
compared with the last LOOK_BACK kept frames, so a scene that comes back after many other
kept frames is kept again (batch dedup would remove it), and a kept frame is never replaced
by a more typical frame of a later window. A group still going on at a window's end waits
for the next window, so that a window's end does not split it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from refinery.config import Config
from refinery.dedup.evidence import near_copy
from refinery.dedup.groups import components, cover_groups
from refinery.dedup.stages.background import Background, Frame
from refinery.dedup.stages.quality import Measures, judge
from refinery.dedup.stages.scenes import shift, view_distances
from refinery.errors import CannotWrite, NameRefused, OutGone, UnreadableVideo
from refinery.features import (
    THUMB,
    colour_clipping,
    dhash,
    laplacian_variance,
    normalized_correlation,
    normalized_thumbs,
    phash,
    quality_figures,
    scale_work,
)
from refinery.io.fileio import create_exclusive, link_as_new
from refinery.review.page import THUMB_QUALITY, THUMB_SIDE
from refinery.views import view_matches

log = logging.getLogger(__name__)

# FFmpeg's own messages ("[mjpeg @ 0x...] overread 8") would interleave with refinery's one
# line per bad video: quiet unless the user asked for them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

# Frames decided together, as dedup decides a folder (each group keeps its most typical
# frame), held as the JPEGs they would be written as (256 frames of 1920x1080 at quality 92:
# ~100 MB) and in gray at 320 pixels (~20 MB). On vtest.avi (refinery dedup on all its frames
# keeps 392): 410 kept with windows of 128, 395 with 256, 401 with 512 (docs/frames.md).
WINDOW = 256
CARRY = 32  # frames at a window's end whose groups may go on in the next window
LEARN_FROM = 32  # a background is learnt from the last LEARN_FROM of every LEARN_EVERY-th frame:
LEARN_EVERY = 8  # a spread over the last WINDOW frames (25 s at 10 fps)
LOOK_BACK = 256  # kept frames a new frame is compared with (~20 KB each)

NAME_MAX = 255  # bytes in a file name (ext4, XFS, Btrfs, APFS); less where the folder's file system says so
# Bytes of a frame's name besides its stem: "_t" and the time to 115 days, ".jpg", and room
# for the ".N" that free_name_at adds when the name is taken.
_NAME_TAIL = 32


_Verdict = tuple[str | None, str, str | None, float | None]  # (the kept frame it duplicates, why, test, figure)
# (video name, frame count, frames per second) -> what counts the frames read
FrameProgress = Callable[[str, int, float], Callable[[int], None]]


@dataclass
class Written:
    """A frame kept: the file it went to, its time and its number in the video."""

    name: str
    t: float
    frame: int
    instead_of: str | None = None  # its own name, when that was taken in `out` (then `name` is a free one)


@dataclass
class Span:
    """Consecutive sampled frames skipped for one reason."""

    start: float  # seconds
    end: float
    frames: int  # sampled frames in it
    kept_as: str | None  # the kept frame they duplicate (None: a quality reject)
    why: str  # of its first frame
    test: str | None = None  # "scene" (largest move of a thing) or "picture" (thumbnail correlation)
    score: float | None = None  # the test's weakest figure in the span


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
    cannot_write: bool = False  # the error is `out`'s (a full disk, the folder gone): the next videos would fail too
    out_gone: bool = False  # the output folder was renamed or removed
    taken: list[str] = field(default_factory=list)  # names of frames to keep that were taken in `out` (never
    # written over: each of those frames went to a free name, its Written's `name`)
    # With thumbnails asked for: a span's number -> a JPEG thumbnail of its frame least like
    # its keeper (or of its first frame), THUMB_SIDE pixels, ~5 KB. Not in the report.
    pictures: dict[int, bytes] | None = None

    def to_dict(self) -> dict:
        written = [{k: v for k, v in vars(w).items() if v is not None} for w in self.written]  # instead_of if taken
        return {"video": self.video, "fps": self.fps, "frames": self.frames, "sampled": self.sampled,
                "written": written, "skipped": [vars(s) for s in self.skipped],
                "taken": self.taken, "error": self.error or None, "interrupted": self.interrupted}


@dataclass
class _Sample:
    """A sampled frame waiting for (or being given) its decision."""

    t: float
    frame: int
    jpeg: bytes  # the frame as it would be written
    gray: np.ndarray  # at the stages' size, uint8 (a quarter of float32's memory)
    small: np.ndarray  # THUMB x THUMB gray, uint8
    measures: Measures  # what the quality stage looks at


@dataclass
class _Look:
    """What the tests compare of a frame (as dedup's near stage and scene test do)."""

    thumb: np.ndarray  # THUMB x THUMB gray, normalised (its dot product is a correlation)
    small: np.ndarray  # THUMB x THUMB gray, uint8 (as it is: where a panning camera's view went)
    shape: tuple[int, int]  # the frame's height and width (its thumbnail is square)
    phash: int
    dhash: int
    front: Frame | None  # what stands in front of the background; None: the picture test judges it


@dataclass
class _Kept:
    name: str
    look: _Look


def frame_name(stem: str, t: float) -> str:
    """`STEM_t000123.400.jpg`: the video's stem (frame_stem) and the frame's time in seconds."""
    return f"{stem}_t{t:010.3f}.jpg"


def frame_stem(video: Path, name_max: int = NAME_MAX) -> str:
    """What a video's frame names start with: its stem, in UTF-8, short enough that every frame
    name fits in `name_max` bytes. Bytes that are not UTF-8 become U+FFFD; a stem that had to
    change (cut, or bytes replaced) ends with "~" and 8 hex digits of the stem it was, so two
    videos whose names differ only there keep apart."""
    raw = os.fsencode(Path(video).stem)
    stem = raw.decode("utf-8", "replace")
    room = max(name_max - _NAME_TAIL, 16)
    if stem.encode() == raw and len(raw) <= room:
        return stem
    tag = "~" + hashlib.sha256(raw).hexdigest()[:8]
    return fit_bytes(stem, room - len(tag)) + tag


def fit_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, never inside a character."""
    return text.encode()[:limit].decode("utf-8", "ignore")


class _Thinner:
    """The decisions for one video, frame after frame."""

    def __init__(self, out: Path, folder: int, stem: str, cfg: Config, jpeg_quality: int, result: VideoResult):
        self.out, self.cfg, self.jpeg_quality, self.result = out, cfg, jpeg_quality, result
        self.folder, self.stem = folder, stem  # `out` opened; the frames' names begin with the stem
        self.folder_id = _identity(os.fstat(folder))
        self.background: Background | None = None
        self.view: np.ndarray | None = None  # the background's THUMB x THUMB thumbnail
        self.waiting: list[_Sample] = []  # frames not decided yet
        self.recent: deque[np.ndarray] = deque(maxlen=LEARN_FROM)  # grays to learn the next background from
        self.kept: deque[_Kept] = deque(maxlen=LOOK_BACK)
        self.span_open = False  # the last frame decided was skipped: a span is open

    def add(self, sample: _Sample) -> None:
        if self.result.sampled % LEARN_EVERY == 0:
            self.recent.append(sample.gray)
        self.result.sampled += 1
        self.waiting.append(sample)
        if len(self.waiting) >= WINDOW:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Decide the frames that wait, on a background learnt from the recent frames; unless
        `final`, the groups still going on at the end wait for the next window."""
        window, self.waiting = self.waiting, []
        if not window:
            return
        if len(self.recent) >= 3 and self.cfg.scenes.mode != "crops":
            self.background = Background.learn([g.astype(np.float32) for g in self.recent], self.cfg.scenes)
            self.view = cv2.resize(self.background.median, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
        self.waiting = self.decide(window, final)

    def decide(self, window: list[_Sample], final: bool) -> list[_Sample]:
        """Decide a window of consecutive frames as dedup decides a folder: quality first;
        then a frame the same as a frame kept before goes; the rest are covered by their most
        typical frames (the one most others in the window are the same as), which are kept.
        Unless `final`, the frames from the first one of a group that reaches the window's
        last CARRY frames on are not decided: they are returned, to be decided with the next
        frames (at most half the window, so that a still scene cannot hold frames forever)."""
        verdict, looks = self.judge(window)
        open_rows = [k for k in range(len(window)) if verdict[k] is None]
        pairs = [(a, b) for i, a in enumerate(open_rows) for b in open_rows[i + 1:]]
        views = self.views([(looks[a], looks[b]) for a, b in pairs])  # type: ignore[misc]
        tests = {(a, b): hit for (a, b), view in zip(pairs, views, strict=True)
                 if (hit := self.same(looks[a], looks[b], view)) is not None}  # type: ignore[arg-type]
        cut = len(window) if final else _cut(len(window), list(tests))
        edges = [(a, b) for a, b in tests if b < cut]  # a < b
        keeper_of = {i: keeper for keeper, subjects in cover_groups(edges, lambda k: (k,)) for i in subjects}
        names: dict[int, str] = {}  # a keeper -> the name it was written under
        for k, sample in enumerate(window[:cut]):  # in time order (a keeper may come after frames it stands for)
            if verdict[k] is None and k not in keeper_of:
                name = names[k] = names.get(k) or self.store(sample)
                self.span_open = False
                self.kept.append(_Kept(name, looks[k]))  # type: ignore[arg-type]
            elif verdict[k] is None:
                keeper = keeper_of[k]
                if keeper not in names:  # written now: the span names the file it went to
                    names[keeper] = self.store(window[keeper])
                name = names[keeper]
                test, score = tests[min(k, keeper), max(k, keeper)]
                self.skip(sample, name, duplicate_why(name, test, score), test, score)
            else:
                self.skip(sample, *verdict[k])  # type: ignore[misc]
        return window[cut:]

    def judge(self, window: list[_Sample]) -> tuple[list[_Verdict | None], list[_Look | None]]:
        """Each frame's verdict - None (open), or (the kept frame it duplicates or None, why,
        the test, its figure) - and what the tests compare of it (None: a quality reject)."""
        verdict: list[_Verdict | None] = [None] * len(window)
        looks: list[_Look | None] = [None] * len(window)
        for k, sample in enumerate(window):
            defect = judge(sample.measures, self.cfg.quality)
            if defect:
                verdict[k] = (None, defect.text, None, None)
                continue
            looks[k] = _Look(normalized_thumbs(sample.small[None])[0], sample.small, sample.gray.shape,
                             phash(sample.gray), dhash(sample.gray),
                             self.foreground(sample))
        kept = list(reversed(self.kept))  # the latest first
        thumbs = np.stack([one.look.thumb for one in kept]) if kept else np.zeros((0, THUMB * THUMB), np.float32)
        least = min(self.cfg.scenes.video_correlation, self.cfg.near.min_correlation)
        for k, look in enumerate(looks):
            if look is None:
                continue
            rows = np.flatnonzero(thumbs @ look.thumb >= least).tolist()  # the others cannot be the same
            for row, view in zip(rows, self.views([(look, kept[row].look) for row in rows]), strict=True):
                hit = self.same(look, kept[row].look, view)
                if hit is not None:
                    verdict[k] = (kept[row].name, duplicate_why(kept[row].name, *hit), *hit)
                    break
        return verdict, looks

    def foreground(self, sample: _Sample) -> Frame | None:
        """What stands in front of the background, if the frame shows the background's view
        (as dedup's scenes: `scenes.view_difference`) and not mostly something in front of it."""
        if self.background is None or self.view is None:
            return None
        if view_distances(sample.small[None], self.view)[0] > self.cfg.scenes.view_difference:
            return None  # another view (a cut, the camera turned): the picture test judges it
        front = self.background.frame(sample.gray.astype(np.float32), self.cfg.scenes)
        return front if front.foreground <= self.cfg.scenes.max_foreground else None

    def same(self, a: _Look, b: _Look, view: tuple[float, bool] | None) -> tuple[str, float] | None:
        """(the test, its figure) if the two frames are one picture, else None: by the scene
        test when both show the background's view, by the near stage's picture test when
        neither does (hashes close, thumbnails correlating, the camera panned at most
        max_shift of the picture: `view`, from `views`); never a frame of the view and one outside it."""
        correlation, most = float(a.thumb @ b.thumb), self.cfg.scenes.max_shift
        if a.front is not None and b.front is not None:
            if correlation < self.cfg.scenes.video_correlation:
                return None
            moved = shift(a.front, b.front, most)
            return ("scene", moved) if moved <= most else None
        if view is None:
            return None
        moved, clean = view
        return None if clean and moved > most else ("picture", correlation)  # a camera that panned that far

    def views(self, pairs: list[tuple[_Look, _Look]]) -> list[tuple[float, bool] | None]:
        """For each pair the picture test judges (neither frame shows the background's view,
        their hashes are close and their thumbnails correlate), where the camera's view went
        (views.view_match; all at once); None for the others."""
        near = self.cfg.near
        asked = [k for k, (a, b) in enumerate(pairs) if a.front is None and b.front is None
                 and near_copy((a.phash ^ b.phash).bit_count(), (a.dhash ^ b.dhash).bit_count(),
                               normalized_correlation(a.thumb, b.thumb, bool(np.array_equal(a.small, b.small))), near)]
        found: list[tuple[float, bool] | None] = [None] * len(pairs)
        if asked:
            first, second = (np.stack([pairs[k][side].small.ravel() for k in asked]) for side in (0, 1))
            heights, widths = np.array([pairs[k][0].shape for k in asked], np.float64).T
            moved, clean = view_matches(first, second, widths, heights)
            for k, one, two in zip(asked, moved.tolist(), clean.tolist(), strict=True):
                found[k] = (one, two)
        return found

    def skip(self, sample: _Sample, kept_as: str | None, why: str, test: str | None = None,
             score: float | None = None) -> None:
        """Add the frame to the span of skipped frames it continues, or start one; the span's
        thumbnail (if asked for) shows its frame least like the keeper."""
        kind = kept_as or why.split(":")[0]  # the same kept frame, or the same quality reason
        spans = self.result.skipped
        if self.span_open and spans and (spans[-1].kept_as or spans[-1].why.split(":")[0]) == kind:
            span = spans[-1]
            span.end, span.frames = sample.t, span.frames + 1
            # weaker evidence: a thing that moved further, a thumbnail that correlates less
            weaker = score is not None and (span.score is None or (score > span.score if span.test == "scene"
                                                                   else score < span.score))
            if weaker:
                span.score = round(score, 3)  # type: ignore[arg-type]
        else:
            spans.append(Span(sample.t, sample.t, 1, kept_as, why, test, None if score is None else round(score, 3)))
            weaker = True
        if weaker and self.result.pictures is not None:
            self.result.pictures[len(spans) - 1] = thumbnail_jpeg(sample.jpeg, max(sample.measures.width,
                                                                                    sample.measures.height))
        self.span_open = True

    def store(self, sample: _Sample) -> str:
        """Write the frame as JPEG into `out`, under its name or, if that is taken, the first
        free `NAME.N.jpg` (a new file: never over anything), and record it (the result's
        `written`, in time order); the name it went to.
        Raises OutGone if `out` is no longer where it was, NameRefused or CannotWrite."""
        name = frame_name(self.stem, sample.t)
        self.check_out(sample.t)
        try:
            fd, tmp = create_exclusive(self.folder, fit_bytes(name, 100), 0o644)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(sample.jpeg)
                    f.flush()
                    os.fsync(f.fileno())
                target = link_as_new(self.folder, tmp, name)
            finally:
                with suppress(FileNotFoundError):  # gone with the folder
                    os.unlink(tmp, dir_fd=self.folder)
        except OSError as e:
            self.check_out(sample.t)
            why = f"cannot write {self.out / name}: {e.strerror or e}"
            if e.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
                raise NameRefused(why, sample.t) from None
            raise CannotWrite(why, sample.t) from None
        written = self.result.written
        written.append(Written(target, round(sample.t, 3), sample.frame, None if target == name else name))
        if len(written) > 1 and written[-2].frame > sample.frame:  # a keeper written before frames it stands for
            written.sort(key=lambda w: w.frame)
        if target != name:
            self.result.taken.append(name)
        return target

    def check_out(self, t: float) -> None:
        """Raise OutGone unless `out` still names the folder the frames go to."""
        try:
            same = _identity(os.stat(self.out)) == self.folder_id and os.fstat(self.folder).st_nlink > 0
        except OSError:
            same = False
        if not same:
            raise OutGone(_gone(self.out), t)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _gone(out: Path) -> str:
    return f"the output folder {out} went away (renamed or removed)"


def duplicate_why(name: str, test: str, score: float) -> str:
    if test == "scene":
        return f"the same frame as {name} (things moved at most {score:.2f} of their size)"
    return f"a near copy of {name} (thumbnail correlation {score:.3f})"


def _cut(n: int, edges: list[tuple[int, int]]) -> int:
    """Where the frames still open at the end of a window of `n` begin: the first frame of any
    group (connected by `edges`) with a frame in the last CARRY, or the last CARRY frames;
    never before the window's middle."""
    tail = n - CARRY
    cut = min([tail] + [group[0] for group in components(edges) if group[-1] >= tail])
    return max(cut, n // 2)


def thin_video(video: Path, out: Path, cfg: Config, every: int = 1, fps: float = 0.0, jpeg_quality: int = 92,
               progress: FrameProgress | None = None, stop: threading.Event | None = None,
               thumbnails: bool = False) -> VideoResult:
    """Read `video` once and write the frames to keep into `out`; what was written and what
    was skipped, and why. Every `every`-th frame is sampled, or `fps` frames a second.
    `progress(name, frames, fps)` is told of the video and returns what counts frames read.
    With `thumbnails`, each skipped span keeps a thumbnail for the review page.
    A video that cannot be read, or whose frames cannot all be written, is the result's
    `error`; with `cannot_write`, frames cannot be written into `out` at all (the folder went
    away: `out_gone`)."""
    result = VideoResult(str(video), pictures={} if thumbnails else None)
    out = Path(out)
    try:
        folder = os.open(out, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        result.error, result.cannot_write, result.out_gone = f"{_gone(out)}; not read", True, True
        return result
    try:
        with _opened(Path(video)) as capture:
            if not capture.isOpened():
                result.error = "not a video OpenCV can read"
                return result
            stem = frame_stem(Path(video), _name_max(folder))
            _thin(capture, _Thinner(out, folder, stem, cfg, jpeg_quality, result), every, fps, progress, stop)
    except UnreadableVideo as e:
        result.error = str(e)
    finally:
        os.close(folder)
    return result


def _thin(capture: cv2.VideoCapture, thinner: _Thinner, every: int, fps: float, progress: FrameProgress | None,
          stop: threading.Event | None) -> None:
    """Read the opened video to its end (or to `stop`) through `thinner`; what went wrong is
    its result's `error`."""
    result = thinner.result
    rate = _finite(capture.get(cv2.CAP_PROP_FPS))
    total = int(_finite(capture.get(cv2.CAP_PROP_FRAME_COUNT)))  # raw streams say -1, or nonsense
    result.fps = round(rate, 3)
    step = every if not fps else max(1, round(rate / fps)) if rate > 0 else 1
    advance = progress(Path(result.video).name, total, rate) if progress else (lambda n: None)
    try:
        index = _read(capture, thinner, step, rate, thinner.jpeg_quality, advance, stop)
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
            result.error = f"decoding stopped at frame {index} of {total} (t={index / rate:.1f} s)" if rate else \
                f"decoding stopped at frame {index} of {total}"


@contextmanager
def _opened(video: Path) -> Iterator[cv2.VideoCapture]:
    """The video opened for OpenCV's FFmpeg backend through /dev/fd/N of a descriptor of it,
    never by its own name: OpenCV crashes (SIGSEGV) on a name that is not UTF-8, and FFmpeg
    reads "concat:..." or "%d" in a name as instructions. The descriptor is checked to be a
    regular file first (a FIFO would wait forever for a writer). Raises UnreadableVideo."""
    try:
        fd = os.open(video, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnreadableVideo("no such file (a broken symbolic link)" if os.path.islink(video) else "no such file") \
            from None
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


def _name_max(folder: int) -> int:
    """The longest file name, in bytes, the folder's file system takes (at most NAME_MAX)."""
    try:
        return min(NAME_MAX, os.fpathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def _finite(value: float) -> float:
    """A figure OpenCV reports, or 0 where it is not a positive number (NaN, -1, inf)."""
    return value if math.isfinite(value) and value > 0 else 0.0


def _read(capture: cv2.VideoCapture, thinner: _Thinner, step: int, rate: float, jpeg_quality: int,
          advance: Callable[[int], None], stop: threading.Event | None) -> int:
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
            thinner.add(_sample(bgr, index, rate, jpeg_quality))
        index += 1
        thinner.result.frames = index
        advance(1)
    return index


def thumbnail_jpeg(jpeg: bytes, longer_side: int) -> bytes:
    """A frame's JPEG as a review page's thumbnail (THUMB_SIDE pixels), decoded at a quarter
    or an eighth of its size where that is still big enough (libjpeg scales as it decodes)."""
    reduce = next((flag for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                             (2, cv2.IMREAD_REDUCED_COLOR_2))
                   if longer_side // factor >= THUMB_SIDE), cv2.IMREAD_COLOR)
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), reduce)
    if bgr is None:  # cannot be: refinery encoded it
        raise ValueError("a frame's own JPEG did not decode")
    scale = THUMB_SIDE / max(bgr.shape[:2])
    if scale < 1:
        bgr = cv2.resize(bgr, (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])[1].tobytes()


def review_report(results: list[VideoResult], out: Path) -> tuple[dict, dict[str, bytes]]:
    """The thinning as a report the review page shows (refinery/review/page.py): each kept
    frame of `out` beside the spans skipped as its duplicates, quality spans on their own,
    videos that failed as errors; and the spans' thumbnails, by the name the page gives them."""
    files: list[dict] = []
    pictures: dict[str, bytes] = {}
    groups: dict[str, int] = {}  # a kept frame's name -> its group
    for result in results:
        stem = frame_stem(Path(result.video))  # UTF-8, as the frames' names
        for number, span in enumerate(result.skipped):
            when = f"{span.start:.3f} s" if span.frames == 1 else f"{span.start:.3f}-{span.end:.3f} s"
            label = f"{stem} {when}: {span.frames} frame{'s' if span.frames > 1 else ''} skipped"
            line: dict[str, Any] = {"path": label, "decision": "remove", "file": None,
                                    "reason": f"the same frame as {span.kept_as}" if span.kept_as else span.why}
            if span.kept_as:
                score = "largest_move" if span.test == "scene" else "thumb_correlation"
                line |= {"stage": "near", "test": span.test, "kept_as": span.kept_as,
                         "group": groups.setdefault(span.kept_as, len(groups)), "scores": {score: span.score}}
            else:
                line |= {"stage": "quality"}
            files.append(line)
            if result.pictures and number in result.pictures:
                pictures[label] = result.pictures[number]
        if result.error:
            files.append({"path": result.video, "decision": "error", "reason": result.error, "file": None})
    kept = [{"path": w.name, "decision": "keep", "group": groups.get(w.name), "file": None}
            for result in results for w in result.written]
    text = (f"{len(results)} video{'s' if len(results) > 1 else ''}: {sum(r.sampled for r in results)} frames "
            f"looked at, {len(kept)} written to {Path(out).resolve()}, "
            f"{sum(s.frames for r in results for s in r.skipped)} skipped in {len(files)} spans")
    return {"summary": {"root": str(Path(out).resolve()), "text": text}, "files": kept + files}, pictures


def _sample(bgr: np.ndarray, index: int, rate: float, jpeg_quality: int) -> _Sample:
    """A decoded frame as the tests see a picture: gray at the stages' size, its thumbnail,
    what the quality stage judges of it."""
    gray = scale_work(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))  # PIL's "L" weights, as dedup decodes
    small = cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    height, width = bgr.shape[:2]
    measures = Measures(width, height, laplacian_variance(gray), **quality_figures(gray),
                        **colour_clipping(bgr))  # BGR or RGB: the channels' order does not matter there
    _, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    return _Sample(index / rate if rate > 0 else float(index), index, jpeg.tobytes(), gray, small,
                   measures)
