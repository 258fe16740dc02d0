"""`refinery dedup NEW --against REF`: a folder judged against a reference (a folder, or an
index of one) that is never judged, moved or written - through the real CLI on real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import draw_dup_folder, draw_picture, run_cli, snapshot
from refinery.errors import RefineryError

CPU = ("--device", "cpu")
IN_REF = ("a.jpg", "b.png", "c.jpg", "d.jpg")
STAGE_LINES = ("exact", "against", "near", "semantic")
SAVED = (
    "path",
    "decision",
    "kept_as",
    "file",
    "against",
    "kept_as_sha256",
)  # a decisions file's line  # the rest of draw_dup_folder's files are the batch


@pytest.fixture
def split(tmp_path: Path) -> tuple[Path, Path]:
    """draw_dup_folder's pictures in two folders: the originals as the reference, their
    copies (exact, near, the next frame, quality failures) as the new batch, with a new
    picture and its byte copy besides."""
    everything = tmp_path / "all"
    draw_dup_folder(everything)
    ref, new = tmp_path / "train", tmp_path / "new batch"
    for path in sorted(p for p in everything.rglob("*") if p.is_file()):
        rel = path.relative_to(everything)
        target = (ref if rel.as_posix() in IN_REF else new) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    draw_picture(11, (320, 240)).save(new / "e.jpg", quality=92)
    shutil.copy2(new / "e.jpg", new / "e_copy.jpg")
    return new, ref


def lines(report: Path) -> dict[str, dict]:
    return {f["path"]: f for f in json.loads(report.read_text())["files"]}


def test_the_batch_goes_where_the_reference_holds_it(split: tuple[Path, Path], tmp_path: Path) -> None:
    new, ref = split
    before = snapshot(ref)
    report = tmp_path / "r.json"
    proc = run_cli("dedup", str(new), "--against", str(ref), "--report", str(report), *CPU)
    assert proc.returncode == 3, proc.stderr  # broken.jpg, named
    files = lines(report)
    assert not any(path in files for path in IN_REF)  # the reference is not judged
    expected = {
        "sub/a_copy.jpg": ("exact", "a.jpg", "identical_bytes"),
        "b_small.jpg": ("near", "b.png", "same_picture"),
        "b_low.jpg": ("near", "b.png", "same_picture"),
    }
    for path, (stage, keeper, code) in expected.items():
        line = files[path]
        assert (line["decision"], line["stage"], line["reason_code"]) == ("remove", stage, code), line
        assert line["kept_as"] == str(ref.resolve() / keeper) and line["against"] == str(ref.resolve()), line
        assert line["reason"].endswith("in the reference") and str(ref.resolve() / keeper) in line["reason"]
    next_frame = files["c_next.jpg"]
    assert next_frame["decision"] == "remove" and next_frame["kept_as"] == str(ref.resolve() / "c.jpg")
    # the batch's own duplicates as without a reference
    assert files["e.jpg"]["decision"] == "keep" and files["e.jpg"]["against"] is None
    assert (files["e_copy.jpg"]["decision"], files["e_copy.jpg"]["kept_as"]) == ("remove", "e.jpg")
    assert files["d_dark.jpg"]["stage"] == "quality"
    summary = json.loads(report.read_text())["summary"]
    assert summary["against"] == [str(ref.resolve())]
    # the stage table reads as a funnel: what each stage kept is what the next one judged
    table = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] and line.split()[0] in STAGE_LINES]
    assert [row[0] for row in table] == list(STAGE_LINES)
    assert all(int(a[2]) == int(b[1]) for a, b in zip(table, table[1:], strict=False)), table
    assert int(table[1][3]) == 5  # against: a_copy, b_small, b_low, c_next, d_blur
    assert snapshot(ref) == before


def test_an_index_of_the_reference_gives_the_same_decisions(split: tuple[Path, Path], tmp_path: Path) -> None:
    new, ref = split
    index = tmp_path / "train.index"
    assert run_cli("index", str(ref), "--out", str(index), *CPU).returncode == 0
    by_folder, by_index = tmp_path / "folder.json", tmp_path / "index.json"
    run_cli("dedup", str(new), "--against", str(ref), "--report", str(by_folder), *CPU)
    run_cli("dedup", str(new), "--against", str(index), "--report", str(by_index), *CPU)
    folder_lines, index_lines = lines(by_folder), lines(by_index)
    for line in index_lines.values():
        if line["against"]:
            line["against"] = str(ref.resolve())  # the one difference: what was given
    assert index_lines == folder_lines


def test_moves_take_only_the_batch_and_undo_restores_it(split: tuple[Path, Path], tmp_path: Path) -> None:
    new, ref = split
    ref_before, new_before = snapshot(ref), snapshot(new)
    rejects = tmp_path / "rejects"
    proc = run_cli("dedup", str(new), "--against", str(ref), "--move-rejects-to", str(rejects), *CPU)
    assert proc.returncode == 3, proc.stderr
    moved = {
        p.relative_to(rejects).as_posix() for p in rejects.rglob("*") if p.is_file() and ".refinery" not in p.parts
    }
    assert {"sub/a_copy.jpg", "b_small.jpg", "b_low.jpg", "e_copy.jpg"} <= moved
    assert snapshot(ref) == ref_before
    assert run_cli("undo", str(rejects)).returncode == 0
    assert snapshot(new) == new_before and snapshot(ref) == ref_before


@pytest.mark.parametrize("where", ["itself", "parent", "child"])
def test_a_reference_overlapping_the_batch_is_refused(split: tuple[Path, Path], where: str) -> None:
    new, _ = split
    ref = {"itself": new, "parent": new.parent, "child": new / "sub"}[where]
    before = snapshot(new)
    proc = run_cli("dedup", str(new), "--against", str(ref), "--move-rejects-to", str(new.parent / "rej"), *CPU)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert proc.returncode == 1 and len(errors) == 1 and "a reference must be apart" in errors[0], proc.stderr
    assert snapshot(new) == before and not (new.parent / "rej").exists()


def test_nothing_is_written_into_the_reference(split: tuple[Path, Path], tmp_path: Path) -> None:
    new, ref = split
    before = snapshot(ref)
    for flag, target in (
        ("--move-rejects-to", ref / "rejects"),
        ("--report", ref / "r.json"),
        ("--html", ref / "p.html"),
    ):
        proc = run_cli("dedup", str(new), "--against", str(ref), flag, str(target), *CPU)
        assert proc.returncode in (1, 2) and "reference" in proc.stderr, (flag, proc.stderr)
    assert snapshot(ref) == before


def test_an_index_of_another_model_or_of_faces_is_refused(split: tuple[Path, Path], tmp_path: Path) -> None:
    new, ref = split
    faces = tmp_path / "faces.index"
    shutil.copytree(ref, tmp_path / "ref2")
    assert run_cli("index", str(tmp_path / "ref2"), "--out", str(faces), "--faces", *CPU).returncode in (0, 3)
    proc = run_cli("dedup", str(new), "--against", str(faces), *CPU)
    assert proc.returncode == 1 and "an index of faces" in proc.stderr, proc.stderr


def test_apply_acts_on_a_reviewed_batch_and_leaves_a_copy_whose_reference_picture_is_gone(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    new, ref = split
    report = tmp_path / "r.json"
    run_cli("dedup", str(new), "--against", str(ref), "--report", str(report), *CPU)
    saved = json.loads(report.read_text())
    decisions = {
        "refinery_decisions": 1,
        "root": saved["summary"]["root"],
        "files": [
            {key: line[key] for key in SAVED if line.get(key) or key in SAVED[:4]}
            for line in saved["files"]
            if line["decision"] in ("keep", "remove")
        ],
    }
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(decisions))
    (ref / "b.png").rename(tmp_path / "b.png")  # the reference changed since: b.png's copies stay,
    (ref / "d.jpg").write_bytes((ref / "a.jpg").read_bytes())  # and so does d.jpg's (other bytes now)
    rejects = tmp_path / "rejects"
    proc = run_cli("apply", str(path), "--move-rejects-to", str(rejects))
    assert proc.returncode == 3, proc.stderr
    gone = [line for line in proc.stderr.splitlines() if "b.png (in the reference" in line]
    assert len(gone) == 2 and all("is gone; left" in line for line in gone), proc.stderr
    assert any(
        "d.jpg (in the reference" in line and "changed since it was judged" in line for line in proc.stderr.splitlines()
    )
    assert (new / "d_blur.jpg").exists()
    assert (new / "b_small.jpg").exists() and (new / "b_low.jpg").exists()
    assert not (new / "sub" / "a_copy.jpg").exists() and (rejects / "sub" / "a_copy.jpg").exists()


def test_the_api_judges_against_a_reference(split: tuple[Path, Path], tmp_path: Path) -> None:
    from refinery import api

    new, ref = split
    result = api.dedup(new, against=ref, device="cpu")
    lines = {line.path: line for line in result.files}
    assert lines["sub/a_copy.jpg"].kept_as == str(ref.resolve() / "a.jpg")
    assert lines["sub/a_copy.jpg"].against == str(ref.resolve())
    assert result.summary()["against"] == [str(ref.resolve())]
    with pytest.raises(RefineryError, match="a reference must be apart"):
        api.dedup(new, against=[new], device="cpu")


def test_a_reference_link_to_a_judged_file_is_no_keeper_of_it(split: tuple[Path, Path], tmp_path: Path) -> None:
    new, ref = split
    (ref / "linked.jpg").symlink_to(new / "e.jpg")  # the reference reaches into the batch
    report = tmp_path / "r.json"
    proc = run_cli("dedup", str(new), "--against", str(ref), "--follow-symlinks", "--report", str(report), *CPU)
    assert proc.returncode == 3, proc.stderr
    files = lines(report)
    assert files["e.jpg"]["decision"] == "keep", files["e.jpg"]  # else moving it would take it from both


def test_a_fixed_cameras_frame_goes_by_the_scene_test_when_the_reference_holds_it(tmp_path: Path) -> None:
    from test_scenes import scene_folder, standing

    everything = tmp_path / "camera"
    truth = scene_folder(everything, 3, 48, extra=standing(3, 4))  # people passing; a person standing, 4 times
    ref, new = tmp_path / "last week", tmp_path / "this week"
    ref.mkdir()
    new.mkdir()
    stills = sorted(name for name in truth if "_still_" in name)
    passing = sorted(name for name in truth if "_still_" not in name)
    for k, name in enumerate(passing):
        shutil.copy2(everything / name, (ref if k % 2 else new) / name)
    for name in stills[:2]:
        shutil.copy2(everything / name, ref / name)
    for name in stills[2:]:
        shutil.copy2(everything / name, new / name)
    report = tmp_path / "r.json"
    proc = run_cli("dedup", str(new), "--against", str(ref), "--report", str(report), *CPU)
    assert proc.returncode == 0, proc.stderr
    files = lines(report)
    # the person standing: the same frame as last week's, under fresh noise (other bytes)
    against = {path for path, f in files.items() if f["against"]}
    assert set(stills[2:]) <= against, {p: files[p]["reason"] for p in stills[2:]}
    for path in stills[2:]:
        line = files[path]
        assert line["test"] == "scene" and line["reason_code"] == "same_frame", line
        assert Path(line["kept_as"]).name in stills[:2] and line["scores"]["largest_move"] <= 0.15, line
    # a frame where people stand elsewhere is another frame, whatever last week holds
    assert not (against - set(stills)), {p: files[p]["reason"] for p in against - set(stills)}


def test_a_reference_given_twice_is_read_once_and_an_empty_one_is_named(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    new, ref = split
    report = tmp_path / "r.json"
    run_cli("dedup", str(new), "--against", str(ref), "--against", str(ref / "."), "--report", str(report), *CPU)
    assert json.loads(report.read_text())["summary"]["against"] == [str(ref.resolve())]
    (tmp_path / "empty").mkdir()
    proc = run_cli("dedup", str(new), "--against", str(tmp_path / "empty"), *CPU)
    assert proc.returncode == 1 and "--against" in proc.stderr and "no picture found" in proc.stderr, proc.stderr
