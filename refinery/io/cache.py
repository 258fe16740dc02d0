"""Per-file results kept between runs: features and embedding, keyed by path, size and mtime.

A second run on an unchanged folder reads them instead of decoding and embedding again; a
changed file (other size or mtime) misses and is computed anew. One SQLite file per model
(vectors depend on it), in the user's cache folder, never in the scanned folder (a dry run
touches nothing there). SQLite commits atomically, so a killed run leaves a usable cache.

The cache only saves time, so no fault of it stops a run: a cache that is locked by another
process, damaged, or cannot be written is one warning, and the run goes on without it. A
damaged file is moved aside (NAME.damaged) so that the next run starts a new one. Nothing
read back is trusted: a row that does not make a valid Features record counts as damage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from refinery.features import FEATURES_VERSION, THUMB, Features
from refinery.io.fileio import cache_home, file_sha256
from refinery.io.names import is_sha256_hex

if TYPE_CHECKING:
    from refinery.config import Config
    from refinery.runner.session import Embedder

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # the table's layout (2: paths as bytes, so any file name fits)
BUSY_TIMEOUT_S = 2.0  # how long to wait for a cache another process is briefly writing to

# SQLite's primary result codes (the low byte of an extended code), by what they mean here.
_LOCKED_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED: someone else holds it
_UNUSABLE_CODES = {3, 7, 8, 10, 13, 14, 23}  # PERM, NOMEM, READONLY, IOERR, FULL, CANTOPEN, AUTH: not its fault
_UNUSABLE_WORDS = ("unable to open", "readonly", "disk i/o", "full", "permission", "out of memory")


class BadRow(ValueError):
    """A row read back from the cache that does not hold what refinery wrote."""


def default_cache_dir() -> Path:
    return cache_home() / "features"


class FeatureCache:
    """A table of (folder, path, size, mtime) -> features, vector, for one model.

    After a fault (`disabled` says which) get finds nothing and put and commit keep nothing.
    """

    def __init__(self, cache_dir: Path, model_sha256: str, root: Path, variant: str = "", vector_dim: int = 0):
        cache_dir = Path(cache_dir)
        # Features computed another way (an older refinery) live in another file, never mixed in.
        # `variant`: vectors of another part of each picture (the face) live in a file of their own.
        tag = f"{model_sha256[:16]}-{variant}" if variant else model_sha256[:16]
        self.path = cache_dir / f"{tag}-v{SCHEMA_VERSION}-f{FEATURES_VERSION}.sqlite"
        self.folder = hashlib.sha256(os.fsencode(Path(root).resolve())).hexdigest()[:16]
        self.pending: list[tuple[str, bytes, int, int, str, bytes | None]] = []  # rows of the files table
        self.db: sqlite3.Connection | None = None
        self.disabled: str | None = None  # why the cache is off for this run, or None
        # The width of this model's vectors: given (the model's output_dim), or the first one seen.
        self._vector_bytes = 4 * vector_dim
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._switch_off(f"cannot create the cache folder ({e.strerror or e})")
            return
        try:
            self.db = self._open()
        except sqlite3.Error as e:
            if _kind(e) != "damaged":
                self._fault(e)
                return
            # Not a database (a disk fault, a stray write): set it aside and start afresh.
            moved = self._move_aside()
            try:
                self.db = self._open()
            except sqlite3.Error as again:
                self._switch_off(f"damaged cache ({e}); {moved}; a new one failed too ({again})")
                return
            log.warning("%s: damaged cache (%s); %s, starting a new one", self.path, e, moved)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("""CREATE TABLE IF NOT EXISTS files (
                folder TEXT, path BLOB, size INTEGER, mtime_ns INTEGER, features TEXT, vector BLOB,
                PRIMARY KEY (folder, path))""")
            db.execute("SELECT count(*) FROM files WHERE folder = ''").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def get(self, rel: str, size: int, mtime_ns: int) -> tuple[Features, np.ndarray | None] | None:
        """The features and vector kept for `rel` if it is unchanged, else None."""
        if self.db is None:
            return None
        try:
            row = self.db.execute(
                "SELECT size, mtime_ns, features, vector FROM files WHERE folder=? AND path=?",
                (self.folder, os.fsencode(rel)),
            ).fetchone()
        except sqlite3.Error as e:
            self._fault(e)
            return None
        if row is None or row[0] != size or row[1] != mtime_ns:
            return None
        try:
            return self._decode(row[2], row[3])
        except BadRow as e:
            self._damaged(f"bad row for {rel}: {e}")
            return None

    def _decode(self, features: object, blob: object) -> tuple[Features, np.ndarray | None]:
        """A row's features and vector, checked to be what put wrote; BadRow if not."""
        try:
            f = Features.from_dict(json.loads(features))  # type: ignore[arg-type]
        except Exception as e:  # any garbage: not JSON, not a dict, missing or unknown keys, bad hex
            raise BadRow(f"features: {type(e).__name__}: {e}") from e
        _check_features(f)
        if blob is None:
            return f, None
        if not isinstance(blob, bytes) or len(blob) == 0 or len(blob) % 4:
            raise BadRow(
                f"vector of {len(blob) if isinstance(blob, bytes) else type(blob).__name__} bytes, not float32s"
            )
        self._check_width(len(blob))
        return f, np.frombuffer(blob, dtype=np.float32).copy()

    def _check_width(self, nbytes: int) -> None:
        """Every vector of one model has one width: the first one seen sets it."""
        if self._vector_bytes and nbytes != self._vector_bytes:
            raise BadRow(f"vector of {nbytes // 4} floats, others have {self._vector_bytes // 4}")
        self._vector_bytes = nbytes

    def put(self, rel: str, size: int, mtime_ns: int, features: Features, vector: np.ndarray | None) -> None:
        """Keep `rel`'s features and vector; written at the next commit."""
        if self.db is None:
            return
        blob = None if vector is None else np.asarray(vector, np.float32).tobytes()
        if blob:
            self._vector_bytes = self._vector_bytes or len(blob)
        self.pending.append((self.folder, os.fsencode(rel), size, mtime_ns, json.dumps(features.to_dict()), blob))

    def commit(self) -> None:
        """Write what was put since the last commit, in one transaction."""
        if self.pending and self.db is not None:
            try:
                with self.db:
                    self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", self.pending)
            except sqlite3.Error as e:
                self._fault(e)
        self.pending.clear()

    def close(self) -> None:
        self.commit()
        self._disconnect()

    def _fault(self, e: sqlite3.Error) -> None:
        """Switch the cache off after SQLite's error `e`; a damaged file is moved aside."""
        kind = _kind(e)
        if kind == "locked":
            self._switch_off(f"is locked by another process ({e})")
        elif kind == "unusable":
            self._switch_off(f"cannot use the cache ({e})")
        else:
            self._damaged(str(e))

    def _damaged(self, reason: str) -> None:
        self._disconnect()
        self._switch_off(f"damaged cache ({reason}); {self._move_aside()}")

    def _switch_off(self, why: str) -> None:
        """One warning line; from here on the cache keeps and finds nothing."""
        self._disconnect()
        self.pending.clear()
        self.disabled = why
        log.warning("%s: %s; going on without the cache", self.path, why)

    def _move_aside(self) -> str:
        """Rename the cache file to NAME.damaged (the next run starts a new one); says what it did."""
        aside = self.path.with_name(self.path.name + ".damaged")
        try:
            os.replace(self.path, aside)
            for extra in ("-wal", "-shm"):
                Path(f"{self.path}{extra}").unlink(missing_ok=True)
        except OSError as e:
            return f"could not move it aside ({e.strerror or e})"
        return f"moved aside to {aside.name}"

    def _disconnect(self) -> None:
        if self.db is not None:
            db, self.db = self.db, None
            try:
                db.close()
            except sqlite3.Error as e:
                log.debug("%s: close: %s", self.path, e)


def _kind(e: sqlite3.Error) -> str:
    """What SQLite's error says of the file: 'locked' (another process holds it), 'unusable'
    (cannot be opened or written here, no fault of the file) or 'damaged'."""
    if not isinstance(e, sqlite3.DatabaseError):  # misuse of the API, not the file's fault
        return "unusable"
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        primary = code & 0xFF
        return "locked" if primary in _LOCKED_CODES else "unusable" if primary in _UNUSABLE_CODES else "damaged"
    text = str(e).lower()
    if "locked" in text or "busy" in text:
        return "locked"
    return "unusable" if any(word in text for word in _UNUSABLE_WORDS) else "damaged"


def _check_features(f: Features) -> None:
    """BadRow unless every field of `f` has the type and range that measure() gives it."""
    problems = [
        name
        for name, ok in (
            ("path", isinstance(f.path, str)),
            ("sha256", is_sha256_hex(f.sha256)),
            ("file_size", _whole(f.file_size, 0, 2**63)),
            ("width", _whole(f.width, 1, 2**31)),
            ("height", _whole(f.height, 1, 2**31)),
            ("dhash", _whole(f.dhash, 0, 2**64)),
            ("phash", _whole(f.phash, 0, 2**64)),
            ("thumb", len(f.thumb) in (0, THUMB * THUMB)),
            *((name, _number(getattr(f, name))) for name in ("sharpness", "brightness", "edge_density", "compression")),
        )
        if not ok
    ]
    if problems:
        raise BadRow(f"features: bad {', '.join(problems)}")


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < high


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def open_cache(cfg: Config, embedder: Embedder, folder: Path, variant: str = "") -> FeatureCache | None:
    """The feature cache for this model and folder (`variant`: "faces" for face crops), or
    None when the settings switch it off (run.cache)."""
    if not cfg.run.cache:
        return None
    return FeatureCache(
        Path(cfg.run.cache_dir) if cfg.run.cache_dir else default_cache_dir(),
        file_sha256(embedder.path),
        folder,
        variant,
        embedder.spec.output_dim,
    )
