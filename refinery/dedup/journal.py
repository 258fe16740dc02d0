"""The journal of a destination folder: DEST/.refinery/journal.jsonl, and its lock.

Every move is journaled, flushed to disk before the file moves, so `refinery undo DEST` can
put everything back even after a crash. One run holds DEST/.refinery/lock (flock) while it
moves, recovers or undoes; a second one is told at once who holds it. Each run starts with
a header; its moves name paths relative to the folder it scanned (src) and to DEST (dst):

    {"op": "run", "run": R, "version": 2, "root": ABS, "follow_symlinks": B, "started": ISO}
    {"op": "move", "run": R, "id": N, "src": REL, "dst": REL, "sha256": ..., "bytes": ...}   before
    {"op": "done", "run": R, "id": N}                                                         after
    {"op": "renamed", "run": R, "id": N, "dst": REL}     its name in DEST was taken meanwhile
    {"op": "cancelled", "run": R, "id": N}   it did not move (a crash before it did, an error)
    {"op": "undone", "run": R, "id": N}                                                 after undo

A moved symbolic link has {"link": TEXT} instead of sha256 and bytes.

Nothing read back is trusted beyond what is checked here: a line that is not one of these,
with these types, refuses the whole journal (one line saying which and why); paths must be
plain relative paths (no "/" first, no ".."), a destination never inside .refinery, and a
run's folder never inside DEST nor holding it. The folder .refinery and the journal are
opened without following links, and never as anything but a real folder and a regular file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinery.dedup.checks import Judged
from refinery.errors import DestinationBusy, JournalError, RefineryError, UnsafePath
from refinery.io.fileio import exists_at, is_regular, open_folder
from refinery.io.names import is_plain_path, is_sha256_hex

STATE = ".refinery"  # refinery's own folder inside DEST
JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = "lock"
JOURNAL = Path(STATE) / JOURNAL_NAME
JOURNAL_VERSION = 2
_FOLLOW_UPS = ("done", "cancelled", "undone", "renamed")


@dataclass(frozen=True)
class Moved:
    """What a move took away, as its journal line records it: a file's bytes (its size and
    SHA-256, as judged) or a symbolic link's text. Undo puts back only an entry that still is it."""

    size: int = -1
    sha256: str = ""
    link: str | None = None

    @classmethod
    def file(cls, judged: Judged) -> Moved:
        return cls(judged.size, judged.sha256)

    @property
    def is_link(self) -> bool:
        return self.link is not None

    def to_json(self) -> dict[str, int | str]:
        """The journal line's fields for it (sha256 before bytes, as every journal has them)."""
        return {"link": self.link} if self.link is not None else {"sha256": self.sha256, "bytes": self.size}

    @classmethod
    def from_json(cls, e: dict[str, Any]) -> Moved:
        """A move line's record, checked (ValueError: the journal was read back from disk)."""
        if "link" in e:
            _expect(e, link=str)
            return cls(link=e["link"])
        _expect(e, sha256=str, bytes=int)
        if not is_sha256_hex(e["sha256"]) or e["bytes"] < 0:
            raise ValueError("sha256 or bytes is malformed")
        return cls(e["bytes"], e["sha256"])


@dataclass
class Move:
    """A journaled move, as checked."""

    run: str
    id: int
    src: str  # relative to root
    dst: str  # relative to DEST
    moved: Moved  # what it took away
    root: Path  # the folder its run scanned
    follow_symlinks: bool  # whether that run went through links to folders
    state: str = "move"  # the last op journaled for it


@dataclass
class JournalState:
    """What a journal says: the runs' headers and every move, by (run, id)."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    moves: dict[tuple[str, int], Move] = field(default_factory=dict)

    def unfinished(self) -> list[Move]:
        """Moves journaled but never marked done or cancelled: a run was stopped during them."""
        return [m for m in self.moves.values() if m.state == "move"]

    def pending(self) -> list[Move]:
        """Moves done and not yet undone, newest first."""
        order = {run: k for k, run in enumerate(self.runs)}
        done = [m for m in self.moves.values() if m.state == "done"]
        return sorted(done, key=lambda m: (order[m.run], m.id), reverse=True)


class Journal:
    """DEST/.refinery/journal.jsonl, reached only through a real folder and a real file, and
    held under DEST/.refinery/lock. Use `open_journal`."""

    def __init__(self, dest: Path, state_fd: int):
        self.dest = Path(dest)
        self.path = self.dest / JOURNAL
        self._state_fd = state_fd
        self._fd: int | None = None
        self.run_id: str | None = None
        self._next_id = 1

    # reading

    def exists(self) -> bool:
        return exists_at(self._state_fd, JOURNAL_NAME)

    def read(self) -> JournalState:
        """Every line, checked; a line cut short by a crash (the last, without its newline) is
        left out, since its move never started. Anything else that is wrong refuses the journal."""
        data = self._read_bytes()
        lines = data.split(b"\n")
        lines.pop()  # the part after the last newline: empty, or a line a crash cut short
        state = JournalState()
        real_dest = Path(os.path.realpath(self.dest))
        for number, raw in enumerate(lines, start=1):
            try:
                _apply(state, json.loads(raw), real_dest)
            except (ValueError, TypeError, KeyError) as e:
                raise JournalError(
                    f"{self.path} line {number}: {_why(e)}; refinery will not act on a journal it "
                    "cannot trust (move it aside to start a new one)"
                ) from None
        return state

    def _read_bytes(self) -> bytes:
        try:
            fd = os.open(JOURNAL_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=self._state_fd)
        except FileNotFoundError:
            return b""
        except OSError as e:
            raise JournalError(f"{self.path}: cannot read it: {_unsafe(e)}") from None
        with os.fdopen(fd, "rb") as f:
            if not is_regular(os.fstat(f.fileno())):
                raise JournalError(f"{self.path} is not a regular file; refinery will not read or write it")
            return f.read()

    # writing

    def start_run(self, root: Path, follow_symlinks: bool) -> None:
        """Write this run's header; its moves are numbered from 1."""
        self.run_id = uuid.uuid4().hex
        self._next_id = 1
        self.append(
            {
                "op": "run",
                "run": self.run_id,
                "version": JOURNAL_VERSION,
                "root": str(Path(root).resolve()),
                "follow_symlinks": follow_symlinks,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def append(self, entry: dict[str, Any]) -> None:
        """Add one line and make sure it is on disk before the caller goes on. A line that
        cannot be written whole is taken back (the file keeps its earlier length)."""
        # Not fileio.write_new (a new file, flushed, then named): the journal is one file that
        # grows a line at a time, each on disk before its move begins, and an old line is never
        # rewritten; a new file a line would mean renaming over the journal.
        fd = self._open_for_append()
        line = (json.dumps(entry) + "\n").encode("utf-8", "surrogatepass")
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise JournalError(f"{self.path}: cannot write the journal: {e.strerror or e}") from None

    def _open_for_append(self) -> int:
        if self._fd is None:
            try:
                fd = os.open(
                    JOURNAL_NAME,
                    os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                    0o644,
                    dir_fd=self._state_fd,
                )
            except OSError as e:
                raise JournalError(f"{self.path}: cannot open the journal: {_unsafe(e)}") from None
            if not is_regular(os.fstat(fd)):
                os.close(fd)
                raise JournalError(f"{self.path} is not a regular file; refinery will not write to it")
            _drop_cut_line(fd)
            self._fd = fd
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _drop_cut_line(fd: int) -> None:
    """A last line without its newline was cut short by a crash before its move began: drop it,
    so the next line starts clean (the lock is held: nobody else writes)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = size
    while start > 0:
        block = os.pread(fd, min(4096, start), max(0, start - 4096))
        cut = block.rfind(b"\n")
        if cut >= 0:
            start = start - len(block) + cut + 1
            break
        start -= len(block)
    os.ftruncate(fd, start)


def _why(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return "not JSON"
    if isinstance(e, KeyError):
        return f"lacks {e}"
    return str(e)


def _unsafe(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "it is a symbolic link"
    return e.strerror or str(e)


def _apply(state: JournalState, e: object, real_dest: Path) -> None:
    """Check one journal line and fold it into `state`; ValueError/TypeError/KeyError if wrong."""
    if not isinstance(e, dict):
        raise TypeError("not a JSON object")
    op = e.get("op")
    if op == "run":
        _expect(e, run=str, version=int, root=str, follow_symlinks=bool)
        if e["version"] != JOURNAL_VERSION:
            raise ValueError(f"journal version {e['version']}; this refinery reads version {JOURNAL_VERSION}")
        if not os.path.isabs(e["root"]) or "\x00" in e["root"]:
            raise ValueError("the run's folder is not an absolute path")
        real_root = Path(os.path.realpath(e["root"]))
        if real_root == real_dest or real_dest in real_root.parents or real_root in real_dest.parents:
            raise ValueError(f"the run's folder {e['root']} is, holds or lies inside this folder")
        if e["run"] in state.runs:
            raise ValueError(f"run {e['run']} starts twice")
        state.runs[e["run"]] = e
        return
    if op not in ("move", *_FOLLOW_UPS):
        raise ValueError(f"unknown op {op!r}" if op is not None else "no op")
    _expect(e, run=str, id=int)
    if e["run"] not in state.runs:
        raise ValueError(f"run {e['run']!r} has no header line before it")
    if isinstance(e["id"], bool) or e["id"] < 1:
        raise ValueError("id must be a whole number from 1")
    key = (e["run"], e["id"])
    if op == "move":
        _expect(e, src=str, dst=str)
        if key in state.moves:
            raise ValueError(f"move {e['id']} of run {e['run']} is journaled twice")
        header = state.runs[e["run"]]
        state.moves[key] = Move(
            e["run"],
            e["id"],
            _relative(e["src"], "src"),
            _destination(e["dst"]),
            Moved.from_json(e),
            Path(header["root"]),
            header["follow_symlinks"],
        )
        return
    move = state.moves.get(key)
    if move is None:
        raise ValueError(f"{op} of move {e['id']}, which was never journaled")
    if op == "renamed":
        _expect(e, dst=str)
        move.dst = _destination(e["dst"])
    else:
        move.state = op


def _expect(e: dict[str, Any], **types: type) -> None:
    for key, kind in types.items():
        if key not in e:
            raise KeyError(key)
        if not isinstance(e[key], kind) or (kind is int and isinstance(e[key], bool)):
            raise TypeError(f"{key} must be a {kind.__name__}")


def _relative(value: str, what: str) -> str:
    """A relative path that stays below its folder: no leading /, no '..', '.' or empty parts."""
    if not is_plain_path(value):
        raise ValueError(f"{what} {value!r} is not a plain path below its folder")
    return value


def _destination(value: str) -> str:
    rel = _relative(value, "dst")
    if rel.split("/")[0] == STATE:
        raise ValueError(f"dst {value!r} is inside refinery's own folder")
    return rel


@contextmanager
def open_journal(dest: Path, create: bool) -> Iterator[Journal]:
    """The journal of `dest`, with its lock held for the whole block.

    With `create`, DEST and DEST/.refinery are made if missing (a dedup run); without, a
    DEST with no journal is an error and nothing is created there (undo).
    Raises DestinationBusy at once if another run holds the lock, naming it.
    """
    dest = Path(dest)
    try:
        if create:
            dest.mkdir(parents=True, exist_ok=True)
        state_fd = open_folder(dest, [STATE], create=create)
    except FileNotFoundError:
        raise JournalError(f"{dest}: no refinery journal ({JOURNAL}); nothing was moved there") from None
    except UnsafePath:
        raise JournalError(
            f"{dest / STATE} is a symbolic link or not a folder; refinery keeps its journal "
            "only in a real folder (move it aside)"
        ) from None
    except OSError as e:
        raise RefineryError(f"{dest}: cannot write there: {e.strerror or e}") from None
    journal = Journal(dest, state_fd)
    try:
        if not create and not journal.exists():
            raise JournalError(f"{dest}: no refinery journal ({JOURNAL}); nothing was moved there")
        with _locked(dest, state_fd):
            try:
                yield journal
            finally:
                journal.close()
    finally:
        os.close(state_fd)


@contextmanager
def _locked(dest: Path, state_fd: int) -> Iterator[None]:
    try:
        fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644, dir_fd=state_fd)
    except OSError as e:
        raise RefineryError(f"{dest / STATE / LOCK_NAME}: cannot open the lock: {_unsafe(e)}") from None
    try:
        if not is_regular(os.fstat(fd)):
            raise RefineryError(f"{dest / STATE / LOCK_NAME} is not a regular file; move it aside")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 500, 0).decode("utf-8", "replace").strip() or "another refinery run"
            raise DestinationBusy(
                f"{dest} is in use by {holder}; wait for it to finish, or choose another folder"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(
                fd,
                f"pid {os.getpid()} on {socket.gethostname()} ({_command()}, since "
                f"{time.strftime('%H:%M:%S')})\n".encode(),
                0,
            )
        except OSError:
            pass  # a full disk: the lock holds all the same, only its note is missing
        yield
    finally:
        os.close(fd)  # releases the lock


def _command() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    words = ["refinery" if name in ("__main__.py", "refinery") else name, *sys.argv[1:3]]
    return " ".join(words)[:200]
