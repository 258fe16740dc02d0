"""refinery from Python (refinery/api.py): the same decisions, checks and safety as the
commands, on real files, with real models and indexes - and no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, draw_dup_folder, run_cli, snapshot
from refinery import api
from refinery.errors import ConfigError, RefineryError


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api") / "photos"
    draw_dup_folder(root)
    return root


def test_dedup_decides_as_the_command_does_and_moves_nothing(photos: Path, tmp_path: Path) -> None:
    before = snapshot(photos)
    result = api.dedup(photos, device="cpu")
    assert snapshot(photos) == before
    report = tmp_path / "r.json"
    assert run_cli("dedup", str(photos), "--report", str(report), "--device", "cpu").returncode == 3  # one broken
    command = {
        f["path"]: (f["decision"], f["stage"], f["kept_as"], f["reason"])
        for f in json.loads(report.read_text())["files"]
    }
    assert {f.path: (f.decision, f.stage, f.kept_as, f.reason) for f in result.files} == command
    removed = api.removed(result)
    assert removed and all(line.decision == "remove" for line in removed)
    groups = api.duplicates(result)
    assert groups["a.jpg"] == ["sub/a_copy.jpg"]
    assert sorted(p for paths in groups.values() for p in paths) == sorted(
        line.path for line in removed if line.kept_as is not None
    )


def test_settings_take_overrides_by_name_and_check_them(tmp_path: Path) -> None:
    cfg = api.settings(semantic_threshold=0.9, **{"scenes.max_shift": 0.2})
    assert cfg.semantic.threshold == 0.9 and cfg.scenes.max_shift == 0.2
    with pytest.raises(ConfigError, match="semantic.threshold"):
        api.settings(semantic_threshold=7)
    toml = tmp_path / "my.toml"
    toml.write_text("[semantic]\nthreshold = 0.97\n")
    assert api.settings(toml).semantic.threshold == 0.97


def test_act_moves_with_the_commands_journal_and_undo_puts_everything_back(photos: Path, tmp_path: Path) -> None:
    work = tmp_path / "photos"
    draw_dup_folder(work)
    before = snapshot(work)
    result = api.dedup(work, device="cpu")
    with pytest.raises(RefineryError, match="inside the scanned folder"):
        api.act(result, move_rejects_to=work / "rejects")
    acted = api.act(result, move_rejects_to=tmp_path / "rejects")
    assert acted.moved is not None and acted.moved.done == len(api.removed(result)) and acted.failed == 0
    assert all(not (work / line.path).exists() for line in api.removed(result))
    assert run_cli("undo", str(tmp_path / "rejects")).returncode == 0
    assert snapshot(work) == before


def test_index_and_search_by_path_or_bytes(photos: Path, tmp_path: Path) -> None:
    index = api.index(photos, tmp_path / "photos.index", device="cpu")
    query = photos / "a.jpg"
    by_path = api.search(index, query, k=3)
    assert by_path[0].path in {"a.jpg", "sub/a_copy.jpg"} and by_path[0].score > 0.99
    assert api.search(tmp_path / "photos.index", query.read_bytes(), k=3) == by_path  # loaded from disk
    with pytest.raises(ValueError, match="not both"):
        api.search(index, query, text="a red truck")
    # a folder of other files is never written into; the refusal speaks of folders, not flags
    with pytest.raises(RefineryError, match="not a refinery index") as refused:
        api.index(photos, photos, device="cpu")
    assert "--" not in str(refused.value)


def test_the_api_never_imports_torch(photos: Path, tmp_path: Path) -> None:
    trap = tmp_path / "trap" / "torch"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text('raise ImportError("torch was imported by the API")\n')
    code = (
        "import sys\n"
        "from refinery import api\n"
        f"result = api.dedup({str(photos)!r}, device='cpu')\n"
        f"index = api.index({str(photos)!r}, {str(tmp_path / 'i')!r}, device='cpu')\n"
        f"api.search(index, {str(photos / 'a.jpg')!r})\n"
        "print('TORCH', [m for m in sys.modules if m.split('.')[0] == 'torch'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(trap.parent), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "TORCH []" in proc.stdout
