"""Moves are journaled, never overwrite, are checked against what was judged, and can always be undone."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from refinery.dedup.actions import move_out
from refinery.dedup.checks import Judged, Planned
from refinery.dedup.copies import copy_out
from refinery.dedup.journal import JOURNAL, open_journal
from refinery.dedup.undo import recover, undo
from refinery.errors import RefineryError
from refinery.io.fileio import file_sha256


def make(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def judged(path: Path) -> Judged:
    st = os.stat(path)
    return Judged(st.st_size, st.st_mtime_ns, file_sha256(path))


def plan(root: Path, *rels: str, keeper: str | None = None) -> list[Planned]:
    """What a run would plan for `rels` as they are on disk now."""
    return [Planned(rel, judged(root / rel), keeper, judged(root / keeper) if keeper else None) for rel in rels]


def move(root: Path, dest: Path, items: list[Planned], follow: bool = False):  # noqa: ANN201
    with open_journal(dest, create=True) as journal:
        return move_out(root, items, journal, follow_symlinks=follow)


def undo_all(dest: Path):  # noqa: ANN201
    with open_journal(dest, create=False) as journal:
        return undo(journal)


def journal_lines(dest: Path) -> list[dict]:
    return [json.loads(line) for line in (dest / JOURNAL).read_text().splitlines()]


def test_move_keeps_relative_paths_and_journals_first(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "a/x.jpg", b"x")
    make(root, "y.jpg", b"y")
    result = move(root, dest, plan(root, "a/x.jpg", "y.jpg"))
    assert result.done == 2
    assert (dest / "a" / "x.jpg").read_bytes() == b"x" and not (root / "a" / "x.jpg").exists()
    lines = journal_lines(dest)
    assert [e["op"] for e in lines] == ["run", "move", "done", "move", "done"]
    assert lines[0]["root"] == str(root.resolve()) and lines[1]["src"] == "a/x.jpg" and lines[1]["dst"] == "a/x.jpg"


def test_a_taken_name_is_never_overwritten(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(dest, "x.jpg", b"already here")
    make(root, "x.jpg", b"new")
    move(root, dest, plan(root, "x.jpg"))
    assert (dest / "x.jpg").read_bytes() == b"already here"
    assert (dest / "x.1.jpg").read_bytes() == b"new"
    undo_all(dest)
    assert (root / "x.jpg").read_bytes() == b"new" and (dest / "x.jpg").read_bytes() == b"already here"


def test_a_file_changed_since_it_was_judged_stays(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "keeper.jpg", b"k")
    make(root, "copy.jpg", b"k")
    items = plan(root, "copy.jpg", keeper="keeper.jpg")
    st = os.stat(root / "copy.jpg")
    (root / "copy.jpg").write_bytes(b"n")  # same size; new bytes
    os.utime(root / "copy.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old time: only the hash tells
    result = move(root, dest, items)
    assert (result.done, result.failed) == (0, 1)
    assert (root / "copy.jpg").read_bytes() == b"n" and "changed since it was judged (its bytes)" in caplog.text
    assert [e["op"] for e in journal_lines(dest)] == ["run"]  # nothing journaled: nothing moved


@pytest.mark.parametrize("what", ["deleted", "changed"])
def test_a_duplicate_whose_keeper_is_gone_or_changed_stays(
    tmp_path: Path, what: str, caplog: pytest.LogCaptureFixture
) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "keeper.jpg", b"k")
    make(root, "copy.jpg", b"k")
    items = plan(root, "copy.jpg", keeper="keeper.jpg")
    if what == "deleted":
        (root / "keeper.jpg").unlink()
    else:
        (root / "keeper.jpg").write_bytes(b"something else")
    assert move(root, dest, items).failed == 1
    assert (root / "copy.jpg").read_bytes() == b"k"
    assert "its keeper keeper.jpg" in caplog.text


def test_undo_after_a_crash_before_the_move(tmp_path: Path) -> None:
    """Journal line written, then killed before the file moved: settled as cancelled, file in place."""
    root, dest = tmp_path / "root", tmp_path / "dest"
    src = make(root, "x.jpg", b"x")
    with open_journal(dest, create=True) as journal:
        journal.start_run(root, False)
        journal.append(
            {
                "op": "move",
                "run": journal.run_id,
                "id": 1,
                "src": "x.jpg",
                "dst": "x.jpg",
                "sha256": file_sha256(src),
                "bytes": 1,
            }
        )
    result = undo_all(dest)
    assert (result.done, result.skipped) == (0, 0)
    assert src.read_bytes() == b"x"
    assert journal_lines(dest)[-1]["op"] == "cancelled"


def test_a_move_killed_between_link_and_unlink_is_rolled_back_and_done_by_the_next_run(tmp_path: Path) -> None:
    """Recovery never removes a file from the scanned folder: the second name, in DEST, goes."""
    root, dest = tmp_path / "root", tmp_path / "dest"
    src = make(root, "x.jpg", b"x")
    make(root, "y.jpg", b"y")
    with open_journal(dest, create=True) as journal:
        journal.start_run(root, False)
        journal.append(
            {
                "op": "move",
                "run": journal.run_id,
                "id": 1,
                "src": "x.jpg",
                "dst": "x.jpg",
                "sha256": file_sha256(src),
                "bytes": 1,
            }
        )
        (dest / "x.jpg").hardlink_to(src)  # killed here: one file, two names
        assert recover(journal) == 1
    assert src.read_bytes() == b"x" and not (dest / "x.jpg").exists()
    assert journal_lines(dest)[-1]["op"] == "cancelled"
    move(root, dest, plan(root, "x.jpg", "y.jpg"))
    assert (dest / "x.jpg").read_bytes() == b"x" and not src.exists()  # under its own name, not x.1.jpg
    assert undo_all(dest).done == 2
    assert sorted(p.name for p in root.iterdir()) == ["x.jpg", "y.jpg"]


def test_a_copy_left_by_a_stopped_run_never_costs_the_original(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    src = make(root, "x.jpg", b"x")
    make(dest, "x.jpg", b"x")  # a finished copy across filesystems; killed before the source went
    with open_journal(dest, create=True) as journal:
        journal.start_run(root, False)
        journal.append(
            {
                "op": "move",
                "run": journal.run_id,
                "id": 1,
                "src": "x.jpg",
                "dst": "x.jpg",
                "sha256": file_sha256(src),
                "bytes": 1,
            }
        )
        recover(journal)
    assert src.read_bytes() == b"x" and (dest / "x.jpg").read_bytes() == b"x"


def test_undo_leaves_a_file_that_changed_since_it_was_moved(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "x.jpg", b"x")
    move(root, dest, plan(root, "x.jpg"))
    (dest / "x.jpg").write_bytes(b"edited in the rejects folder")
    assert (undo_all(dest).done, (dest / "x.jpg").exists()) == (0, True)
    assert "changed since it was moved" in caplog.text


def test_a_link_moves_as_a_link(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    target = make(tmp_path / "elsewhere", "t.jpg", b"t")
    root.mkdir()
    (root / "l.jpg").symlink_to(target)
    move(root, dest, plan(root, "l.jpg"), follow=True)
    assert os.readlink(dest / "l.jpg") == str(target) and target.read_bytes() == b"t"
    undo_all(dest)
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
    items = plan(root, "l.jpg", "big.jpg")  # the link first: it is checked through its target
    dest = Path(tempfile.mkdtemp(dir=other))
    try:
        assert move(root, dest, items, follow=True).done == 2
        assert (dest / "big.jpg").read_bytes() == data and not (root / "big.jpg").exists()
        assert os.readlink(dest / "l.jpg") == "big.jpg"
        assert not [p for p in dest.rglob("*") if p.name.endswith(".refinery-tmp")]
        assert undo_all(dest).done == 2
        assert (root / "big.jpg").read_bytes() == data and os.readlink(root / "l.jpg") == "big.jpg"
    finally:
        shutil.rmtree(dest)


def test_undo_skips_a_file_the_user_moved_away(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "x.jpg", b"x")
    make(root, "y.jpg", b"y")
    move(root, dest, plan(root, "x.jpg", "y.jpg"))
    (dest / "x.jpg").rename(tmp_path / "elsewhere.jpg")
    result = undo_all(dest)
    assert (result.done, result.skipped) == (1, 1)
    assert (root / "y.jpg").read_bytes() == b"y"
    assert "no longer there" in caplog.text


def test_undo_without_journal_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(RefineryError, match="no refinery journal"):
        undo_all(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_damaged_last_journal_line_is_dropped(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "x.jpg", b"x")
    move(root, dest, plan(root, "x.jpg"))
    with open(dest / JOURNAL, "a") as f:
        f.write('{"op": "move", "run": "x", "id": 2, "src": "nowh')  # cut short by a crash
    assert undo_all(dest).done == 1
    assert (root / "x.jpg").read_bytes() == b"x"
    assert journal_lines(dest)[-1]["op"] == "undone"  # the cut line is gone, every line parses


def test_copy_out_copies_what_was_judged_and_never_overwrites(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, dest = tmp_path / "root", tmp_path / "dest"
    make(root, "a/x.jpg", b"x")
    make(root, "y.jpg", b"y")
    make(dest, "a/x.jpg", b"someone else's")
    items = plan(root, "a/x.jpg", "y.jpg")
    (root / "y.jpg").write_bytes(b"changed after the scan")
    result = copy_out(root, items, dest)
    assert (result.done, result.failed) == (1, 1)
    assert (dest / "a" / "x.jpg").read_bytes() == b"someone else's" and (dest / "a" / "x.1.jpg").read_bytes() == b"x"
    assert not (dest / "y.jpg").exists() and "y.jpg: not copied" in caplog.text
    assert not [p for p in dest.rglob("*") if p.name.endswith(".refinery-tmp")]
