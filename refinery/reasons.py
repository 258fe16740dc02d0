"""Why a file got its decision, as a code a program reads (a report line's `reason_code`),
beside the reason in words a person reads. Readers rank and group by the code; the words may
change, the codes do not (new ones are added). A duplicate's code says why it goes against
its keeper (`kept_as`): a byte copy whose twin went later carries the twin's."""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple


class ReasonCode(str, Enum):
    # removed by the quality stage: detail lost
    TOO_SMALL = "too_small"
    TOO_DARK = "too_dark"
    BLANK = "blank"
    BURNT_OUT = "burnt_out"
    BLURRED = "blurred"
    MOTION_BLUR = "motion_blur"
    # removed as a duplicate of its keeper
    IDENTICAL_BYTES = "identical_bytes"  # the same SHA-256
    SAME_PICTURE = "same_picture"  # a near copy: close hashes and thumbnails
    LOOKS_LIKE = "looks_like"  # alike in the model's embedding (cosine)
    SAME_FRAME = "same_frame"  # one fixed camera's frame: the same things at the same places
    # not judged
    HIDDEN = "hidden"
    VIDEO = "video"
    LINK = "link"  # a symbolic link not followed, or judged under its target's name
    NO_FACE = "no_face"
    NOT_REACHED = "not_reached"  # the run was interrupted first
    UNREADABLE = "unreadable"  # an error: not read, not decoded, not a regular file

    def __str__(self) -> str:  # "blank", not "ReasonCode.BLANK", in text and f-strings
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Reason(NamedTuple):
    """A reason as a program reads it and as a person reads it."""

    code: ReasonCode
    text: str
