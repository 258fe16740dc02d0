"""Embedding vectors of a run, kept in a temporary file rather than in memory.

At 100,000 images the float32 vectors of the default model take 512 MB; on disk as
float16 they take half that, and memory holds only the block being searched. float16 keeps
the dedup decisions identical on the benchmark corpora (benchmarks/README.md).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TypeVar

import numpy as np

from refinery.errors import RefineryError

STORE_DTYPE = np.float16


S = TypeVar("S", bound="ScratchFile")


class ScratchFile:
    """A run's unnamed file in `folder` (O_TMPFILE, or a random name made with O_EXCL and
    unlinked at once): no other process can guess it, and it is gone when closed (at the end
    of a `with`) or when the process dies."""

    def __init__(self, folder: Path | None, prefix: str):
        try:
            if folder is not None:
                Path(folder).mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(dir=folder, prefix=prefix)
        except OSError as e:
            raise RefineryError(
                f"{folder or tempfile.gettempdir()}: cannot keep the run's scratch files there "
                f"({e.strerror or e}); set run.scratch_dir to a writable folder"
            ) from e

    def close(self) -> None:
        self._file.close()

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VectorStore(ScratchFile):
    """Rows of `dim` floats appended in batches and read back by row number, as float32."""

    def __init__(self, dim: int, folder: Path | None = None):
        super().__init__(folder, "refinery-vectors-")
        self.dim = dim
        self.count = 0
        self._row_bytes = dim * np.dtype(STORE_DTYPE).itemsize

    def append(self, vectors: np.ndarray) -> range:
        """Store `vectors` (N, dim); returns their row numbers."""
        data = np.ascontiguousarray(vectors, dtype=STORE_DTYPE)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ValueError(f"expected (N, {self.dim}) vectors, got {vectors.shape}")
        os.pwrite(self._file.fileno(), data.tobytes(), self.count * self._row_bytes)
        rows = range(self.count, self.count + len(data))
        self.count += len(data)
        return rows

    def rows(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """The rows `indices` as float32 (len(indices), dim), one read per run of consecutive rows."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.dim), np.float32)
        if len(indices) == 0:
            return out
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]
        if ordered[0] < 0 or ordered[-1] >= self.count:
            raise IndexError(f"row out of range 0..{self.count - 1}")
        starts = np.flatnonzero(np.diff(ordered, prepend=ordered[0] - 2) > 1)  # gaps start a new read
        for a, b in zip(starts, [*starts[1:], len(ordered)], strict=True):
            first, n = int(ordered[a]), int(ordered[b - 1] - ordered[a] + 1)
            out[order[a:b]] = self._read(first, n)[ordered[a:b] - first]  # float16 -> float32 here
        return out

    def _read(self, first: int, n: int) -> np.ndarray:
        data = os.pread(self._file.fileno(), n * self._row_bytes, first * self._row_bytes)
        return np.frombuffer(data, STORE_DTYPE).reshape(n, self.dim)
