"""A faulty feature cache (locked, damaged, unwritable) is one warning and the run goes on
without it; real SQLite files, a real second connection, the real CLI."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from refinery.features import THUMB, Features
from refinery.io.cache import FeatureCache

REL = "a/b.jpg"
SIZE, MTIME = 1234, 5_000_000_000


def features() -> Features:
    return Features(
        path=REL,
        file_size=SIZE,
        sha256="ab" * 32,
        width=320,
        height=240,
        sharpness=150.5,
        brightness=120.0,
        edge_density=0.05,
        dhash=2**63 + 5,
        phash=12345,
        thumb=bytes(range(256))[: THUMB * THUMB],
        compression=2.5,
    )


def filled_cache(cache_dir: Path, folder: Path) -> Path:
    """A cache holding one good row for REL; returns its file."""
    cache = FeatureCache(cache_dir, "model-hash", folder)
    cache.put(REL, SIZE, MTIME, features(), np.arange(8, dtype=np.float32))
    cache.close()
    assert cache.disabled is None
    return cache.path


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "refinery.io.cache" and r.levelname == "WARNING"]


def test_a_good_row_reads_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    filled_cache(tmp_path / "cache", tmp_path)
    cache = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
    hit = cache.get(REL, SIZE, MTIME)
    cache.close()
    assert hit is not None and hit[0] == features()
    np.testing.assert_array_equal(hit[1], np.arange(8, dtype=np.float32))
    assert cache_warnings(caplog) == []


def test_a_locked_cache_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = filled_cache(tmp_path / "cache", tmp_path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("PRAGMA journal_mode=DELETE")  # as an older program would keep it: readers wait too
        other.execute("BEGIN EXCLUSIVE")
        cache = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
        assert cache.get(REL, SIZE, MTIME) is None
        cache.put(REL, SIZE, MTIME, features(), None)
        cache.commit()
        cache.close()
    finally:
        other.close()
    [warning] = cache_warnings(caplog)
    assert str(path) in warning and "locked by another process" in warning and "without the cache" in warning
    assert cache.disabled and path.is_file() and not path.with_name(path.name + ".damaged").exists()


def test_a_cache_locked_during_the_run_stops_being_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = filled_cache(tmp_path / "cache", tmp_path)
    cache = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
    assert cache.get(REL, SIZE, MTIME) is not None
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # a WAL file: readers go on, writers wait
        cache.put("c.jpg", SIZE, MTIME, features(), None)
        cache.commit()  # waits the busy timeout, then gives up
        assert cache.get(REL, SIZE, MTIME) is None
        cache.close()
    finally:
        other.close()
    [warning] = cache_warnings(caplog)
    assert "locked by another process" in warning
    assert path.is_file() and not path.with_name(path.name + ".damaged").exists()


def test_a_briefly_busy_cache_is_waited_for(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = filled_cache(tmp_path / "cache", tmp_path)
    cache = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        release.start()
        cache.put("c.jpg", SIZE, MTIME, features(), None)
        cache.commit()
        release.join()
    finally:
        other.close()
    assert cache.get("c.jpg", SIZE, MTIME) is not None
    cache.close()
    assert cache_warnings(caplog) == [] and cache.disabled is None


def _set(column: str, value: object) -> Callable[[sqlite3.Connection], None]:
    return lambda db: db.execute(f"UPDATE files SET {column} = ?", (value,))


def _features_with(**changes: object) -> Callable[[sqlite3.Connection], None]:
    return _set("features", json.dumps({**features().to_dict(), **changes}))


def _features_without(key: str) -> Callable[[sqlite3.Connection], None]:
    d = features().to_dict()
    del d[key]
    return _set("features", json.dumps(d))


@pytest.mark.parametrize(
    "damage",
    [
        _set("features", "{not json"),
        _set("features", None),
        _set("features", json.dumps([1, 2, 3])),
        _features_without("width"),
        _features_with(extra=1),
        _features_with(width="abc"),
        _features_with(sharpness="NaN"),
        _features_with(dhash=-1),
        _features_with(sha256="abc"),
        _features_with(thumb="zz"),
        _features_with(thumb="00" * 10),
        _set("vector", b"\x00" * 5),
        _set("vector", b""),
        _set("vector", "text, not bytes"),
    ],
    ids=[
        "not-json",
        "null",
        "a-list",
        "missing-key",
        "unknown-key",
        "width-str",
        "sharpness-str",
        "negative-hash",
        "short-sha",
        "bad-hex",
        "short-thumb",
        "vector-5-bytes",
        "empty-vector",
        "vector-text",
    ],
)
def test_a_bad_row_is_damage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[sqlite3.Connection], None]
) -> None:
    path = filled_cache(tmp_path / "cache", tmp_path)
    with sqlite3.connect(path) as db:
        damage(db)
    db.close()
    cache = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
    assert cache.get(REL, SIZE, MTIME) is None
    cache.put(REL, SIZE, MTIME, features(), None)  # kept nowhere now
    cache.close()
    [warning] = cache_warnings(caplog)
    assert warning.startswith(f"{path}: damaged cache (bad row for {REL}: ")
    assert f"moved aside to {path.name}.damaged" in warning and "without the cache" in warning
    assert path.with_name(path.name + ".damaged").is_file() and not path.exists()
    # The next run starts a new cache, and it works.
    assert filled_cache(tmp_path / "cache", tmp_path) == path
    fresh = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
    assert fresh.get(REL, SIZE, MTIME) is not None
    fresh.close()


def test_vectors_of_another_width_are_damage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
    cache.put(REL, SIZE, MTIME, features(), np.zeros(8, np.float32))
    cache.put("c.jpg", SIZE, MTIME, features(), np.zeros(8, np.float32))
    cache.close()
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE files SET vector = ? WHERE path = ?", (np.zeros(4, np.float32).tobytes(), b"c.jpg"))
    db.close()
    cache = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
    assert cache.get(REL, SIZE, MTIME) is not None
    assert cache.get("c.jpg", SIZE, MTIME) is None
    cache.close()
    [warning] = cache_warnings(caplog)
    assert "bad row for c.jpg: vector of 4 floats, others have 8" in warning


def test_the_first_vector_read_is_checked_against_the_model_width(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
    cache.put(REL, SIZE, MTIME, features(), np.zeros(4, np.float32))  # a row of another model's width
    cache.close()
    cache = FeatureCache(tmp_path / "cache", "model-hash", tmp_path, vector_dim=8)
    assert cache.get(REL, SIZE, MTIME) is None
    cache.close()
    [warning] = cache_warnings(caplog)
    assert "vector of 4 floats, others have 8" in warning


def test_a_file_that_is_not_a_database_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = filled_cache(tmp_path / "cache", tmp_path)
    path.write_bytes(b"\x00garbage" * 1000)
    cache = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
    assert cache.get(REL, SIZE, MTIME) is None and cache.disabled is None  # a new, empty cache
    cache.put(REL, SIZE, MTIME, features(), None)
    cache.close()
    [warning] = cache_warnings(caplog)
    assert "damaged cache" in warning and "starting a new one" in warning
    assert path.with_name(path.name + ".damaged").read_bytes().startswith(b"\x00garbage")
    again = FeatureCache(tmp_path / "cache", "model-hash", tmp_path)
    assert again.get(REL, SIZE, MTIME) is not None
    again.close()


def test_an_unwritable_cache_folder_is_done_without(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "afile").write_text("a file, not a folder")
    cache = FeatureCache(tmp_path / "afile" / "cache", "model-hash", tmp_path)
    assert cache.get(REL, SIZE, MTIME) is None
    cache.put(REL, SIZE, MTIME, features(), None)
    cache.commit()
    cache.close()
    [warning] = cache_warnings(caplog)
    assert warning.startswith(f"{cache.path}: cannot create the cache folder") and "without the cache" in warning


def test_cli_goes_on_past_a_damaged_cache(image_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    first = run_cli("dedup", str(image_dir), "--device", "cpu", "--set", f"run.cache_dir={cache_dir}")
    assert first.returncode == 0, first.stderr
    [path] = cache_dir.glob("*.sqlite")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE files SET features = 'garbage'")
    db.close()
    proc = run_cli("dedup", str(image_dir), "--device", "cpu", "--set", f"run.cache_dir={cache_dir}")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    [warning] = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert str(path) in warning and "damaged cache (bad row for" in warning
    assert path.with_name(path.name + ".damaged").is_file()


def test_cli_goes_on_without_an_unwritable_cache_folder(image_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("a file, not a folder")
    cache_dir = tmp_path / "afile" / "cache"
    for extra in (["--no-cache"], []):
        proc = run_cli("dedup", str(image_dir), "--device", "cpu", "--set", f"run.cache_dir={cache_dir}", *extra)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
        if extra:
            assert warnings == []  # --no-cache: the cache folder is never touched
        else:
            [warning] = warnings
            assert str(cache_dir) in warning and "cannot create the cache folder" in warning
