"""The thinning of videos as the review page shows it (refinery/review/page.py): each kept
frame beside the spans skipped as its duplicates, and each span's thumbnail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from refinery.dedup.decisions import FileDecision
from refinery.io.images import REVIEW_THUMB
from refinery.reasons import ReasonCode
from refinery.video.folder import frame_stem
from refinery.video.results import VideoResult


def thumbnail_jpeg(jpeg: bytes, longer_side: int) -> bytes:
    """A frame's JPEG as a review page's thumbnail (REVIEW_THUMB), decoded at a quarter or an
    eighth of its size where that is still big enough (libjpeg scales as it decodes).
    OpenCV's, not io/images.thumbnail's: the frame is a JPEG OpenCV made, and Pillow's decode,
    resize and encode would give other bytes than the pages made so far."""
    reduce = next(
        (
            flag
            for factor, flag in (
                (8, cv2.IMREAD_REDUCED_COLOR_8),
                (4, cv2.IMREAD_REDUCED_COLOR_4),
                (2, cv2.IMREAD_REDUCED_COLOR_2),
            )
            if longer_side // factor >= REVIEW_THUMB.side
        ),
        cv2.IMREAD_COLOR,
    )
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), reduce)
    if bgr is None:  # cannot be: refinery encoded it
        raise ValueError("a frame's own JPEG did not decode")
    scale = REVIEW_THUMB.side / max(bgr.shape[:2])
    if scale < 1:
        bgr = cv2.resize(
            bgr,
            (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, REVIEW_THUMB.quality])[1].tobytes()


def review_report(results: list[VideoResult], out: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The thinning as a report the review page shows (refinery/review/page.py): each kept
    frame of `out` beside the spans skipped as its duplicates, quality spans on their own,
    videos that failed as errors; and the spans' thumbnails, by the name the page gives them."""
    files: list[FileDecision] = []
    pictures: dict[str, bytes] = {}
    groups: dict[str, int] = {}  # a kept frame's name -> its group
    for result in results:
        stem = frame_stem(result.name)  # UTF-8, as the frames' names
        for number, span in enumerate(result.skipped):
            when = f"{span.start:.3f} s" if span.frames == 1 else f"{span.start:.3f}-{span.end:.3f} s"
            label = f"{stem} {when}: {span.frames} frame{'s' if span.frames > 1 else ''} skipped"
            line = FileDecision(label, "remove", reason_code=span.reason_code)
            if span.kept_as:
                score = "largest_move" if span.test == "scene" else "thumb_correlation"
                line.stage, line.reason, line.test, line.kept_as = (
                    "near",
                    f"the same frame as {span.kept_as}",
                    span.test,
                    span.kept_as,
                )
                line.group = groups.setdefault(span.kept_as, len(groups))
                line.scores = {score: span.score} if span.score is not None else {}
            else:
                line.stage, line.reason = "quality", span.why
            files.append(line)
            if result.pictures and number in result.pictures:
                pictures[label] = result.pictures[number]
        if result.error:
            files.append(FileDecision(result.video, "error", reason=result.error, reason_code=ReasonCode.UNREADABLE))
    # every frame written is shown, in time order, with the spans skipped as its duplicates (if any)
    kept = [
        FileDecision(w.name, "keep", group=groups.setdefault(w.name, len(groups)), reason=f"written: {w.t:.3f} s")
        for result in results
        for w in result.written
    ]
    text = (
        f"{len(results)} video{'s' if len(results) > 1 else ''}: {sum(r.sampled for r in results)} frames "
        f"looked at, {len(kept)} written to {Path(out).resolve()}, "
        f"{sum(s.frames for r in results for s in r.skipped)} skipped in {len(files)} spans"
    )
    return {
        "summary": {"root": str(Path(out).resolve()), "text": text, "video": True},
        "files": [line.as_dict() for line in kept + files],
    }, pictures
