"""Each picture in gray at the stages' size, as the read-once pass decoded it, for the stages
that look at pixels again (the scene test, moving cameras).

Decoding every frame a second time cost a frame folder about a fifth of its run (1.1 ms a
960x540 frame, beside 6 ms for the whole pass). So the pass keeps what it decoded, as uint8
(57 KB a 960x540 frame), in an unnamed temporary file like the vectors, up to
`run.scratch_grays_mb` and never over half the free space there. A picture it did not keep
(taken from the feature cache, past that limit, read by the Ray engine) is decoded again by
the same rule, so a run gives the same decisions whichever way its grays came.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refinery.dedup.table import FeatureTable
from refinery.dedup.vectors import ScratchFile
from refinery.errors import UnreadableImage
from refinery.features import gray_work
from refinery.io.images import decode_for_stages, read_bytes
from refinery.spec import ModelSpec

log = logging.getLogger(__name__)


class GrayStore(ScratchFile):
    """uint8 gray pictures by row number, appended by one thread, read by any."""

    def __init__(self, folder: Path | None, limit_mb: int):
        super().__init__(folder, "refinery-grays-")
        self.limit = min(limit_mb * 2**20, shutil.disk_usage(folder or tempfile.gettempdir()).free // 2)
        self.size = 0
        self._where: dict[int, tuple[int, int, int]] = {}  # row: (offset, height, width)

    def put(self, row: int, gray: np.ndarray) -> None:
        """Keep `gray` (2-D uint8) for `row`, unless the store is full."""
        if self.size + gray.nbytes > self.limit:
            return
        data = np.ascontiguousarray(gray, np.uint8).tobytes()
        try:
            written = os.pwrite(self._file.fileno(), data, self.size)
        except OSError as e:
            written, why = 0, e.strerror or str(e)
        else:
            why = "the disk is full"
        if written < len(data):  # the rest are decoded again
            log.debug("scratch space for grays: %s after %d pictures; the others are decoded again", why, len(self))
            self.limit = 0
            return
        self._where[row] = (self.size, *gray.shape)
        self.size += gray.nbytes

    def get(self, row: int) -> np.ndarray | None:
        """The gray kept for `row`, or None."""
        if row not in self._where:
            return None
        offset, height, width = self._where[row]
        data = os.pread(self._file.fileno(), height * width, offset)
        return np.frombuffer(data, np.uint8).reshape(height, width) if len(data) == height * width else None

    def __len__(self) -> int:
        return len(self._where)


@dataclass(frozen=True)
class Grays:
    """A run's pictures by row, in gray at the stages' size (float32): kept by the pass, or
    decoded again."""

    root: Path
    table: FeatureTable
    spec: ModelSpec
    kept: GrayStore | None = None

    def __call__(self, row: int) -> np.ndarray | None:
        """Row `row`'s picture, or None (logged) if it cannot be read now."""
        gray = self.kept.get(row) if self.kept is not None else None
        if gray is None:
            try:
                return decoded_gray(self.root / self.table.paths[row], self.spec)
            except UnreadableImage as e:
                log.debug("%s: %s; judged as a picture", self.table.paths[row], e.reason)
                return None
        return gray.astype(np.float32)


def decoded_gray(path: Path, spec: ModelSpec) -> np.ndarray:
    """The picture at `path` in gray at the stages' size (float32), decoded as the pass decodes
    it; UnreadableImage if it cannot be."""
    return gray_work(decode_for_stages(read_bytes(path), path, spec).image).astype(np.float32)
