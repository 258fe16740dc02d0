"""Per-file results kept between runs: features and embedding, keyed by path, size and mtime.

A second run on an unchanged folder reads them instead of decoding and embedding again; a
changed file (other size or mtime) misses and is computed anew. One SQLite file per model
(vectors depend on it), in the user's cache folder, never in the scanned folder (a dry run
touches nothing there). SQLite commits atomically, so a killed run leaves a usable cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from pathlib import Path

import numpy as np

from refinery.features import FEATURES_VERSION, Features

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # the table's layout (2: paths as bytes, so any file name fits)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "refinery" / "features"


class FeatureCache:
    """A table of (folder, path, size, mtime) -> features, vector, for one model."""

    def __init__(self, cache_dir: Path, model_sha256: str, root: Path, variant: str = ""):
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Features computed another way (an older refinery) live in another file, never mixed in.
        # `variant`: vectors of another part of each picture (the face) live in a file of their own.
        tag = f"{model_sha256[:16]}-{variant}" if variant else model_sha256[:16]
        self.path = cache_dir / f"{tag}-v{SCHEMA_VERSION}-f{FEATURES_VERSION}.sqlite"
        self.folder = hashlib.sha256(os.fsencode(Path(root).resolve())).hexdigest()[:16]
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as e:  # not a database (a disk fault, a stray write): start afresh
            aside = self.path.with_name(self.path.name + ".damaged")
            log.warning("%s: damaged cache (%s); moved aside to %s, starting a new one", self.path, e, aside.name)
            os.replace(self.path, aside)
            for extra in ("-wal", "-shm"):
                Path(f"{self.path}{extra}").unlink(missing_ok=True)
            self.db = self._open()
        self.pending: list[tuple] = []

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("""CREATE TABLE IF NOT EXISTS files (
                folder TEXT, path BLOB, size INTEGER, mtime_ns INTEGER, features TEXT, vector BLOB,
                PRIMARY KEY (folder, path))""")
            db.execute("SELECT count(*) FROM files WHERE folder = ''").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def get(self, rel: str, size: int, mtime_ns: int) -> tuple[Features, np.ndarray | None] | None:
        row = self.db.execute("SELECT size, mtime_ns, features, vector FROM files WHERE folder=? AND path=?",
                              (self.folder, os.fsencode(rel))).fetchone()
        if row is None or row[0] != size or row[1] != mtime_ns:
            return None
        vector = np.frombuffer(row[3], dtype=np.float32).copy() if row[3] is not None else None
        return Features.from_dict(json.loads(row[2])), vector

    def put(self, rel: str, size: int, mtime_ns: int, features: Features, vector: np.ndarray | None) -> None:
        blob = None if vector is None else np.asarray(vector, np.float32).tobytes()
        self.pending.append((self.folder, os.fsencode(rel), size, mtime_ns, json.dumps(features.to_dict()), blob))

    def commit(self) -> None:
        """Write what was put since the last commit, in one transaction."""
        if self.pending:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", self.pending)
            self.pending.clear()

    def close(self) -> None:
        self.commit()
        self.db.close()

