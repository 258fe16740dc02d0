"""An index's folder on disk (refinery/retrieval/index.py says what it holds): each part
written under a new random name with its size and SHA-256, the parts checked against
index.json when read, a folder refused that is not an index, and SIFT's part as bytes."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from refinery.dedup.table import PictureKeys
from refinery.errors import RefineryError
from refinery.io.fileio import file_sha256, read_json, write_all, write_new
from refinery.io.names import is_plain_path
from refinery.io.scan import holds_a_picture
from refinery.retrieval.methods import SiftFeatures

INDEX_VERSION = 2  # 2: index.json lists its files' sizes and hashes
INDEX_FILES = ("embedding.faiss", "pixels.npy", "sift.npz", "keys.npz")  # besides index.json, all an index owns


def sift_bytes(features: list[SiftFeatures]) -> bytes:
    """SIFT features as the bytes of an .npz file."""
    counts = np.array([len(f.descriptors) for f in features], np.int64)
    out = io.BytesIO()
    np.savez(
        out,
        counts=counts,
        descriptors=np.concatenate([f.descriptors for f in features]),
        points=np.concatenate([f.points for f in features]),
    )
    return out.getvalue()


def check_index_folder(out: Path) -> set[str]:
    """Refuse an `out` that refinery must not write into: anything but a new or empty folder,
    or a refinery index. Returns the parts the index there has (empty for a new folder)."""
    out = Path(out)
    if not out.exists():
        if out.is_symlink():
            raise RefineryError(f"{out} is a broken symbolic link; give a folder for the index")
        return set()
    if not out.is_dir():
        raise RefineryError(
            f"{out} is a file, not a folder; give a new or empty folder for the index, or an index to build again"
        )
    names = set(os.listdir(out))
    if not names:
        return set()
    meta = index_json(out)
    if meta is None:
        raise RefineryError(
            f"{out} already holds files and is not a refinery index (no index.json of refinery's); "
            "refinery writes an index only into a new or empty folder, or over an index it made: "
            "choose another folder for it"
        )
    parts = meta.get("parts")
    listed = set(parts) & set(INDEX_FILES) if isinstance(parts, dict) else set(INDEX_FILES)  # version 1: all of them
    return listed & names


def index_json(folder: Path) -> dict[str, Any] | None:
    """The index.json of a folder if it is one refinery wrote (a regular file, a JSON object
    with an index's keys), else None."""
    path = folder / "index.json"
    try:
        if not path.is_file() or path.is_symlink():
            return None
        meta = read_json(path, "an index's index.json")
    except (OSError, RefineryError):
        return None
    if isinstance(meta, dict) and isinstance(meta.get("version"), int) and {"files", "model", "root"} <= meta.keys():
        return meta
    return None


def read_index_meta(path: Path) -> dict[str, Any]:
    """An index's index.json, checked: this refinery's version, fields of the types it writes."""
    if not (path / "index.json").exists():
        raise RefineryError(not_an_index(path))
    try:
        meta = read_json(path / "index.json", "an index's index.json")
    except RefineryError as e:
        raise RefineryError(f"{path}: not a refinery index ({e})") from None
    if not isinstance(meta, dict) or meta.get("version") != INDEX_VERSION:
        version = meta.get("version") if isinstance(meta, dict) else None
        raise RefineryError(
            f"{path}: index version {version}, this refinery reads {INDEX_VERSION}; "
            "build it again with `refinery index`"
        )
    check_meta(path, meta)
    return meta


# what reading an index's files raises when they are not what refinery wrote
UNREADABLE = (RuntimeError, ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile)


def unreadable(path: Path, e: Exception) -> RefineryError:
    """The one line for an index whose files cannot be read (their hashes agree with an
    index.json a hand can edit too)."""
    text = str(e).strip()  # faiss' messages end with what went wrong, after its source location
    why = text.rsplit(" failed: ", 1)[-1].splitlines()[-1][-160:] if text else type(e).__name__
    return RefineryError(
        f"{path}: damaged index: its files cannot be read ({why}); build it again with `refinery index`"
    )


def check_parts(path: Path, meta: dict[str, Any], only: Collection[str] | None = None) -> None:
    """Every file index.json lists (or those of them in `only`: the ones to be read) is there
    with the size and SHA-256 it lists."""
    parts = meta.get("parts")
    if (
        not isinstance(parts, dict)
        or not {"embedding.faiss", "pixels.npy"} <= parts.keys()
        or not set(parts) <= set(INDEX_FILES)
    ):
        raise RefineryError(f"{path}: index.json does not list the index's files; build it again with `refinery index`")
    for name, part in parts.items():
        if only is not None and name not in only:
            continue
        try:
            size, digest = (path / name).stat().st_size, file_sha256(path / name)
        except OSError as e:
            raise RefineryError(
                f"{path}: damaged index: {name}: {e.strerror or e}; build it again with `refinery index`"
            ) from None
        if not isinstance(part, dict) or [size, digest] != [part.get("bytes"), part.get("sha256")]:
            raise RefineryError(
                f"{path}: damaged index: {name} is not the file index.json lists (a crash while "
                "writing, or an edit); build it again with `refinery index`"
            )


def check_meta(path: Path, meta: dict[str, Any]) -> None:
    """index.json's fields have the types refinery wrote, each picture's path below the indexed
    folder (it is read back, not trusted: a reference's pictures are read from those paths)."""
    model, files = meta.get("model"), meta.get("files")
    ok = (
        isinstance(model, dict)
        and all(isinstance(model.get(k), str) for k in ("path", "sha256", "name"))
        and isinstance(files, list)
        and all(
            isinstance(f, list) and len(f) == 3 and is_plain_path(f[0]) and all(isinstance(x, int) for x in f[1:])
            for f in files
        )
        and isinstance(meta.get("root"), str)
        and os.path.isabs(meta["root"])
        and isinstance(meta.get("faces"), bool)
    )
    if not ok:
        raise RefineryError(f"{path}: index.json is malformed; build the index again with `refinery index`")


class HashingWriter:
    """A write-only file over a descriptor that hashes what goes through it."""

    def __init__(self, fd: int):
        self.fd, self.sha256, self.bytes = fd, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        self.sha256.update(view)
        self.bytes += len(view)
        write_all(self.fd, view)
        return len(data)

    def flush(self) -> None:
        pass


def write_part(folder: int, name: str, write: Callable[[HashingWriter], object]) -> tuple[str, dict[str, int | str]]:
    """Write a new file under a random name in `folder` (fileio.write_new); (that name, its size and SHA-256)."""

    def hashed(fd: int) -> dict[str, int | str]:
        writer = HashingWriter(fd)
        write(writer)
        return {"bytes": writer.bytes, "sha256": writer.sha256.hexdigest()}

    return write_new(folder, name, hashed, 0o644)


def not_an_index(path: Path) -> str:
    """Why `path` (a folder without index.json) is no index, and what to run instead: a folder
    of pictures is indexed into a folder of its own, never into itself."""
    index = path.with_name(path.name + ".index")
    if holds_a_picture(path):
        return (
            f"{path}: a folder of pictures, not a refinery index; index it first: "
            f"`refinery index {path} --out {index}`, then `refinery search {index} QUERY`"
        )
    return f"{path}: not a refinery index (no index.json in it); make one with `refinery index PHOTOS --out {path}`"


def unlink_quietly(folder: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass


def keys_bytes(keys: PictureKeys) -> bytes:
    """Picture keys as the bytes of an .npz file."""
    out = io.BytesIO()
    np.savez(out, sha256=keys.sha256, phash=keys.phash, dhash=keys.dhash, thumb=keys.thumb)
    return out.getvalue()


def load_keys(path: Path, rows: int) -> PictureKeys:
    """keys.npz, checked: an array of the wrong shape or type is a damaged index."""
    with np.load(path, allow_pickle=False) as data:
        return PictureKeys.from_arrays({name: data[name] for name in data.files}, rows)


def load_sift(path: Path) -> list[SiftFeatures]:
    data = np.load(path)
    bounds = np.concatenate([[0], np.cumsum(data["counts"])])
    return [
        SiftFeatures(data["descriptors"][a:b], data["points"][a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
