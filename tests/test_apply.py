"""`refinery apply`: a decisions file (as the review page saves it) or a report, acted on
with dedup's checks, journal and undo; nothing read from it is trusted beyond its checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli, snapshot


@pytest.fixture
def reviewed(dup_folder: tuple[Path, dict], tmp_path: Path) -> tuple[Path, dict]:
    """(folder, decisions as the review page saves them) after a dry run."""
    root, _ = dup_folder
    report = tmp_path / "r.json"
    assert run_cli("dedup", str(root), "--report", str(report), "--device", "cpu").returncode == 3
    data = json.loads(report.read_text())
    files = [
        {k: f[k] for k in ("path", "decision", "kept_as", "file")}
        for f in data["files"]
        if f["decision"] in ("keep", "remove")
    ]
    return root, {"refinery_decisions": 1, "root": data["summary"]["root"], "files": files}


def write(tmp_path: Path, decisions: dict) -> Path:
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(decisions))
    return path


def line(decisions: dict, path: str) -> dict:
    return next(f for f in decisions["files"] if f["path"] == path)


def test_apply_moves_exactly_what_was_approved_and_undo_restores(reviewed: tuple[Path, dict], tmp_path: Path) -> None:
    root, decisions = reviewed
    before = snapshot(root)
    line(decisions, "b_small.jpg").update(decision="keep", kept_as=None)  # "keep too"
    approved = {f["path"] for f in decisions["files"] if f["decision"] == "remove"}
    dest = tmp_path / "rejects"
    proc = run_cli("apply", str(write(tmp_path, decisions)), "--move-rejects-to", str(dest))
    assert proc.returncode == 0, proc.stderr
    moved = {rel for rel, entry in snapshot(dest).items() if entry[0] == "file" and not rel.startswith(".refinery")}
    assert moved == approved and "b_small.jpg" not in moved
    assert run_cli("undo", str(dest)).returncode == 0
    assert snapshot(root) == before


def test_a_file_changed_since_the_report_is_left(reviewed: tuple[Path, dict], tmp_path: Path) -> None:
    root, decisions = reviewed
    (root / "sub" / "a_copy.jpg").write_bytes(b"changed since")
    proc = run_cli("apply", str(write(tmp_path, decisions)), "--move-rejects-to", str(tmp_path / "rejects"))
    assert proc.returncode == 3
    assert "sub/a_copy.jpg: not moved: it changed since it was judged" in proc.stderr
    assert (root / "sub" / "a_copy.jpg").read_bytes() == b"changed since"


def test_a_duplicate_whose_keeper_is_not_kept_stays(reviewed: tuple[Path, dict], tmp_path: Path) -> None:
    root, decisions = reviewed
    line(decisions, "a.jpg").update(decision="remove", kept_as=None)  # its copy now keeps nothing
    proc = run_cli("apply", str(write(tmp_path, decisions)), "--move-rejects-to", str(tmp_path / "rejects"))
    assert proc.returncode == 3
    assert "its keeper a.jpg is not kept in the decisions" in proc.stderr
    assert (root / "sub" / "a_copy.jpg").exists()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d.update(refinery_decisions=2), "decisions version 2"),
        (lambda d: d["files"][0].update(path="../../etc/passwd"), "not a plain path below the root"),
        (lambda d: d["files"][0].update(decision="delete"), "is not keep or remove"),
        (lambda d: d["files"][0].update(file={"bytes": "many"}), "file must hold"),
        (lambda d: d.update(root="relative/folder"), "no absolute root"),
    ],
)
def test_a_bad_decisions_file_is_one_line_and_moves_nothing(
    reviewed: tuple[Path, dict], tmp_path: Path, change, says: str
) -> None:  # noqa: ANN001
    root, decisions = reviewed
    before = snapshot(root)
    change(decisions)
    proc = run_cli("apply", str(write(tmp_path, decisions)), "--move-rejects-to", str(tmp_path / "rejects"))
    errors = [x for x in proc.stderr.splitlines() if x.lower().startswith("error")]
    assert proc.returncode == 1 and len(errors) == 1 and says in errors[0], proc.stderr
    assert snapshot(root) == before
