"""The features of every file of a run, in columns rather than one Python object per file.

As objects (a Features record, its report line, the pass's bookkeeping) a file cost ~6 KB
of memory during grouping, so a million files took 6 GB before any index. In numpy
columns a file takes ~330 bytes (the thumbnail alone 256) plus its path string; the stages
read whole columns (hashes, thumbnails, SHA-256) and build a Features record only for the
few rows a keep rule or a report line needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from refinery.features import QUALITY_FIGURES, THUMB, Features

# name -> dtype of each scalar column; the names are Features' fields.
SCALARS: dict[str, type] = {
    "file_size": np.int64,
    "width": np.int32,
    "height": np.int32,
    "sharpness": np.float64,
    "brightness": np.float64,
    "edge_density": np.float64,
    "compression": np.float64,
    "dhash": np.uint64,
    "phash": np.uint64,
    **{name: np.float32 for name in QUALITY_FIGURES},
}


# A report line's quality scores (every kept or removed file has them), with their decimals.
QUALITY_SCORES = {"sharpness": 2, "brightness": 2, "edge_density": 5, **dict.fromkeys(QUALITY_FIGURES, 3)}


@dataclass
class PictureKeys:
    """What the picture tests compare, a row per picture: its bytes' SHA-256, its hashes and
    its gray thumbnail (a reference keeps these for each of its pictures)."""

    sha256: np.ndarray  # (N, 32) uint8
    phash: np.ndarray  # (N,) uint64
    dhash: np.ndarray  # (N,) uint64
    thumb: np.ndarray  # (N, THUMB * THUMB) uint8

    def digests(self) -> np.ndarray:
        """One comparable 32-byte value a row, as FeatureTable.digests."""
        return np.ascontiguousarray(self.sha256).view("V32").ravel()

    def arrays(self) -> dict[str, np.ndarray]:
        return {"sha256": self.sha256, "phash": self.phash, "dhash": self.dhash, "thumb": self.thumb}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], rows: int) -> PictureKeys:
        """Checked: read back from disk, each array must have its shape and type."""
        shapes = {"sha256": ((rows, 32), np.uint8), "phash": ((rows,), np.uint64), "dhash": ((rows,), np.uint64)}
        shapes["thumb"] = ((rows, THUMB * THUMB), np.uint8)
        for name, (shape, dtype) in shapes.items():
            if name not in arrays or arrays[name].shape != shape or arrays[name].dtype != dtype:
                raise ValueError(f"{name} is not {dtype.__name__} of shape {shape}")
        return cls(*(np.asarray(arrays[name]) for name in shapes))


class FeatureTable(Sequence[Features]):
    """Features of `len(paths)` files by row; row i belongs to paths[i]. Rows without
    features (unreadable, not reached) have `filled[i]` False."""

    def __init__(self, paths: Sequence[str]):
        n = len(paths)
        self.paths = paths
        self.filled = np.zeros(n, bool)
        self.sha256 = np.zeros((n, 32), np.uint8)  # the digest's 32 bytes, not its 64 hex characters
        self.thumb = np.zeros((n, THUMB * THUMB), np.uint8)
        self.columns: dict[str, np.ndarray] = {name: np.zeros(n, dtype) for name, dtype in SCALARS.items()}

    def __len__(self) -> int:
        return len(self.paths)

    def put(self, row: int, f: Features) -> None:
        for name, column in self.columns.items():
            column[row] = getattr(f, name)
        self.sha256[row] = np.frombuffer(bytes.fromhex(f.sha256), np.uint8)
        self.thumb[row] = np.frombuffer(f.thumb, np.uint8) if f.thumb else 0
        self.filled[row] = True

    def copy_row(self, dst: int, src: int) -> None:
        """Row `dst` gets row `src`'s features (a file with identical bytes)."""
        for column in (*self.columns.values(), self.sha256, self.thumb, self.filled):
            column[dst] = column[src]

    def __getitem__(self, row: int) -> Features:  # type: ignore[override]  # rows only, no slices
        """Row `row` as a Features record (its path from `paths`)."""
        if not self.filled[row]:
            raise KeyError(f"{self.paths[row]} has no features")
        values = {name: column[row].item() for name, column in self.columns.items()}
        return Features(
            path=self.paths[row], sha256=self.sha256[row].tobytes().hex(), thumb=self.thumb[row].tobytes(), **values
        )

    def scores(self, row: int) -> dict[str, float]:
        """The quality scores of a report line (Features.scores) without building the record."""
        c = self.columns
        return {name: round(float(c[name][row]), digits) for name, digits in QUALITY_SCORES.items()}

    def keys(self, rows: np.ndarray) -> PictureKeys:
        """The picture keys of `rows`."""
        c = self.columns
        return PictureKeys(self.sha256[rows], c["phash"][rows], c["dhash"][rows], self.thumb[rows])

    def digests(self, rows: np.ndarray) -> np.ndarray:
        """SHA-256 of `rows` as one 32-byte value each, comparable and sortable by numpy."""
        return np.ascontiguousarray(self.sha256[rows]).view("V32").ravel()

    def nbytes(self) -> int:
        """Memory of the columns (not the path strings)."""
        return sum(c.nbytes for c in (*self.columns.values(), self.sha256, self.thumb, self.filled))
