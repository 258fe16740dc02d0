"""Killed or interrupted mid-run, through the real CLI in a subprocess: the cache stays sound,
the journal stays whole, the next run finishes the job, and undo gives back every byte."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import REPO, draw_picture, run_cli, snapshot

PICTURES = 90  # each with an exact copy and a re-encoded copy: 270 files, 180 to move


def build_burst(root: Path) -> None:
    """Distinct pictures as PNG, each with an exact copy and a JPEG re-encode in other folders."""
    for folder in ("png", "copies", "jpeg"):
        (root / folder).mkdir(parents=True)
    for i in range(PICTURES):
        picture = draw_picture(1000 + i, (480, 360))
        picture.save(root / "png" / f"p{i:03d}.png", compress_level=1)
        (root / "copies" / f"p{i:03d}.png").write_bytes((root / "png" / f"p{i:03d}.png").read_bytes())
        picture.save(root / "jpeg" / f"p{i:03d}.jpg", quality=90)


@pytest.fixture
def burst(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """(folder, environment with a private cache for the CLI runs)."""
    root = tmp_path / "photos"
    build_burst(root)
    return root, {"XDG_CACHE_HOME": str(tmp_path / "cache")}


def start_cli(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    import os

    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "refinery", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **env},
        )


def wait_until(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 300) -> None:
    """Poll `ready` every millisecond until true; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.001)


def cache_file(env: dict[str, str]) -> Path | None:
    found = list((Path(env["XDG_CACHE_HOME"]) / "refinery" / "features").glob("*.sqlite"))
    return found[0] if found else None


def cached_rows(env: dict[str, str]) -> int:
    path = cache_file(env)
    if path is None:
        return 0
    try:
        with sqlite3.connect(path, timeout=0.1) as db:
            return db.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not there yet, or locked for a moment
        return 0


def journal_ops(dest: Path) -> list[dict]:
    """The journal's whole lines (a line being written, without its newline yet, is left out)."""
    path = dest / ".refinery" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().split("\n")[:-1]] if path.exists() else []


def assert_journal_consistent(ops: list[dict]) -> None:
    """Every line whole; every move after its run's header; every settle refers to an earlier
    move; ids unique in a run; at most one move (the one under way when the process died)
    left unsettled."""
    runs: set[str] = set()
    moves: dict[tuple[str, int], str] = {}
    for op in ops:
        if op["op"] == "run":
            assert op["run"] not in runs
            runs.add(op["run"])
            continue
        key = (op["run"], op["id"])
        assert op["run"] in runs
        if op["op"] == "move":
            assert key not in moves and {"src", "dst", "sha256"} <= set(op)
            moves[key] = "move"
        else:
            assert op["op"] in ("done", "cancelled", "undone", "renamed") and key in moves
            if op["op"] != "renamed":
                moves[key] = op["op"]
    assert sum(state == "move" for state in moves.values()) <= 1


def decisions(report: Path) -> dict[str, tuple]:
    return {f["path"]: (f["decision"], f["stage"], f["kept_as"]) for f in json.loads(report.read_text())["files"]}


def contents(*roots: Path) -> Counter:
    """The multiset of file contents under `roots` (journal files aside): nothing lost, nothing doubled."""
    return Counter(
        entry[1]
        for root in roots
        for rel, entry in snapshot(root).items()
        if entry[0] == "file" and not rel.startswith(".refinery")
    )


def test_killed_while_embedding_the_cache_is_sound_and_the_next_run_finishes(burst: tuple, tmp_path: Path) -> None:
    root, env = burst
    reference = tmp_path / "reference.json"
    assert run_cli("dedup", str(root), "--no-cache", "--report", str(reference), env=env).returncode == 0

    proc = start_cli(
        "dedup",
        str(root),
        "--report",
        str(tmp_path / "killed.json"),
        "--set",
        "run.workers=1",
        env=env,
        log=tmp_path / "killed.log",
    )
    wait_until(proc, lambda: cached_rows(env) >= 16, "16 files in the cache")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed.json").exists()  # no half-written report
    assert not list(tmp_path.glob(".killed.json*"))

    with sqlite3.connect(cache_file(env)) as db:  # type: ignore[arg-type]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT count(*) FROM files").fetchone()[0]
    assert 16 <= rows < 2 * PICTURES  # part of the work, not all of it

    resumed = run_cli("dedup", str(root), "--report", str(tmp_path / "resumed.json"), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "resumed.json").read_text())["summary"]["cached"] == rows
    assert decisions(tmp_path / "resumed.json") == decisions(reference)


def test_killed_while_moving_the_next_run_finishes_and_undo_restores_every_byte(burst: tuple, tmp_path: Path) -> None:
    root, env = burst
    dest = tmp_path / "rejects"
    before, original = snapshot(root), contents(root)
    reference = tmp_path / "reference.json"
    assert run_cli("dedup", str(root), "--report", str(reference), env=env).returncode == 0  # fills the cache
    removed = {p for p, d in decisions(reference).items() if d[0] == "remove"}

    proc = start_cli("dedup", str(root), "--move-rejects-to", str(dest), env=env, log=tmp_path / "killed.log")
    wait_until(proc, lambda: len(journal_ops(dest)) >= 7, "a few moves")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    ops = journal_ops(dest)
    assert_journal_consistent(ops)
    assert sum(op["op"] == "done" for op in ops) < len(removed)  # killed part-way
    after = contents(root, dest)  # a file caught between link and unlink has two names: counted twice
    assert all(after[sha] >= n for sha, n in original.items())  # nothing lost

    again = run_cli("dedup", str(root), "--move-rejects-to", str(dest), env=env)
    assert again.returncode == 0, again.stderr
    assert_journal_consistent(journal_ops(dest))
    assert set(snapshot(root)) == set(before) - removed
    moved = {rel for rel in snapshot(dest) if not rel.startswith(".refinery") and (dest / rel).is_file()}
    assert moved == removed  # each once, under its own name: no "name.1.png" from the half-done move

    undo = run_cli("undo", str(dest))
    assert undo.returncode == 0, undo.stderr
    assert snapshot(root) == before


def test_ctrl_c_while_reading_writes_a_partial_report_and_moves_nothing(burst: tuple, tmp_path: Path) -> None:
    root, env = burst
    dest, report = tmp_path / "rejects", tmp_path / "partial.json"
    before = snapshot(root)
    proc = start_cli(
        "dedup",
        str(root),
        "--report",
        str(report),
        "--move-rejects-to",
        str(dest),
        "--set",
        "run.workers=1",
        env=env,
        log=tmp_path / "run.log",
    )
    wait_until(proc, lambda: cached_rows(env) >= 16, "16 files in the cache")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    output = (tmp_path / "run.log").read_text()
    assert "interrupted" in output and "Traceback" not in output
    data = json.loads(report.read_text())
    assert data["summary"]["interrupted"] is True
    assert len(data["files"]) == 3 * PICTURES  # every file has its line
    not_reached = [f for f in data["files"] if f["decision"] == "skip"]
    assert not_reached and all("interrupted" in f["reason"] for f in not_reached)
    assert snapshot(root) == before and not journal_ops(dest)


def test_ctrl_c_while_moving_stops_between_files_with_the_journal_whole(burst: tuple, tmp_path: Path) -> None:
    root, env = burst
    dest = tmp_path / "rejects"
    before = snapshot(root)
    assert run_cli("dedup", str(root), env=env).returncode == 0  # fills the cache
    proc = start_cli("dedup", str(root), "--move-rejects-to", str(dest), env=env, log=tmp_path / "run.log")
    wait_until(proc, lambda: len(journal_ops(dest)) >= 7, "a few moves")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert "interrupted" in (tmp_path / "run.log").read_text()
    ops = journal_ops(dest)
    assert_journal_consistent(ops)
    moves = [op for op in ops if op["op"] == "move"]
    assert sum(op["op"] == "done" for op in ops) == len(moves) < 2 * PICTURES  # none half-done

    assert run_cli("undo", str(dest)).returncode == 0
    assert snapshot(root) == before


def test_a_damaged_cache_is_set_aside(dup_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = dup_folder
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    run_cli("dedup", str(root), env=env)
    damaged = cache_file(env)
    assert damaged is not None
    damaged.write_bytes(b"\x00garbage" * 1000)
    proc = run_cli("dedup", str(root), env=env)
    assert proc.returncode == 3 and "damaged cache" in proc.stderr  # 3: dup_folder holds a broken file
    assert "; 0 from the cache" in proc.stdout
    assert "; 11 from the cache" in run_cli("dedup", str(root), env=env).stdout  # the new cache works
