"""`refinery dedup DATA --splits train,val,test`: duplicates across and within a dataset's
splits, the earliest split's copy kept - through the real CLI on real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import draw_picture, run_cli

CPU = ("--device", "cpu")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """train, val and test folders sharing pictures: train-test (a byte copy, a smaller
    re-encode), train-val, val-test, and a copy inside test."""
    data = tmp_path / "data"
    for split in ("train", "val", "test"):
        (data / split).mkdir(parents=True)
    for k in range(4):
        draw_picture(20 + k, (320, 240)).save(data / "train" / f"t{k}.jpg", quality=92)
    shutil.copy2(data / "train" / "t0.jpg", data / "test" / "t0_copy.jpg")
    draw_picture(21, (320, 240)).resize((200, 150)).save(data / "test" / "t1_small.jpg", quality=85)
    shutil.copy2(data / "train" / "t2.jpg", data / "val" / "t2.jpg")
    draw_picture(40, (320, 240)).save(data / "val" / "v0.jpg", quality=92)
    shutil.copy2(data / "val" / "v0.jpg", data / "test" / "v0_again.jpg")
    draw_picture(50, (320, 240)).save(data / "test" / "x.jpg", quality=92)
    shutil.copy2(data / "test" / "x.jpg", data / "test" / "x_copy.jpg")
    return data


def test_the_earlier_split_keeps_and_the_matrix_counts_each_pair(dataset: Path, tmp_path: Path) -> None:
    report, page = tmp_path / "r.json", tmp_path / "r.html"
    proc = run_cli(
        "dedup", str(dataset), "--splits", "train,val,test", "--report", str(report), "--html", str(page), *CPU
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    lines = {f["path"]: f for f in data["files"]}
    for removed, keeper in (
        ("test/t0_copy.jpg", "train/t0.jpg"),
        ("test/t1_small.jpg", "train/t1.jpg"),
        ("val/t2.jpg", "train/t2.jpg"),  # the same name, the same bytes: train's stays
        ("test/v0_again.jpg", "val/v0.jpg"),
    ):
        line = lines[removed]
        assert (line["decision"], line["kept_as"]) == ("remove", keeper), line
        assert line["reason"].endswith(f"; kept: in the earlier split {keeper.split('/')[0]}"), line
    assert lines["test/x_copy.jpg"]["kept_as"] == "test/x.jpg"  # within one split: the usual rule
    assert lines["train/t0.jpg"]["reason"] == "kept: in the earlier split train"
    splits = data["summary"]["splits"]
    assert splits["names"] == ["train", "val", "test"]
    assert splits["files"] == {"train": 4, "val": 2, "test": 5, "(no split)": 0}
    assert splits["duplicates"] == {
        "train": {"train": 0, "val": 1, "test": 2},
        "val": {"train": 0, "val": 0, "test": 1},
        "test": {"train": 0, "val": 0, "test": 1},
    }
    assert "duplicates across splits" in proc.stdout
    # the review page lists the groups across splits first
    text = page.read_text()
    groups = json.loads(text[text.index('{"root"') : text.index("</script>", text.index('{"root"'))])["groups"]
    across = ["across" in g for g in groups]
    assert across == sorted(across, reverse=True) and sum(across) == 4, groups


def test_a_split_named_by_no_folder_is_said_and_a_bad_list_refused(dataset: Path) -> None:
    proc = run_cli("dedup", str(dataset), "--splits", "train,valid,test", *CPU)
    assert proc.returncode == 0 and "no file under a folder named valid" in proc.stdout, proc.stdout
    for bad in ("train,train", "train/a,test", "train,,test"):
        proc = run_cli("dedup", str(dataset), "--splits", bad, *CPU)
        assert proc.returncode == 2 and "keep.splits" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_the_api_takes_splits(dataset: Path) -> None:
    from refinery import api

    result = api.dedup(dataset, splits=["train", "val", "test"], device="cpu")
    assert result.summary()["splits"]["duplicates"]["train"]["test"] == 2
    assert api.duplicates(result)["train/t0.jpg"] == ["test/t0_copy.jpg"]
