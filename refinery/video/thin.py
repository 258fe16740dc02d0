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

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from refinery.config import Config
from refinery.dedup.evidence import near_copy
from refinery.dedup.groups import components, cover_groups
from refinery.dedup.stages.background import Background, Front
from refinery.dedup.stages.quality import judge
from refinery.dedup.stages.scenes import shift, view_distances
from refinery.features import THUMB, dhash, normalized_correlation, normalized_thumbs, phash
from refinery.reasons import Reason, ReasonCode
from refinery.video.folder import FramesFolder, frame_name
from refinery.video.page import thumbnail_jpeg
from refinery.video.read import Sample
from refinery.video.results import Span, VideoResult, Written
from refinery.views import view_matches

# Frames decided together, as dedup decides a folder (each group keeps its most typical
# frame), held as the JPEGs they would be written as (256 frames of 1920x1080 at quality 92:
# ~100 MB) and in gray at 320 pixels (~20 MB). On vtest.avi (refinery dedup on all its frames
# keeps 392): 410 kept with windows of 128, 395 with 256, 401 with 512 (docs/frames.md).
WINDOW = 256
CARRY = 32  # frames at a window's end whose groups may go on in the next window
LEARN_FROM = 32  # a background is learnt from the last LEARN_FROM of every LEARN_EVERY-th frame:
LEARN_EVERY = 8  # a spread over the last WINDOW frames (25 s at 10 fps)
LOOK_BACK = 256  # kept frames a new frame is compared with (~20 KB each)

_Verdict = tuple[str | None, Reason, str | None, float | None]  # (the kept frame it duplicates, why, test, figure)


@dataclass
class _FrameFeatures:
    """What the tests compare of a frame (as dedup's near stage and scene test do)."""

    thumb: np.ndarray  # THUMB x THUMB gray, normalised (its dot product is a correlation)
    small: np.ndarray  # THUMB x THUMB gray, uint8 (as it is: where a panning camera's view went)
    shape: tuple[int, int]  # the frame's height and width (its thumbnail is square)
    phash: int
    dhash: int
    front: Front | None  # what stands in front of the background; None: the picture test judges it


@dataclass
class _Kept:
    name: str
    look: _FrameFeatures


class Thinner:
    """The decisions for one video, frame after frame."""

    def __init__(self, folder: FramesFolder, cfg: Config, result: VideoResult):
        self.folder, self.cfg, self.result = folder, cfg, result  # the frames go into `folder`
        self.background: Background | None = None
        self.view: np.ndarray | None = None  # the background's THUMB x THUMB thumbnail
        self.waiting: list[Sample] = []  # frames not decided yet
        self.recent: deque[np.ndarray] = deque(maxlen=LEARN_FROM)  # grays to learn the next background from
        self.kept: deque[_Kept] = deque(maxlen=LOOK_BACK)
        self.span_open = False  # the last frame decided was skipped: a span is open

    def add(self, sample: Sample) -> None:
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

    def decide(self, window: list[Sample], final: bool) -> list[Sample]:
        """Decide a window of consecutive frames as dedup decides a folder: quality first;
        then a frame the same as a frame kept before goes; the rest are covered by their most
        typical frames (the one most others in the window are the same as), which are kept.
        Unless `final`, the frames from the first one of a group that reaches the window's
        last CARRY frames on are not decided: they are returned, to be decided with the next
        frames (at most half the window, so that a still scene cannot hold frames forever)."""
        verdict, looks = self.verdicts(window)
        open_rows = [k for k in range(len(window)) if verdict[k] is None]
        pairs = [(a, b) for i, a in enumerate(open_rows) for b in open_rows[i + 1 :]]
        seen = {k: look for k in open_rows if (look := looks[k]) is not None}  # every open frame was looked at
        views = self.views([(seen[a], seen[b]) for a, b in pairs])
        tests = {
            (a, b): hit
            for (a, b), view in zip(pairs, views, strict=True)
            if (hit := self.same(seen[a], seen[b], view)) is not None
        }
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

    def verdicts(self, window: list[Sample]) -> tuple[list[_Verdict | None], list[_FrameFeatures | None]]:
        """Each frame's verdict - None (open), or (the kept frame it duplicates or None, why,
        the test, its figure) - and what the tests compare of it (None: a quality reject)."""
        verdict: list[_Verdict | None] = [None] * len(window)
        looks: list[_FrameFeatures | None] = [None] * len(window)
        for k, sample in enumerate(window):
            defect = judge(sample.measures, self.cfg.quality)
            if defect:
                verdict[k] = (None, defect, None, None)
                continue
            looks[k] = _FrameFeatures(
                normalized_thumbs(sample.small[None])[0],
                sample.small,
                sample.gray.shape,
                phash(sample.gray),
                dhash(sample.gray),
                self.foreground(sample),
            )
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

    def foreground(self, sample: Sample) -> Front | None:
        """What stands in front of the background, if the frame shows the background's view
        (as dedup's scenes: `scenes.view_difference`) and not mostly something in front of it."""
        if self.background is None or self.view is None:
            return None
        if view_distances(sample.small[None], self.view)[0] > self.cfg.scenes.view_difference:
            return None  # another view (a cut, the camera turned): the picture test judges it
        front = self.background.frame(sample.gray.astype(np.float32), self.cfg.scenes)
        return front if front.foreground <= self.cfg.scenes.max_foreground else None

    def same(self, a: _FrameFeatures, b: _FrameFeatures, view: tuple[float, bool] | None) -> tuple[str, float] | None:
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

    def views(self, pairs: list[tuple[_FrameFeatures, _FrameFeatures]]) -> list[tuple[float, bool] | None]:
        """For each pair the picture test judges (neither frame shows the background's view,
        their hashes are close and their thumbnails correlate), where the camera's view went
        (views.view_match; all at once); None for the others."""
        near = self.cfg.near
        asked = [
            k
            for k, (a, b) in enumerate(pairs)
            if a.front is None
            and b.front is None
            and near_copy(
                (a.phash ^ b.phash).bit_count(),
                (a.dhash ^ b.dhash).bit_count(),
                normalized_correlation(a.thumb, b.thumb, bool(np.array_equal(a.small, b.small))),
                near,
            )
        ]
        found: list[tuple[float, bool] | None] = [None] * len(pairs)
        if asked:
            first, second = (np.stack([pairs[k][side].small.ravel() for k in asked]) for side in (0, 1))
            heights, widths = np.array([pairs[k][0].shape for k in asked], np.float64).T
            moved, clean = view_matches(first, second, widths, heights)
            for k, one, two in zip(asked, moved.tolist(), clean.tolist(), strict=True):
                found[k] = (one, two)
        return found

    def skip(
        self, sample: Sample, kept_as: str | None, why: Reason, test: str | None = None, score: float | None = None
    ) -> None:
        """Add the frame to the span of skipped frames it continues, or start one; the span's
        thumbnail (if asked for) shows its frame least like the keeper."""
        kind = kept_as or why.code  # the same kept frame, or the same quality defect
        spans = self.result.skipped
        if self.span_open and spans and (spans[-1].kept_as or spans[-1].reason_code) == kind:
            span = spans[-1]
            span.end, span.frames = sample.t, span.frames + 1
            # weaker evidence: a thing that moved further, a thumbnail that correlates less
            weaker = score is not None and (
                span.score is None or (score > span.score if span.test == "scene" else score < span.score)
            )
            if weaker:
                span.score = round(score, 3)  # type: ignore[arg-type]
        else:
            figure = None if score is None else round(score, 3)
            spans.append(Span(sample.t, sample.t, 1, kept_as, why.text, test, figure, why.code.value))
            weaker = True
        if weaker and self.result.pictures is not None:
            self.result.pictures[len(spans) - 1] = thumbnail_jpeg(
                sample.jpeg, max(sample.measures.width, sample.measures.height)
            )
        self.span_open = True

    def store(self, sample: Sample) -> str:
        """Write the frame into the folder, under its name or, if that is taken, the first
        free `NAME.N.jpg` (FramesFolder.write), and record it (the result's `written`, in time
        order); the name it went to. Raises OutGone, NameRefused or CannotWrite."""
        name = frame_name(self.folder.stem, sample.t)
        target, already = self.folder.write(name, sample.jpeg, sample.t)
        written = self.result.written
        written.append(
            Written(target, round(sample.t, 3), sample.frame, None if target == name else name, already or None)
        )
        if len(written) > 1 and written[-2].frame > sample.frame:  # a keeper written before frames it stands for
            written.sort(key=lambda w: w.frame)
        if target != name:
            self.result.taken.append(name)
        return target


def duplicate_why(name: str, test: str, score: float) -> Reason:
    if test == "scene":
        return Reason(
            ReasonCode.SAME_FRAME, f"the same frame as {name} (things moved at most {score:.2f} of their size)"
        )
    return Reason(ReasonCode.SAME_PICTURE, f"a near copy of {name} (thumbnail correlation {score:.3f})")


def _cut(n: int, edges: list[tuple[int, int]]) -> int:
    """Where the frames still open at the end of a window of `n` begin: the first frame of any
    group (connected by `edges`) with a frame in the last CARRY, or the last CARRY frames;
    never before the window's middle."""
    tail = n - CARRY
    cut = min([tail] + [group[0] for group in components(edges) if group[-1] >= tail])
    return max(cut, n // 2)
