"""Moves are journaled, never overwrite, and can always be undone."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from refinery.actions import Journal, fingerprint, free_name, move_out, recover, undo
from refinery.errors import RefineryError


def make(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_move_keeps_relative_paths_and_journals_first(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "a/x.jpg", b"x")
    make(root, "y.jpg", b"y")
    result = move_out(root, ["a/x.jpg", "y.jpg"], dest)
    assert result.done == 2
    assert (dest / "a" / "x.jpg").read_bytes() == b"x" and not (root / "a" / "x.jpg").exists()
    ops = [e["op"] for e in Journal(dest).entries()]
    assert ops == ["move", "done", "move", "done"]


def test_a_taken_name_is_never_overwritten(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(dest, "x.jpg", b"already here")
    make(root, "x.jpg", b"new")
    move_out(root, ["x.jpg"], dest)
    assert (dest / "x.jpg").read_bytes() == b"already here"
    assert (dest / "x.1.jpg").read_bytes() == b"new"
    assert free_name(dest / "x.jpg") == dest / "x.2.jpg"
    undo(dest)
    assert (root / "x.jpg").read_bytes() == b"new" and (dest / "x.jpg").read_bytes() == b"already here"


def test_undo_after_a_crash_before_the_move(tmp_path: Path) -> None:
    """Journal line written, then killed before the file moved: settled as cancelled, file in place."""
    root, dest = tmp_path / "root", tmp_path / "dest"
    src = make(root, "x.jpg", b"x")
    Journal(dest).append({"op": "move", "id": 1, "src": str(src), "dst": str(dest / "x.jpg")})
    result = undo(dest)
    assert (result.done, result.skipped) == (0, 0)
    assert src.read_bytes() == b"x"
    assert Journal(dest).moves()[1]["state"] == "cancelled"


def test_a_move_killed_between_link_and_unlink_is_finished_by_the_next_run(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    src = make(root, "x.jpg", b"x")
    make(root, "y.jpg", b"y")
    journal = Journal(dest)
    journal.append({"op": "move", "id": 1, "src": str(src), "dst": str(dest / "x.jpg"), **fingerprint(src)})
    (dest / "x.jpg").hardlink_to(src)  # killed here: one file, two names
    assert recover(journal) == 1
    assert not src.exists() and (dest / "x.jpg").read_bytes() == b"x"
    move_out(root, ["y.jpg"], dest)
    assert [m["state"] for m in Journal(dest).moves().values()] == ["done", "done"]
    assert undo(dest).done == 2
    assert sorted(p.name for p in root.iterdir()) == ["x.jpg", "y.jpg"]


def test_undo_leaves_a_file_that_changed_since_it_was_moved(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "x.jpg", b"x")
    move_out(root, ["x.jpg"], dest)
    (dest / "x.jpg").write_bytes(b"edited in the rejects folder")
    assert (undo(dest).done, (dest / "x.jpg").exists()) == (0, True)
    assert "changed since it was moved" in caplog.text


def test_a_link_moves_as_a_link(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    target = make(tmp_path / "elsewhere", "t.jpg", b"t")
    root.mkdir()
    (root / "l.jpg").symlink_to(target)
    move_out(root, ["l.jpg"], dest)
    assert os.readlink(dest / "l.jpg") == str(target) and target.read_bytes() == b"t"
    undo(dest)
    assert os.readlink(root / "l.jpg") == str(target)


def other_filesystem(near: Path) -> Path | None:
    """A writable folder on another filesystem than `near` (/dev/shm is tmpfs on Linux)."""
    for candidate in (Path("/dev/shm"), Path("/run/user") / str(os.getuid())):
        if candidate.is_dir() and os.access(candidate, os.W_OK) and candidate.stat().st_dev != near.stat().st_dev:
            return candidate
    return None


def test_a_move_across_filesystems_copies_verifies_then_removes(tmp_path: Path) -> None:
    other = other_filesystem(tmp_path)
    if other is None:
        pytest.skip("no second filesystem to move to")
    root = tmp_path / "root"
    data = os.urandom(3 << 20)
    make(root, "big.jpg", data)
    (root / "l.jpg").symlink_to("big.jpg")
    dest = Path(tempfile.mkdtemp(dir=other))
    try:
        assert move_out(root, ["big.jpg", "l.jpg"], dest).done == 2
        assert (dest / "big.jpg").read_bytes() == data and not (root / "big.jpg").exists()
        assert os.readlink(dest / "l.jpg") == "big.jpg"
        assert not list(dest.glob(".*refinery-tmp"))
        assert undo(dest).done == 2
        assert (root / "big.jpg").read_bytes() == data and os.readlink(root / "l.jpg") == "big.jpg"
    finally:
        shutil.rmtree(dest)


def test_undo_skips_a_file_the_user_moved_away(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "x.jpg", b"x")
    make(root, "y.jpg", b"y")
    move_out(root, ["x.jpg", "y.jpg"], dest)
    (dest / "x.jpg").rename(tmp_path / "elsewhere.jpg")
    result = undo(dest)
    assert (result.done, result.skipped) == (1, 1)
    assert (root / "y.jpg").read_bytes() == b"y"
    assert "no longer there" in caplog.text


def test_undo_without_journal_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RefineryError, match="no refinery journal"):
        undo(tmp_path)


def test_damaged_last_journal_line_is_skipped(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "x.jpg", b"x")
    move_out(root, ["x.jpg"], dest)
    with open(dest / ".refinery" / "journal.jsonl", "a") as f:
        f.write('{"op": "move", "id": 2, "src": "/nowh')  # cut short by a crash
    assert undo(dest).done == 1
    assert (root / "x.jpg").read_bytes() == b"x"
    assert json.loads((dest / ".refinery" / "journal.jsonl").read_text().splitlines()[-1])["op"] == "undone"
