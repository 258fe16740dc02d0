"""Every error refinery raises on purpose: each class is defined here (a test walks them).

    RefineryError
    ├── ConfigError              a config file or option is wrong
    ├── ModelError               a model, its checkpoint or its export
    │   ├── UnknownModel         a name that is not in a registry
    │   ├── CheckpointNotFound   the checkpoint file is missing
    │   ├── CheckpointMismatch   the checkpoint does not fit the architecture
    │   ├── ParityError          the exported model disagrees with its source
    │   ├── ProviderUnavailable  the asked-for onnxruntime provider is not installed
    │   └── NoTextTower          words asked of a model without a text tower
    ├── ImageError               an image file
    │   └── UnreadableImage      a file that cannot be decoded as an image
    ├── UnreadableVideo          a video path OpenCV may not be given, or with no frame
    ├── NoPictures               a folder to judge, index or embed holds no picture
    ├── NoFace                   a query picture in which --faces found no face
    ├── UnsafePath               a folder on the way to a destination is a link
    │   └── Unreachable          a path the judging run could not have taken
    ├── OutputRefused            an output would write over an input or a file not refinery's
    ├── DeviceFull               the destination of a move cannot take more
    ├── JournalError             the journal cannot be trusted, read or written
    ├── DestinationBusy          another run holds the destination's lock
    ├── CannotWrite              a frame could not be written (refinery frames)
    │   ├── OutGone              the output folder went away mid-run
    │   └── NameRefused          the file system refused a frame's name
    └── BadUpload                a search request the server will not run

Plain RefineryError is raised where no caller tells the cases apart. The CLI turns each into
a one-line message; library code raises, never exits.
"""

from __future__ import annotations


class RefineryError(Exception):
    """Base of every error refinery raises on purpose."""


class ConfigError(RefineryError):
    """A config file or option is wrong."""


class ModelError(RefineryError):
    """Something is wrong with a model, its checkpoint or its export."""


class UnknownModel(ModelError):
    """A model or architecture name that is not in the registry."""


class CheckpointNotFound(ModelError):
    """The checkpoint file does not exist."""


class CheckpointMismatch(ModelError):
    """The checkpoint's tensors do not fit the architecture, key for key."""


class ParityError(ModelError):
    """An exported model gives different outputs from the model it came from."""


class ProviderUnavailable(ModelError):
    """The onnxruntime execution provider asked for is not available here."""


class NoTextTower(ModelError):
    """Words were asked of a model that has no text tower (not a CLIP model)."""


class ImageError(RefineryError):
    """Something is wrong with an image file."""


class UnreadableImage(ImageError):
    """A file that cannot be decoded as an image."""

    def __init__(self, path: object, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnreadableVideo(RefineryError):
    """A video path that is not a file OpenCV may be given (a folder, a FIFO, missing), or
    one from which no frame could be read."""


class NoPictures(RefineryError):
    """A folder to judge, index or embed holds no picture (the message says what it holds)."""


class NoFace(RefineryError):
    """A query picture in which --faces found no face."""


class UnsafePath(RefineryError):
    """A folder on the way to a destination is a symbolic link (or not a folder at all)."""


class Unreachable(UnsafePath):
    """A path the run that judged the files could not have taken (refinery/io/scan.py): a
    symbolic link it did not follow, a link to a folder inside the scanned one, a hidden name."""


class OutputRefused(RefineryError):
    """An output path would write over an input, or over a file refinery did not write."""


class DeviceFull(RefineryError):
    """The destination cannot take more (full, over quota, read-only): the run stops."""


class JournalError(RefineryError):
    """The journal cannot be trusted, read or written."""


class DestinationBusy(RefineryError):
    """Another refinery run holds the destination's lock."""


class CannotWrite(RefineryError):
    """A frame could not be written into the output folder (a full disk): the next videos'
    frames could not be either."""

    def __init__(self, message: str, t: float):
        super().__init__(message)
        self.t = t  # the frame's time in the video


class OutGone(CannotWrite):
    """The output folder was renamed or removed while the frames were being written."""


class NameRefused(CannotWrite):
    """The output folder's file system refused a frame's name (too long for it, a character it
    does not take): the video's other frames would fail too, the next videos' may not."""


class BadUpload(RefineryError):
    """A search request the server will not run; `status` is its HTTP status. `unread`: refused
    on its headers alone, before a byte of the body was asked for."""

    def __init__(self, message: str, status: int = 400, unread: bool = False):
        super().__init__(message)
        self.status = status
        self.unread = unread
