"""`refinery dedup --engine ray` on a local Ray instance (2 CPUs here) decides exactly as the
local engine does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

pytest.importorskip("ray", reason="the Ray engine needs the [ray] extra")


def decisions(report: Path) -> dict[str, tuple]:
    return {f["path"]: (f["decision"], f["stage"], f["kept_as"], f["group"])
            for f in json.loads(report.read_text())["files"]}


@pytest.mark.slow
def test_ray_engine_decides_like_the_local_engine(dup_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, expected = dup_folder
    local, ray = tmp_path / "local.json", tmp_path / "ray.json"
    first = run_cli("dedup", str(root), "--report", str(local), "--no-cache", "--device", "cpu")
    second = run_cli("dedup", str(root), "--engine", "ray", "--report", str(ray), "--device", "cpu",
                     env={"RAY_USAGE_STATS_ENABLED": "0"})
    assert first.returncode == second.returncode == 3, second.stderr  # one unreadable file, named by both
    assert "broken.jpg" in second.stderr
    assert decisions(ray) == decisions(local)
    assert set(decisions(ray)) == set(expected)
    assert json.loads(ray.read_text())["summary"]["provider"] == "ray"


def test_a_uri_needs_the_ray_engine_and_cannot_be_moved_into() -> None:
    proc = run_cli("dedup", "s3://bucket/photos")
    assert proc.returncode == 2 and "only --engine ray reads those" in proc.stderr
    proc = run_cli("dedup", "s3://bucket/photos", "--engine", "ray", "--move-rejects-to", "/tmp/x")
    assert proc.returncode == 2 and "needs a local FOLDER" in proc.stderr
