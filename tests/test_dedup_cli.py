"""`refinery dedup`, `undo` and `config` through the real entry point on real files."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from conftest import draw_picture, run_cli
from refinery.reasons import ReasonCode

REPORT_KEYS = {
    "path",
    "decision",
    "stage",
    "reason",
    "group",
    "kept_as",
    "scores",
    "test",
    "file",
    "reason_code",
    "against",
    "kept_as_sha256",
}


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_dry_run_decides_every_file_and_touches_nothing(dup_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, expected = dup_folder
    before = tree_hashes(root)
    report, csv_path = tmp_path / "r.json", tmp_path / "r.csv"
    proc = run_cli("dedup", str(root), "--report", str(report), "--csv", str(csv_path), "--device", "cpu")
    assert proc.returncode == 3, proc.stderr  # finished, one file unreadable
    assert tree_hashes(root) == before
    assert "dry run" in proc.stdout and "images/s" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]

    data = json.loads(report.read_text())
    files = {f["path"]: f for f in data["files"]}
    assert set(files) == set(expected)
    for f in data["files"]:
        assert set(f) == REPORT_KEYS
        assert f["decision"] in ("keep", "remove", "error")
        # a code for programs beside the words: none for a kept file, one of refinery.reasons' otherwise
        assert (f["reason_code"] is None) == (f["decision"] == "keep"), f
        assert f["reason_code"] is None or f["reason_code"] in {code.value for code in ReasonCode}, f
    assert files["sub/a_copy.jpg"]["reason_code"] == "identical_bytes"
    assert files["broken.jpg"]["reason_code"] == "unreadable"
    for path, stage in expected.items():
        f = files[path]
        if stage == "pair":
            continue
        if stage is None:
            assert f["decision"] == "keep", f
        elif stage == "error":
            assert f["decision"] == "error" and f["reason"]
        else:
            assert f["decision"] == "remove" and f["stage"] in stage.split("|"), f
            assert f["reason"]
    assert files["sub/a_copy.jpg"]["kept_as"] == "a.jpg"
    assert files["b_small.jpg"]["kept_as"] == files["b_low.jpg"]["kept_as"] == "b.png"  # largest, lossless
    kept, removed = sorted((files["c.jpg"], files["c_next.jpg"]), key=lambda f: f["decision"])
    assert (kept["decision"], removed["decision"], removed["stage"]) == ("keep", "remove", "semantic")
    assert removed["kept_as"] == kept["path"] and removed["group"] == kept["group"] is not None
    assert "cosine" in removed["scores"]
    assert kept["scores"]["edge_density"] >= removed["scores"]["edge_density"]  # the keep rule
    assert data["summary"]["removed_by_stage"]["quality"] >= 2
    header = (
        "path,decision,stage,reason,group,kept_as,scores,test,file,reason_code,against,kept_as_sha256,scores.sharpness,"
    )
    assert csv_path.read_text().splitlines()[0].startswith(header)
    with open(csv_path, newline="") as f:  # each score in a column of its own, as the report has it
        rows = {row["path"]: row for row in csv.DictReader(f)}
    for line in data["files"]:
        named = {key[len("scores.") :]: value for key, value in rows[line["path"]].items() if key.startswith("scores.")}
        assert {key: float(value) for key, value in named.items() if value} == line["scores"], line["path"]


def test_move_then_undo_restores_every_byte(dup_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, expected = dup_folder
    before = tree_hashes(root)
    dest = tmp_path / "rejects"
    proc = run_cli("dedup", str(root), "--move-rejects-to", str(dest), "--device", "cpu")
    assert proc.returncode == 3, proc.stderr
    removed = {p for p, s in expected.items() if s not in (None, "error", "pair")}
    pair = {"c.jpg", "c_next.jpg"}
    assert len(pair & set(tree_hashes(root))) == 1  # one of the pair moved out
    removed |= pair - set(tree_hashes(root))
    assert set(tree_hashes(root)) == set(before) - removed
    assert {p for p in tree_hashes(dest) if not p.startswith(".refinery/")} == removed
    journal = [json.loads(line) for line in (dest / ".refinery" / "journal.jsonl").read_text().splitlines()]
    assert sum(e["op"] == "move" for e in journal) == sum(e["op"] == "done" for e in journal) == len(removed)

    proc = run_cli("undo", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert tree_hashes(root) == before
    again = run_cli("undo", str(dest))  # undo of an undo does nothing
    assert again.returncode == 0 and "restored 0 files" in again.stdout
    assert tree_hashes(root) == before


def test_copy_keepers(dup_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, expected = dup_folder
    out = tmp_path / "clean"
    proc = run_cli("dedup", str(root), "--copy-keepers-to", str(out), "--device", "cpu")
    assert proc.returncode == 3, proc.stderr
    assert set(tree_hashes(out)) - {"c.jpg", "c_next.jpg"} == {p for p, s in expected.items() if s is None}
    assert len({"c.jpg", "c_next.jpg"} & set(tree_hashes(out))) == 1
    assert (root / "sub" / "a_copy.jpg").exists()  # the source is untouched


def test_moving_into_the_scanned_folder_is_refused(dup_folder: tuple[Path, dict]) -> None:
    root, _ = dup_folder
    before = tree_hashes(root)
    proc = run_cli("dedup", str(root), "--move-rejects-to", str(root / "rejects"), "--device", "cpu")
    assert proc.returncode == 1 and "choose a folder outside it" in proc.stderr
    assert tree_hashes(root) == before


def test_set_overrides_and_config_show() -> None:
    proc = run_cli("config", "--show", "--set", "semantic.threshold=0.5")
    assert proc.returncode == 0
    assert "threshold = 0.5" in proc.stdout and "[quality]" in proc.stdout
    bad = run_cli("config", "--show", "--set", "semantic.thresold=0.5")
    assert bad.returncode == 2 and "no setting 'semantic.thresold'" in bad.stderr


def test_a_strict_threshold_keeps_the_next_frame(dup_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = dup_folder
    report = tmp_path / "r.json"
    run_cli("dedup", str(root), "--report", str(report), "--device", "cpu", "--set", "semantic.threshold=0.999")
    files = {f["path"]: f for f in json.loads(report.read_text())["files"]}
    assert files["c_next.jpg"]["decision"] == files["c.jpg"]["decision"] == "keep"


def test_second_run_uses_the_cache_unless_told_not_to(dup_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = dup_folder
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = run_cli("dedup", str(root), "--device", "cpu", env=env)
    second = run_cli("dedup", str(root), "--device", "cpu", env=env)
    off = run_cli("dedup", str(root), "--device", "cpu", "--no-cache", env=env)
    assert "0 from the cache" in first.stdout
    assert "11 from the cache" in second.stdout  # every readable file
    assert "0 from the cache" in off.stdout


def test_undo_reports_files_moved_or_changed_by_hand_and_restores_the_rest(
    dup_folder: tuple[Path, dict], tmp_path: Path
) -> None:
    root, _ = dup_folder
    before = tree_hashes(root)
    dest = tmp_path / "rejects"
    assert run_cli("dedup", str(root), "--move-rejects-to", str(dest), "--device", "cpu").returncode == 3
    (dest / "d_dark.jpg").rename(tmp_path / "kept_by_hand.jpg")  # the user took one out
    (dest / "d_bright.jpg").write_bytes(b"edited")  # and overwrote another
    proc = run_cli("undo", str(dest))
    assert proc.returncode == 3
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("d_dark.jpg" in e and "no longer there" in e for e in errors)
    assert any("d_bright.jpg" in e and "changed since it was moved" in e for e in errors)
    after = tree_hashes(root)
    assert {p: h for p, h in before.items() if p not in ("d_dark.jpg", "d_bright.jpg")} == after
    assert (dest / "d_bright.jpg").read_bytes() == b"edited"  # left where it is


def test_a_folder_without_pictures_gets_one_line_saying_what_it_holds(tmp_path: Path) -> None:
    empty, text = tmp_path / "empty", tmp_path / "notes"
    empty.mkdir()
    text.mkdir()
    for k in range(3):
        (text / f"n{k}.txt").write_text("no picture")
    (text / "clip.mp4").write_bytes(b"\0" * 64)
    (text / ".hidden.jpg").write_bytes(b"\0" * 64)
    says = {
        empty: "no picture found - the folder is empty",
        text: "no picture found - 3 files, none a picture (3 .txt); 1 video (refinery frames reads it); "
        "1 hidden entry not read",
    }
    for folder, said in says.items():
        commands = (
            ["dedup", str(folder)],
            ["index", str(folder), "--out", str(tmp_path / "i")],
            ["embed", str(folder), "--out", str(tmp_path / "e.npz")],
        )
        for command in commands:
            proc = run_cli(*command, "--device", "cpu")
            errors = [line for line in proc.stderr.splitlines() if "no picture" in line]
            assert proc.returncode == 1 and errors == [f"Error: {folder}: {said}"], (command, proc.stderr)
            assert "images/s" not in proc.stdout  # no table of zeros
    assert not (tmp_path / "i").exists() and not (tmp_path / "e.npz").exists()


def test_keep_and_prefer_choose_the_keeper_and_the_reason_says_so(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "originals").mkdir(parents=True)
    picture = draw_picture(4, (320, 240))
    picture.save(root / "edited.png")
    picture.save(root / "originals" / "shot.jpg", quality=70)
    report = tmp_path / "r.json"
    proc = run_cli("dedup", str(root), "--prefer", "originals", "--report", str(report), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    lines = {f["path"]: f for f in json.loads(report.read_text())["files"]}
    assert lines["originals/shot.jpg"]["decision"] == "keep"
    assert lines["edited.png"]["kept_as"] == "originals/shot.jpg"
    assert lines["edited.png"]["reason"].endswith("; kept: in the preferred folder originals/")
    assert lines["originals/shot.jpg"]["reason"] == "kept: in the preferred folder originals/"
    proc = run_cli("dedup", str(root), "--report", str(report), "--device", "cpu")  # the best: lossless
    assert json.loads(report.read_text())["files"][0]["decision"] == "keep"  # edited.png
    for bad, says in (("elsewhere", "no folder elsewhere in"), ("../x", "must be a folder inside the judged one")):
        proc = run_cli("dedup", str(root), "--prefer", bad)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
