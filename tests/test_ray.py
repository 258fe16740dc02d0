"""`refinery dedup --engine ray` on a local Ray instance (2 CPUs here) decides exactly as the
local engine does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

pytest.importorskip("ray", reason="the Ray engine needs the [ray] extra")


def decisions(report: Path) -> dict[str, tuple]:
    return {
        f["path"]: (f["decision"], f["stage"], f["kept_as"], f["group"])
        for f in json.loads(report.read_text())["files"]
    }


@pytest.mark.slow
def test_ray_engine_decides_like_the_local_engine(dup_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, expected = dup_folder
    local, ray = tmp_path / "local.json", tmp_path / "ray.json"
    first = run_cli("dedup", str(root), "--report", str(local), "--no-cache", "--device", "cpu")
    cache = {"RAY_USAGE_STATS_ENABLED": "0", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    second = run_cli("dedup", str(root), "--engine", "ray", "--report", str(ray), "--device", "cpu", env=cache)
    assert first.returncode == second.returncode == 3, second.stderr  # one unreadable file, named by both
    assert "broken.jpg" in second.stderr
    assert decisions(ray) == decisions(local)
    assert set(decisions(ray)) == set(expected)
    summary = json.loads(ray.read_text())["summary"]
    assert summary["provider"] == "ray" and summary["cached"] == 0

    # What Ray computed went to the cache: a second run sends nothing to the cluster.
    again = tmp_path / "again.json"
    third = run_cli("dedup", str(root), "--engine", "ray", "--report", str(again), "--device", "cpu", env=cache)
    assert third.returncode == 3 and "broken.jpg" in third.stderr
    assert decisions(again) == decisions(local)
    assert json.loads(again.read_text())["summary"]["cached"] == len(expected) - 1  # all but broken.jpg


def test_a_uri_needs_the_ray_engine_and_cannot_be_moved_into() -> None:
    proc = run_cli("dedup", "s3://bucket/photos")
    assert proc.returncode == 2 and "only --engine ray reads those" in proc.stderr
    proc = run_cli("dedup", "s3://bucket/photos", "--engine", "ray", "--move-rejects-to", "/tmp/x")
    assert proc.returncode == 2 and "needs a local FOLDER" in proc.stderr


@pytest.mark.slow
def test_a_uri_is_listed_and_read_by_ray_data(dup_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, expected = dup_folder
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.jpg").write_bytes((root / "a.jpg").read_bytes())
    (root / "notes.txt").write_text("not a picture")
    local, uri = tmp_path / "local.json", tmp_path / "uri.json"
    run_cli("dedup", str(root), "--report", str(local), "--no-cache", "--device", "cpu")
    proc = run_cli(
        "dedup",
        root.as_uri(),
        "--engine",
        "ray",
        "--report",
        str(uri),
        "--device",
        "cpu",
        env={"RAY_USAGE_STATS_ENABLED": "0"},
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr  # broken.jpg, read through Ray Data, is named
    assert "broken.jpg" in proc.stderr
    from_uri = decisions(uri)
    assert set(from_uri) == set(expected)  # no hidden folder, no text file
    assert from_uri == {path: d for path, d in decisions(local).items() if path in expected}


def test_a_uri_without_pictures_says_what_it_holds(tmp_path: Path) -> None:
    from refinery.dedup.engines.ray import list_files
    from refinery.errors import NoPictures

    (tmp_path / "notes.txt").write_text("no picture")
    (tmp_path / "clip.avi").write_bytes(b"RIFF")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "a.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(NoPictures) as found:
        list_files(tmp_path.as_uri())
    assert str(found.value) == (
        f"{tmp_path.as_uri()}: no picture found - 1 file, none a picture (1 .txt); "
        "1 video (refinery frames reads it); 1 hidden entry not read"
    )
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff")
    assert list_files(tmp_path.as_uri()) == ["a.jpg"]
