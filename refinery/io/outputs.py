"""The one rule for every file a command writes: never over one of its inputs, never over a
file refinery did not write.

A command names its outputs (the path, the option that gave it, what it holds) and its
inputs, and calls `check_outputs` before any work. An output is refused, in one line, when

- it is one of the inputs (the report being read, a video, a query, a checkpoint), or a
  folder that is or holds an input folder;
- two outputs of the command are the same file;
- something is already there that refinery did not write: a user's file, a folder, a
  symbolic link, a FIFO. refinery knows its own files by a mark each kind carries at its
  start (`Kind`), so a second run may replace the first run's report, and nothing else;
- its folder cannot be written.

`output_path` then writes the file under a temporary name and gives it its name with
link(2), which fails if the name was taken meanwhile; only a file that still carries
refinery's mark is replaced. New files inside an input folder are fine (a report beside
the pictures); an existing picture there carries no mark and is refused.
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

from refinery.errors import OutputRefused, RefineryError
from refinery.io.fileio import atomic_path, check_writable, write_bytes_atomic

SNIFF_BYTES = 4096  # refinery's mark stands within a file's first 4 KB
PAGE_MARK = '<meta name="generator" content="refinery">'  # in the <head> of every page refinery writes
ONNX_MARK = b"\x12\x08refinery"  # producer_name "refinery", the second field of an exported ModelProto
CSV_MARK = "path,decision,stage,reason,"  # the start of the header row of refinery's CSV report
GZIP_NAME = "refinery-vocab.txt"  # the name in the gzip header of a vocabulary refinery wrote
CHECKPOINT_MARK = "refinery train checkpoint"  # the value of the key "refinery" in train's checkpoint


class Kind(Enum):
    """What an output holds, and so how refinery knows an earlier one of its own."""

    # JSON files: their first key "refinery" names what they are (`marked`).
    REPORT = "a refinery dedup report"
    FRAMES_REPORT = "a refinery frames report"
    EVAL = "a refinery eval result"
    SPEC = "a model spec refinery wrote"
    CSV = "a refinery CSV report"
    PAGE = "a refinery page"  # review pages, contact sheets
    NPZ = "a refinery embeddings file"
    ONNX = "a model refinery exported"
    VOCAB = "a vocabulary refinery wrote"
    CHECKPOINT = "a checkpoint refinery train wrote"


# The first key of every JSON file refinery writes: {"refinery": "dedup report", ...}. A report
# never replaces a model's spec, nor an eval result a report that `apply` still needs.
JSON_MARKS = {
    Kind.REPORT: "dedup report",
    Kind.FRAMES_REPORT: "frames report",
    Kind.EVAL: "eval",
    Kind.SPEC: "model spec",
}


@dataclass(frozen=True)
class Output:
    """A file a command will write: where, the option that named it (for the message), what."""

    path: Path
    flag: str
    kind: Kind


def check_outputs(
    outputs: Iterable[Output | None],
    inputs: Iterable[Path | None] = (),
    destinations: Iterable[tuple[str, Path | None]] = (),
) -> None:
    """Refuse now, in one line, any output that would land on an input, on another output, or
    on a file refinery did not write; and any whose folder cannot be written.

    `inputs` are the files and folders the command reads (missing ones are ignored);
    `destinations` (option, folder) the folders files are moved or copied into, where no
    output may go (it could take a moved file's name, or the journal's).
    """
    outs = [o for o in outputs if o is not None]
    ins = [Path(p) for p in inputs if p is not None and os.path.lexists(p)]
    for flag, dest in destinations:
        for out in outs:
            if dest is not None and _holds(dest, out.path):
                raise OutputRefused(
                    f"{out.flag} {out.path} is inside {flag} {dest}, where files are moved or "
                    "copied; write it elsewhere"
                )
    seen: dict[tuple[int, int] | str, Output] = {}
    for out in outs:
        key = _identity(out.path)
        if key in seen:
            raise OutputRefused(
                f"{out.flag} {out.path} and {seen[key].flag} {seen[key].path} are the same file; give each its own name"
            )
        seen[key] = out
        for source in ins:
            _refuse_input(out, source)
        refuse_unless_ours(out.path, out.kind, out.flag)
        check_writable(out.path)


def refuse_unless_ours(path: Path, kind: Kind, flag: str = "") -> None:
    """Nothing at `path`, or a regular file that carries refinery's mark for `kind`;
    else OutputRefused naming what is there."""
    what = f"{flag} {path}" if flag else str(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise OutputRefused(f"{what}: cannot write there: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputRefused(
            f"{what} is a symbolic link; refinery writes no file through a link or over one: give another name"
        )
    if stat.S_ISDIR(st.st_mode):
        raise OutputRefused(f"{what} is a folder; give the name of a file to write")
    if not stat.S_ISREG(st.st_mode):
        raise OutputRefused(f"{what} is not a regular file (a FIFO, a device or a socket); give another name")
    if not is_ours(path, kind):
        raise OutputRefused(
            f"{what} already exists and is not {kind.value}; refinery writes over nothing it "
            "did not write: give another name, or move that file away yourself"
        )


def is_ours(path: Path, kind: Kind) -> bool:
    """Whether the regular file at `path` carries refinery's mark for `kind`. Opened without
    following a link and without blocking; a file that cannot be read is not ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        with os.fdopen(os.dup(fd), "rb") as f:
            return _SNIFFERS[kind](f)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, gzip.BadGzipFile):
        return False
    finally:
        os.close(fd)


@contextmanager
def output_path(path: Path, kind: Kind) -> Iterator[Path]:
    """A temporary path beside `path` to write the whole output to; on success it takes
    `path`'s name: by link(2) where the name is free, by rename only over a file that still
    carries refinery's mark for `kind` (checked again now: it may have changed since the
    command checked it). On error nothing is left and `path` is as it was."""
    path = Path(path)
    try:
        with atomic_path(path, place=lambda tmp: _place(tmp, path, kind)) as tmp:
            yield tmp
    except OSError as e:  # a full disk, a folder that went away
        raise RefineryError(f"cannot write {path}: {e.strerror or e}; it is as it was") from None


def remove_own(path: Path, kind: Kind) -> None:
    """Remove an earlier output of refinery's at `path` (a model's sidecar that would contradict
    the new model); nothing there is fine, anything else is OutputRefused."""
    refuse_unless_ours(path, kind)
    Path(path).unlink(missing_ok=True)


def marked(kind: Kind, data: dict[str, Any]) -> dict[str, Any]:
    """`data` as a JSON output of refinery's: its mark first, the key "refinery" naming its kind."""
    return {"refinery": JSON_MARKS[kind], **data}


def write_output(path: Path, kind: Kind, data: str | bytes) -> None:
    """Write a whole output at once, as `output_path` does; a full disk is one line."""
    write_bytes_atomic(
        Path(path), data.encode() if isinstance(data, str) else data, place=lambda tmp: _place(tmp, Path(path), kind)
    )


def _place(tmp: Path, path: Path, kind: Kind) -> None:
    while True:
        try:
            os.link(tmp, path)
            return
        except FileExistsError:
            refuse_unless_ours(path, kind)
            try:
                os.replace(tmp, path)
                return
            except FileNotFoundError:  # `path` went away between the two: link again
                continue


def _refuse_input(out: Output, source: Path) -> None:
    target = out.path
    if _same(target, source):
        raise OutputRefused(f"{out.flag} {target} is an input of this command ({source}); write it elsewhere")
    if not source.is_dir():
        return
    if os.path.isdir(target) and _holds(target, source):
        raise OutputRefused(f"{out.flag} {target} holds {source}, an input of this command; write it elsewhere")
    if os.path.lexists(target) and _holds(source, target) and not is_ours(target, out.kind):
        raise OutputRefused(f"{out.flag} {target} is a file in {source}, an input of this command; write it elsewhere")


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _holds(folder: Path, inner: Path) -> bool:
    return Path(os.path.realpath(inner)).is_relative_to(os.path.realpath(folder))


def _identity(path: Path) -> tuple[int, int] | str:
    """What names one file: its device and inode where it exists, else its absolute path."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return os.path.realpath(path)


def _json_sniffer(kind: Kind) -> Callable[[BinaryIO], bool]:
    mark = re.compile(rb'\s*\{\s*"refinery"\s*:\s*"' + re.escape(JSON_MARKS[kind].encode()) + b'"')
    return lambda f: mark.match(f.read(SNIFF_BYTES)) is not None


def _sniff_csv(f: BinaryIO) -> bool:
    return f.readline(SNIFF_BYTES).startswith(CSV_MARK.encode())


def _sniff_page(f: BinaryIO) -> bool:
    return PAGE_MARK.encode() in f.read(SNIFF_BYTES)


def _sniff_npz(f: BinaryIO) -> bool:
    with zipfile.ZipFile(f) as z:
        return sorted(z.namelist()) == ["paths.npy", "vectors.npy"]


def _sniff_onnx(f: BinaryIO) -> bool:
    # Protobuf writes fields in their order: ir_version (1, a varint), then producer_name (2),
    # which refinery's export sets (refinery/export/onnx.py set_metadata).
    return f.read(16).find(ONNX_MARK) in (2, 3, 4)


def _sniff_vocab(f: BinaryIO) -> bool:
    head = f.read(512)
    # gzip header: magic, method, flags (FNAME = 8), mtime, xfl, os, then the zero-ended name.
    if head[:3] != b"\x1f\x8b\x08" or not head[3] & 8:
        return False
    return head[10 : 10 + len(GZIP_NAME) + 1] == GZIP_NAME.encode() + b"\0"


def _sniff_checkpoint(f: BinaryIO) -> bool:
    # torch.save writes a zip whose ARCHIVE/data.pkl is the pickled dict, its strings as they are.
    with zipfile.ZipFile(f) as z:
        pickles = [name for name in z.namelist() if name.endswith("/data.pkl")]
        return len(pickles) == 1 and CHECKPOINT_MARK.encode() in z.read(pickles[0])


_SNIFFERS = {
    **{kind: _json_sniffer(kind) for kind in JSON_MARKS},
    Kind.CSV: _sniff_csv,
    Kind.PAGE: _sniff_page,
    Kind.NPZ: _sniff_npz,
    Kind.ONNX: _sniff_onnx,
    Kind.VOCAB: _sniff_vocab,
    Kind.CHECKPOINT: _sniff_checkpoint,
}
