"""Moves are journaled, never overwrite, and can always be undone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refinery.actions import Journal, free_name, move_out, undo
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
    """Journal line written, then killed before the file moved: undo finds it in place."""
    root, dest = tmp_path / "root", tmp_path / "dest"
    src = make(root, "x.jpg", b"x")
    Journal(dest).append({"op": "move", "id": 1, "src": str(src), "dst": str(dest / "x.jpg")})
    result = undo(dest)
    assert (result.done, result.skipped) == (0, 1)
    assert src.read_bytes() == b"x"


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
