"""A folder gathered from everywhere (tests/hostile.py), through the real CLI: every entry gets
one report line, the run goes on past every bad file, memory stays bounded, links are
never followed out or broken, and a move of it all can be undone to the byte."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import hostile
from conftest import REPO, snapshot

# Peak memory of a run on the hostile folder: ~280 MB without the two 12000x9000 PNGs, ~630 MB
# with them (they decode one at a time); ~1,000 MB when both were decoded at once.
PEAK_MEMORY_LIMIT_MB = 800


HostileRun = tuple[Path, dict, subprocess.CompletedProcess, dict]  # folder's parent, expected, run, report


def run_cli_locked_out(*args: str) -> subprocess.CompletedProcess:
    """The real CLI in a child process; as root, without the power to read mode-000 files."""
    return subprocess.run(
        [sys.executable, "-m", "refinery", *args],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        cwd=REPO,
        preexec_fn=hostile.child_setup(),
    )


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> HostileRun:
    """The hostile folder, what is expected of each entry, one dry run with a JSON and CSV report."""
    base = tmp_path_factory.mktemp("hostile")
    root = base / "photos"
    expect = hostile.build(root, base / "elsewhere")
    before = snapshot(root)
    run = run_cli_locked_out(
        "dedup", str(root), "--report", str(base / "r.json"), "--csv", str(base / "r.csv"), "--device", "cpu"
    )
    assert snapshot(root) == before  # a dry run touches nothing
    report = json.loads((base / "r.json").read_text())
    return base, expect, run, report


def test_every_entry_gets_exactly_one_line(hostile_run: HostileRun) -> None:
    base, expect, run, report = hostile_run
    paths = [f["path"] for f in report["files"]]
    assert len(paths) == len(set(paths))
    assert set(paths) == set(expect)
    with open(base / "r.csv", encoding="utf-8", errors="surrogateescape", newline="") as f:
        assert sorted(row["path"] for row in csv.DictReader(f)) == sorted(paths)


def test_each_entry_is_decided_as_expected(hostile_run: HostileRun) -> None:
    _, expect, _, report = hostile_run
    for f in report["files"]:
        want = expect[f["path"]]
        if want.decision == "decided":
            assert f["decision"] in ("keep", "remove"), f
        else:
            assert f["decision"] == want.decision, f
        if want.decision == "remove":
            assert want.says in (f["stage"] or "") or want.says in f["reason"], f
        elif want.says:
            assert want.says in f["reason"], f
    summary = report["summary"]
    assert summary["files"] == len(expect) and not summary["interrupted"]
    assert summary["error"] == sum(e.decision == "error" for e in expect.values())


def test_bad_files_get_one_error_line_each_and_the_run_goes_on(hostile_run: HostileRun) -> None:
    base, expect, run, report = hostile_run
    assert run.returncode == 3  # finished; some files could not be read
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    bad = sorted(path for path, e in expect.items() if e.decision == "error")
    assert len(errors) == len(bad)
    for path, line in zip(bad, sorted(errors), strict=True):
        assert f"{base / 'photos' / path}: " in line and line.split(": ", 2)[2]  # names the file and why
    assert "dry run" in run.stdout


def test_a_phone_picture_is_judged_upright(hostile_run: HostileRun) -> None:
    """Stored on its side with EXIF orientation 6: the same picture as its upright twin."""
    *_, report = hostile_run
    files = {f["path"]: f for f in report["files"]}
    pair = files["upright.jpg"], files["phone_rotated.jpg"]
    assert sorted(f["decision"] for f in pair) == ["keep", "remove"]
    assert pair[0]["group"] == pair[1]["group"] is not None


def test_unusual_pixel_formats_are_seen_as_a_person_sees_them(hostile_run: HostileRun) -> None:
    """16-bit gray is scaled, not clipped to white; transparency does not read as dark or bright."""
    *_, report = hostile_run
    files = {f["path"]: f for f in report["files"]}
    for name in ("gray16.png", "rgba.png", "palette_transparent.png", "cmyk.jpg"):
        assert 60 < files[name]["scores"]["brightness"] < 200, files[name]


def test_memory_stays_bounded_on_huge_pictures_and_bombs(hostile_run: HostileRun) -> None:
    *_, report = hostile_run
    files = {f["path"]: f for f in report["files"]}
    assert files["huge.png"]["decision"] == files["sub/huge_too.png"]["decision"] == "keep"
    assert "over the limit of 120 Mpx" in files["bomb.png"]["reason"]
    assert report["summary"]["peak_memory_mb"] < PEAK_MEMORY_LIMIT_MB


def test_move_keeps_links_whole_and_undo_restores_every_entry(tmp_path: Path) -> None:
    """Moves never follow a link out, a link is moved as a link, and undo gives back the same tree."""
    root, outside, dest = tmp_path / "photos", tmp_path / "elsewhere", tmp_path / "rejects"
    hostile.build(root, outside, huge=False)
    before, outside_before = snapshot(root), snapshot(outside)

    run = run_cli_locked_out(
        "dedup",
        str(root),
        "--move-rejects-to",
        str(dest),
        "--follow-symlinks",
        "--report",
        str(tmp_path / "r.json"),
        "--device",
        "cpu",
    )
    assert run.returncode == 3, run.stderr
    files = {f["path"]: f for f in json.loads((tmp_path / "r.json").read_text())["files"]}
    # Followed: the link out is a copy of good_2.jpg, and the link (not its target) was moved.
    assert files["link_outside.jpg"]["decision"] == "remove" and files["link_outside.jpg"]["stage"] == "exact"
    assert (dest / "link_outside.jpg").is_symlink() and not (root / "link_outside.jpg").exists()
    assert snapshot(outside) == outside_before
    assert (root / "link_to_good.jpg").resolve() == (root / "good_1.jpg").resolve()  # its target stays
    assert files["link_to_good.jpg"]["decision"] == "skip"
    moved = {p for p, f in files.items() if f["decision"] == "remove"}
    assert moved and not moved & set(snapshot(root))

    undo = run_cli_locked_out("undo", str(dest))
    assert undo.returncode == 0 and f"restored {len(moved)} files" in undo.stdout, undo.stderr
    assert snapshot(root) == before
    again = run_cli_locked_out("undo", str(dest))
    assert again.returncode == 0 and "restored 0 files" in again.stdout
    assert snapshot(root) == before
