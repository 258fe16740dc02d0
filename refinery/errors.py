"""Every error refinery raises on purpose.

    RefineryError
    ├── ConfigError              a config file or option is wrong
    ├── ModelError
    │   ├── UnknownModel         a name that is not in a registry
    │   ├── CheckpointNotFound   the checkpoint file is missing
    │   ├── CheckpointMismatch   the checkpoint does not fit the architecture
    │   ├── ParityError          the exported model disagrees with its source
    │   └── ProviderUnavailable  the asked-for onnxruntime provider is not installed
    └── ImageError
        └── UnreadableImage      a file that cannot be decoded as an image

The CLI turns each into a one-line message; library code raises, never exits.
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


class ImageError(RefineryError):
    """Something is wrong with an image file."""


class UnreadableImage(ImageError):
    """A file that cannot be decoded as an image."""

    def __init__(self, path: object, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
