"""`refinery apply` moves, journals and undoes exactly as `dedup --move-rejects-to` does,
whatever links lie on the way (issue 24).

Through the real CLI on real files. A folder `photos/linked` is a symbolic link to a folder
outside: apply goes through it only when the run that judged the files did (the report's
summary, or the decisions saved from its page, say so), never through a link that run could
not have taken; the folder outside stays byte for byte, and undo restores every tree.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_review import DATA, browser  # noqa: F401 - the review page's headless Chromium
from test_safety import make_photos

from conftest import run_cli, snapshot

CPU = ("--device", "cpu")
THROUGH_LINK = {"linked/a_again.jpg", "linked/e_again.jpg"}


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    """(photos, elsewhere): photos (tests/test_safety.py's seven pictures) holds `linked`, a
    link to the folder `elsewhere` outside it, which holds exact copies of two of them."""
    photos, outside = make_photos(tmp_path / "photos"), tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "a_again.jpg").write_bytes((photos / "a.jpg").read_bytes())
    (outside / "e_again.jpg").write_bytes((photos / "e.jpg").read_bytes())
    (photos / "linked").symlink_to(outside, target_is_directory=True)
    return photos, outside


def judged(path: Path) -> dict:
    """A file as a report's `file` records it (through links, as a run that follows them reads it)."""
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def decisions(root: Path, lines: dict[str, str | None], keep: tuple[str, ...], **top: Any) -> dict:
    """A decisions file as the review page saves it: `lines` maps each removed file to its
    keeper (None: a quality reject), `keep` lists the kept files; `file` as found on disk now."""
    files = [{"path": p, "decision": "keep", "kept_as": None, "file": judged(root / p)} for p in keep]
    files += [{"path": p, "decision": "remove", "kept_as": k, "file": judged(root / p)} for p, k in lines.items()]
    return {"refinery_decisions": 1, "root": str(root.resolve()), **top, "files": files}


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def named(line: str) -> str:
    """The file an `error: PATH: why` line names."""
    return line.split(": ")[1]


def moved(dest: Path) -> set[str]:
    """What lies in DEST besides refinery's own folder."""
    return {rel for rel in snapshot(dest) if not rel.startswith(".refinery")}


def journal(dest: Path) -> list[dict]:
    return [json.loads(line) for line in (dest / ".refinery" / "journal.jsonl").read_text().splitlines()]


def journaled_moves(dest: Path) -> list[tuple]:
    return sorted((e["src"], e["dst"], e.get("sha256"), e.get("link")) for e in journal(dest) if e["op"] == "move")


# --- 1. a report of a run that followed links: apply journals and undoes as dedup does --------


def test_apply_of_a_run_that_followed_links_moves_and_undoes_as_dedup_does(
    linked: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, outside = linked
    before, outside_before = snapshot(photos), snapshot(outside)
    report = tmp_path / "r.json"
    assert run_cli("dedup", str(photos), "--follow-symlinks", "--report", str(report), *CPU).returncode == 0
    assert json.loads(report.read_text())["summary"]["follow_symlinks"] is True

    applied = tmp_path / "applied"
    proc = run_cli("apply", str(report), "--move-rejects-to", str(applied))
    assert proc.returncode == 0 and not errors(proc), proc.stderr
    assert THROUGH_LINK <= moved(applied) and f"moved {len(moved(applied))} of" in proc.stdout
    assert [e["follow_symlinks"] for e in journal(applied) if e["op"] == "run"] == [True]
    undo = run_cli("undo", str(applied))
    assert undo.returncode == 0, undo.stderr
    assert f"restored {len(journaled_moves(applied))} files; 0 could not" in undo.stdout
    assert snapshot(photos) == before and snapshot(outside) == outside_before

    # dedup moving by itself: the same moves, journaled the same way, undone the same way.
    deduped = tmp_path / "deduped"
    assert run_cli("dedup", str(photos), "--follow-symlinks", "--move-rejects-to", str(deduped), *CPU).returncode == 0
    assert journaled_moves(deduped) == journaled_moves(applied)
    assert [e["follow_symlinks"] for e in journal(deduped) if e["op"] == "run"] == [True]
    assert run_cli("undo", str(deduped)).returncode == 0
    assert snapshot(photos) == before and snapshot(outside) == outside_before


def test_the_review_page_saves_whether_its_run_followed_links(
    linked: tuple[Path, Path],
    tmp_path: Path,
    browser: tuple[Any, Path],  # noqa: F811
) -> None:
    """The page keeps the report's follow_symlinks and its "Save decisions" writes it; apply of
    that file goes through the link as the run did, and undo restores both trees."""
    photos, outside = linked
    before, outside_before = snapshot(photos), snapshot(outside)
    report, html = tmp_path / "r.json", tmp_path / "review.html"
    assert (
        run_cli(
            "dedup", str(photos), "--follow-symlinks", "--report", str(report), "--html", str(html), *CPU
        ).returncode
        == 0
    )
    found = DATA.search(html.read_text())
    assert found and json.loads(found.group(1))["follow_symlinks"] is True
    driver, downloads = browser
    driver.get(html.as_uri())
    driver.execute_script("document.getElementById('save').click()")
    saved, deadline = downloads / "decisions.json", time.monotonic() + 15
    while not saved.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    data = json.loads(saved.read_text())
    assert data["follow_symlinks"] is True and data["refinery_decisions"] == 1

    dest = tmp_path / "rejects"
    proc = run_cli("apply", str(saved), "--move-rejects-to", str(dest))
    assert proc.returncode == 0 and THROUGH_LINK <= moved(dest), proc.stderr
    assert run_cli("undo", str(dest)).returncode == 0
    assert snapshot(photos) == before and snapshot(outside) == outside_before


# --- 2. a run that did not follow links: nothing goes through one -----------------------------


@pytest.mark.parametrize("saved_by", ["a decisions file", "a decisions file saying false", "a report"])
def test_a_crafted_file_moves_nothing_through_a_link_its_run_did_not_follow(
    linked: tuple[Path, Path], tmp_path: Path, saved_by: str
) -> None:
    photos, outside = linked
    before, outside_before = snapshot(photos), snapshot(outside)
    data = decisions(
        photos,
        {"sub/a_copy.jpg": "a.jpg", "linked/a_again.jpg": "a.jpg", "linked/e_again.jpg": "e.jpg", "e_dark.jpg": None},
        keep=("a.jpg", "e.jpg"),
    )
    if saved_by == "a decisions file saying false":
        data["follow_symlinks"] = False
    elif saved_by == "a report":
        data = {"summary": {"root": data["root"]}, "files": data["files"]}
    dest = tmp_path / "rejects"
    proc = run_cli("apply", str(write(tmp_path / "d.json", data)), "--move-rejects-to", str(dest))
    assert proc.returncode == 3, proc.stderr
    lines = errors(proc)
    assert len(lines) == 2 and all("not moved" in line and "linked is a symbolic link" in line for line in lines)
    assert {named(line) for line in lines} == {str(photos / p) for p in THROUGH_LINK}
    assert moved(dest) == {"sub/a_copy.jpg", "e_dark.jpg"} and "moved 2 of 4 files" in proc.stdout
    assert snapshot(outside) == outside_before
    assert [e["follow_symlinks"] for e in journal(dest) if e["op"] == "run"] == [False]
    assert run_cli("undo", str(dest)).returncode == 0
    assert snapshot(photos) == before and snapshot(outside) == outside_before


def test_a_crafted_file_copies_nothing_through_a_link_its_run_did_not_follow(
    linked: tuple[Path, Path], tmp_path: Path
) -> None:
    """--copy-keepers-to reaches its files as moves do: what lies behind the link stays unread."""
    photos, _ = linked
    data = decisions(photos, {}, keep=("a.jpg", "linked/a_again.jpg", "linked/e_again.jpg"))
    dest = tmp_path / "keepers"
    proc = run_cli("apply", str(write(tmp_path / "d.json", data)), "--copy-keepers-to", str(dest))
    assert proc.returncode == 3, proc.stderr
    lines = errors(proc)
    assert len(lines) == 2 and all("not copied" in line and "linked is a symbolic link" in line for line in lines)
    assert moved(dest) == {"a.jpg"}
    data["follow_symlinks"] = True  # the run followed links: so may its copies
    proc = run_cli("apply", str(write(tmp_path / "d.json", data)), "--copy-keepers-to", str(tmp_path / "k2"))
    assert proc.returncode == 0, proc.stderr
    assert moved(tmp_path / "k2") == {"a.jpg"} | THROUGH_LINK


def test_a_keeper_reached_through_a_link_the_run_did_not_follow_is_not_kept(
    linked: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, outside = linked
    before, outside_before = snapshot(photos), snapshot(outside)
    data = decisions(
        photos, {"a.jpg": "linked/a_again.jpg", "e_dark.jpg": None}, keep=("linked/a_again.jpg", "sub/a_copy.jpg")
    )
    dest = tmp_path / "rejects"
    proc = run_cli("apply", str(write(tmp_path / "d.json", data)), "--move-rejects-to", str(dest))
    assert proc.returncode == 3, proc.stderr
    lines = errors(proc)
    assert len(lines) == 1 and f"{photos / 'a.jpg'}: not moved: its keeper linked/a_again.jpg" in lines[0]
    assert "linked is a symbolic link" in lines[0]
    assert (photos / "a.jpg").is_file() and moved(dest) == {"e_dark.jpg"}
    assert snapshot(outside) == outside_before
    assert run_cli("undo", str(dest)).returncode == 0
    assert snapshot(photos) == before


def test_a_run_that_followed_links_still_reaches_only_what_a_scan_reaches(
    linked: tuple[Path, Path], tmp_path: Path
) -> None:
    """Even when the run followed links, a hidden folder and a link to a folder inside the
    scanned one are not entered (the scan enters neither): those files stay, one line each."""
    photos, outside = linked
    (photos / ".hidden").mkdir()
    (photos / ".hidden" / "a2.jpg").write_bytes((photos / "a.jpg").read_bytes())
    (photos / "inner").symlink_to(photos / "sub", target_is_directory=True)
    before, outside_before = snapshot(photos), snapshot(outside)
    data = decisions(
        photos,
        {".hidden/a2.jpg": "a.jpg", "inner/a_copy.jpg": "a.jpg", "linked/a_again.jpg": "a.jpg"},
        keep=("a.jpg",),
        follow_symlinks=True,
    )
    dest = tmp_path / "rejects"
    proc = run_cli("apply", str(write(tmp_path / "d.json", data)), "--move-rejects-to", str(dest))
    assert proc.returncode == 3, proc.stderr
    lines = errors(proc)
    assert len(lines) == 2, proc.stderr
    assert any(".hidden/a2.jpg: not moved" in line and "hidden" in line.split("not moved")[1] for line in lines)
    assert any("inner/a_copy.jpg: not moved" in line and "inside the scanned folder" in line for line in lines)
    assert moved(dest) == {"linked/a_again.jpg"} and not (outside / "a_again.jpg").exists()
    assert [e["follow_symlinks"] for e in journal(dest) if e["op"] == "run"] == [True]
    assert run_cli("undo", str(dest)).returncode == 0
    assert snapshot(photos) == before and snapshot(outside) == outside_before


# --- 3. and 4. files that are not decisions: one line, nothing moved -------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"refinery_decisions": true, "root": "/tmp", "files": []}', "decisions version True"),
        (b'{"refinery_decisions": 1, "root": "/tmp", "follow_symlinks": "yes", "files": []}', "follow_symlinks"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"refinery_decisions": 1, "root": "/tmp", "files": ["\xff"]}', "not a decisions file"),
    ],
)
def test_a_file_that_is_not_decisions_is_one_line(
    linked: tuple[Path, Path], tmp_path: Path, content: bytes, says: str
) -> None:
    photos, _ = linked
    before = snapshot(photos)
    path = tmp_path / "d.json"
    path.write_bytes(content.replace(b'"/tmp"', json.dumps(str(photos)).encode()))
    proc = run_cli("apply", str(path), "--move-rejects-to", str(tmp_path / "rejects"))
    lines = [line for line in proc.stderr.splitlines() if line.lower().startswith("error")]
    assert proc.returncode == 1 and len(lines) == 1 and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and snapshot(photos) == before


# --- the dry run counts what the real run would move, by the same checks -----------------------


def test_the_dry_run_counts_only_what_would_really_move(linked: tuple[Path, Path], tmp_path: Path) -> None:
    photos, outside = linked
    data = decisions(
        photos,
        {"sub/a_copy.jpg": "a.jpg", "b_small.jpg": "b.png", "linked/a_again.jpg": "a.jpg", "e_dark.jpg": None},
        keep=("a.jpg", "b.png"),
    )
    (photos / "e_dark.jpg").write_bytes(b"changed since it was judged")
    path = write(tmp_path / "d.json", data)
    before, outside_before = snapshot(photos), snapshot(outside)
    dry = run_cli("apply", str(path))
    assert "2 files would be moved, 2 left as they are" in dry.stdout, dry.stdout + dry.stderr
    assert dry.returncode == 3 and {named(line) for line in errors(dry)} == {
        str(photos / "e_dark.jpg"),
        str(photos / "linked/a_again.jpg"),
    }
    assert snapshot(photos) == before and snapshot(outside) == outside_before and not (tmp_path / "rejects").exists()
    real = run_cli("apply", str(path), "--move-rejects-to", str(tmp_path / "rejects"))
    assert real.returncode == 3 and moved(tmp_path / "rejects") == {"sub/a_copy.jpg", "b_small.jpg"}, real.stderr
    assert sorted(errors(real)) == sorted(errors(dry))  # the same checks, the same lines
