"""What thinning a video did: the frames written, the spans of frames skipped and why, and
what went wrong (refinery/video/extract.py fills it in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Written:
    """A frame kept: the file it went to, its time and its number in the video."""

    name: str
    t: float
    frame: int
    instead_of: str | None = None  # its own name, when that was taken in `out` (then `name` is a free one)
    already: bool | None = None  # True: `name` held this very frame (an earlier run's): not written again


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
    reason_code: str | None = None  # `why` as a code (refinery/reasons.py) of its first frame


@dataclass
class VideoResult:
    video: str
    name: str = ""  # what its frames' names begin with (unique in the run: see video/folder.video_names)
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
    # its keeper (or of its first frame), REVIEW_THUMB's size, ~5 KB. Not in the report.
    pictures: dict[int, bytes] | None = None

    def to_dict(self) -> dict[str, Any]:
        written = [{k: v for k, v in vars(w).items() if v is not None} for w in self.written]  # instead_of if taken
        return {
            "video": self.video,
            "fps": self.fps,
            "frames": self.frames,
            "sampled": self.sampled,
            "written": written,
            "skipped": [vars(s) for s in self.skipped],
            "taken": self.taken,
            "error": self.error or None,
            "interrupted": self.interrupted,
            "name": self.name,  # what its frames' names begin with
        }
