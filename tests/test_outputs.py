"""The one rule for every file a command writes (refinery/io/outputs.py): never over an input of
the command, never over a file refinery did not write; a second run replaces its own outputs.

Each case of issue 24's point 2 through the real CLI, with the victim's SHA-256 before and
after; the rule's pieces in-process (marks, links, FIFOs, a name taken between the check and
the write); names printed escaped (point 5).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import draw_picture, run_cli, snapshot
from refinery.errors import OutputRefused, RefineryError
from refinery.io.fileio import read_json
from refinery.io.names import printable
from refinery.io.outputs import (
    Kind,
    Output,
    check_outputs,
    is_ours,
    marked,
    output_path,
    refuse_unless_ours,
    write_output,
)

CPU = ("--device", "cpu")


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.lower().startswith("error:")]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(4):
        draw_picture(i, (200, 150)).save(root / f"p{i}.jpg")
    shutil.copy(root / "p0.jpg", root / "p0_copy.jpg")
    return root


@pytest.fixture
def report(photos: Path, tmp_path: Path) -> Path:
    path = tmp_path / "r.json"
    proc = run_cli("dedup", str(photos), "--report", str(path), *CPU)
    assert proc.returncode == 0, proc.stderr
    return path


# --- the rule, in-process -------------------------------------------------------------------


def test_each_kind_knows_its_own_mark(tmp_path: Path) -> None:
    user = tmp_path / "user.txt"
    user.write_text('{"summary": {}, "files": []}')  # looks like an old report, carries no mark
    assert not any(is_ours(user, kind) for kind in Kind)
    ours = tmp_path / "r.json"
    write_output(ours, Kind.EVAL, json.dumps(marked(Kind.EVAL, {"a": 1}), indent=2))
    assert is_ours(ours, Kind.EVAL) and not any(is_ours(ours, kind) for kind in Kind if kind != Kind.EVAL)
    assert json.loads(ours.read_text()) == {"refinery": "eval", "a": 1}
    from refinery.runner.session import default_model_path

    assert is_ours(default_model_path(), Kind.ONNX)  # producer_name "refinery", as every export writes
    assert not is_ours(default_model_path(), Kind.SPEC)


def test_nothing_refinery_did_not_write_is_replaced(tmp_path: Path) -> None:
    user = tmp_path / "notes.json"
    user.write_text("my notes")
    with pytest.raises(OutputRefused, match="already exists and is not a refinery dedup report"):
        check_outputs([Output(user, "--report", Kind.REPORT)])
    (tmp_path / "link.json").symlink_to(user)
    with pytest.raises(OutputRefused, match="is a symbolic link"):
        check_outputs([Output(tmp_path / "link.json", "--report", Kind.REPORT)])
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputRefused, match="is a symbolic link"):
        write_output(tmp_path / "dangling.json", Kind.REPORT, json.dumps(marked(Kind.REPORT, {})))
    assert not (tmp_path / "nowhere").exists()
    os.mkfifo(tmp_path / "fifo.json")  # must not hang waiting for a writer
    with pytest.raises(OutputRefused, match="not a regular file"):
        check_outputs([Output(tmp_path / "fifo.json", "--report", Kind.REPORT)])
    with pytest.raises(OutputRefused, match="is a folder"):
        check_outputs([Output(tmp_path, "--report", Kind.REPORT)])
    assert user.read_text() == "my notes"


def test_one_kind_of_refinery_json_never_replaces_another(tmp_path: Path) -> None:
    """A dedup report written over a model's spec would make the model unusable; an eval result
    over a report would lose what `apply` reads."""
    spec, report = tmp_path / "model.json", tmp_path / "r.json"
    write_output(spec, Kind.SPEC, json.dumps(marked(Kind.SPEC, {"name": "m"}), indent=2))
    write_output(report, Kind.REPORT, json.dumps(marked(Kind.REPORT, {"summary": {}})))
    with pytest.raises(OutputRefused, match="is not a refinery dedup report"):
        check_outputs([Output(spec, "--report", Kind.REPORT)])
    with pytest.raises(OutputRefused, match="is not a refinery eval result"):
        check_outputs([Output(report, "--json", Kind.EVAL)])


def test_an_output_may_be_neither_an_input_nor_another_output(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"a picture")
    with pytest.raises(OutputRefused, match="is a file in .*photos, an input"):
        check_outputs([Output(folder / "a.jpg", "--report", Kind.REPORT)], inputs=[folder])
    with pytest.raises(OutputRefused, match="is an input of this command"):
        check_outputs([Output(folder / "a.jpg", "--html", Kind.PAGE)], inputs=[folder / "a.jpg"])
    with pytest.raises(OutputRefused, match="are the same file"):
        check_outputs([Output(tmp_path / "x", "--report", Kind.REPORT), Output(tmp_path / "x", "--html", Kind.PAGE)])
    (tmp_path / "alias.json").symlink_to(folder / "a.jpg")
    with pytest.raises(OutputRefused):
        check_outputs([Output(tmp_path / "alias.json", "--report", Kind.REPORT)], inputs=[folder])
    check_outputs([Output(folder / "new.json", "--report", Kind.REPORT)], inputs=[folder])  # a new file beside them
    assert (folder / "a.jpg").read_bytes() == b"a picture"


def test_a_name_taken_after_the_check_is_not_written_over(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    check_outputs([Output(path, "--html", Kind.PAGE)])
    with pytest.raises(OutputRefused), output_path(path, Kind.PAGE) as tmp:
        tmp.write_text("<p>refinery's page</p>")
        path.write_text("the user's file, made meanwhile")
    assert path.read_text() == "the user's file, made meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temporary left


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    assert printable("a\x1b]0;owned\x07b.jpg") == "a\\x1b]0;owned\\x07b.jpg"
    assert printable("x\rhidden\u202egpj.exe") == "x\\x0dhidden\\u202egpj.exe"
    assert printable(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"
    assert printable("Ünïcödé 写真.jpg") == "Ünïcödé 写真.jpg"
    assert printable("a\nb") == "a\\x0ab" and printable("a\nb", keep_newlines=True) == "a\nb"


def test_read_json_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(RefineryError, match="nested too deeply"):
        read_json(deep, "a dedup report")
    (tmp_path / "latin1.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(RefineryError, match="not a dedup report"):
        read_json(tmp_path / "latin1.json", "a dedup report")


# --- every command, through the real CLI --------------------------------------------------


def test_dedup_report_and_page_on_one_path_are_refused(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "x"
    proc = run_cli("dedup", str(photos), "--report", str(out), "--html", str(out), *CPU)
    assert proc.returncode == 1 and "are the same file" in one_error_line(proc)
    assert not out.exists()


def test_dedup_replaces_its_own_report_and_nothing_else(photos: Path, report: Path, tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    for _ in range(2):  # a second run replaces the first run's files
        proc = run_cli("dedup", str(photos), "--report", str(report), "--csv", str(csv), *CPU)
        assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["refinery"] == "dedup report"
    csv.write_text("name,notes\nmine,1\n")  # the user's own CSV now has that name
    proc = run_cli("dedup", str(photos), "--csv", str(csv), *CPU)
    assert proc.returncode == 1 and "not a refinery CSV report" in one_error_line(proc)
    assert csv.read_text() == "name,notes\nmine,1\n"


def test_review_never_writes_over_a_picture_or_its_report(photos: Path, report: Path) -> None:
    before, report_bytes = snapshot(photos), report.read_bytes()
    for target in (photos / "p1.jpg", report):
        proc = run_cli("review", str(report), "--html", str(target))
        assert proc.returncode == 1 and "an input of this command" in one_error_line(proc)
    assert snapshot(photos) == before and report.read_bytes() == report_bytes


def test_search_never_writes_its_sheet_over_an_indexed_picture(photos: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    assert run_cli("index", str(photos), "--out", str(index), *CPU).returncode == 0
    before, index_before = snapshot(photos), snapshot(index)
    for target in (photos / "p2.jpg", photos / "p1.jpg", index / "index.json"):
        proc = run_cli("search", str(index), str(photos / "p1.jpg"), "--html", str(target), "--device", "cpu")
        assert proc.returncode == 1 and "Error:" in one_error_line(proc)
    assert snapshot(photos) == before and snapshot(index) == index_before
    proc = run_cli("search", str(index), str(photos / "p1.jpg"), "--html", str(tmp_path / "s.html"), "--device", "cpu")
    assert proc.returncode == 0 and is_ours(tmp_path / "s.html", Kind.PAGE)


def write_avi(path: Path, frames: int = 6) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("flag", ["--report", "--html"])
def test_frames_never_writes_over_its_video(tmp_path: Path, flag: str) -> None:
    video = write_avi(tmp_path / "v.avi")
    before = video.read_bytes()
    proc = run_cli("frames", str(video), "--out", str(tmp_path / "out"), flag, str(video))
    assert proc.returncode == 1 and "an input of this command" in one_error_line(proc)
    assert video.read_bytes() == before


def test_embed_and_eval_refuse_a_users_file(photos: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.npz"
    mine.write_bytes(b"PK\x03\x04 not numpy's")
    proc = run_cli("embed", str(photos), "--out", str(mine), *CPU)
    assert proc.returncode == 1 and "not a refinery embeddings file" in one_error_line(proc)
    assert mine.read_bytes() == b"PK\x03\x04 not numpy's"
    ours = tmp_path / "v.npz"
    for _ in range(2):
        assert run_cli("embed", str(photos), "--out", str(ours), *CPU).returncode == 0
    assert is_ours(ours, Kind.NPZ)


@pytest.mark.parametrize("taken", [".json", ".vocab.txt.gz", ".text.onnx"])
def test_export_refuses_a_users_file_at_any_of_its_names(tmp_path: Path, taken: str) -> None:
    """Refused before anything is exported (before torch is even imported)."""
    from conftest import TINY_CLIP

    prefix = tmp_path / "m"
    user = prefix.with_suffix(taken)
    user.write_bytes(b"the user's own file")
    proc = run_cli(
        "export-model", "--arch", f"openclip:local-dir:{TINY_CLIP}", "--out", str(prefix), "--format", "onnx"
    )
    assert proc.returncode == 1 and "refinery writes over nothing it did not write" in one_error_line(proc)
    assert user.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [user.name]


def test_export_again_replaces_its_own_files(clip_model: Path, tmp_path: Path) -> None:
    from conftest import TINY_CLIP

    for path in clip_model.parent.iterdir():
        shutil.copy(path, tmp_path / path.name)
    prefix = tmp_path / clip_model.stem
    proc = run_cli(
        "export-model", "--arch", f"openclip:local-dir:{TINY_CLIP}", "--out", str(prefix), "--format", "onnx"
    )
    assert proc.returncode == 0, proc.stderr
    for suffix, kind in (
        (".onnx", Kind.ONNX),
        (".json", Kind.SPEC),
        (".text.onnx", Kind.ONNX),
        (".text.json", Kind.SPEC),
        (".vocab.txt.gz", Kind.VOCAB),
    ):
        refuse_unless_ours(prefix.with_suffix(suffix), kind)


def test_a_name_that_drives_a_terminal_is_printed_escaped(photos: Path) -> None:
    evil = os.fsdecode(b"bad\x1b]0;owned\x07\x1b[2J\r\xff.jpg")
    (photos / evil).write_bytes(b"not a picture")
    proc = run_cli("dedup", str(photos), *CPU)
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert "\x1b" not in proc.stderr + proc.stdout and "\r" not in proc.stderr and "\x07" not in proc.stderr
    assert "bad\\x1b]0;owned\\x07\\x1b[2J\\x0d\\xff.jpg" in line
    proc = run_cli("dedup", str(photos / "\x1b[2Jnowhere"), *CPU)  # click's own usage error too
    assert proc.returncode == 2 and "\x1b" not in proc.stderr and "\\x1b[2Jnowhere" in proc.stderr


def test_no_output_goes_into_a_destination(photos: Path, tmp_path: Path) -> None:
    """A report in DEST/.refinery would take the journal's name; one in DEST a moved file's."""
    dest = tmp_path / "rejects"
    for target in (dest / ".refinery" / "journal.jsonl", dest / "r.json", dest):
        proc = run_cli("dedup", str(photos), "--move-rejects-to", str(dest), "--report", str(target), *CPU)
        assert proc.returncode == 1 and "where files are moved or copied" in one_error_line(proc)
        assert "images/s" not in proc.stdout  # refused before the scan
    assert not (dest / ".refinery" / "journal.jsonl").exists() and not (dest / "r.json").exists()


@pytest.mark.parametrize("command", ["dedup", "embed"])
def test_a_full_disk_under_an_output_is_one_line(photos: Path, tmp_path: Path, command: str) -> None:
    from test_safety import in_namespace

    full = tmp_path / "full"
    full.mkdir()
    flag, name = ("--report", "r.json") if command == "dedup" else ("--out", "v.npz")
    script = (
        f"mount -t tmpfs -o size=64k none {full} && "
        f"(head -c 100000 /dev/zero > {full}/filler 2>/dev/null; true) && "
        f"{sys.executable} -m refinery {command} {photos} {flag} {full}/{name} --device cpu; echo rc=$?; "
        f"ls -A {full}"
    )
    proc = in_namespace(script)
    assert "rc=1" in proc.stdout and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot write {full}/{name}: No space left on device" in one_error_line(proc)
    assert proc.stdout.split("rc=1")[1].split() == ["filler"]  # nothing half-written left


def test_a_newline_in_a_name_cannot_forge_an_output_line(photos: Path, tmp_path: Path) -> None:
    forged = "q.jpg\n   1     1.0000  forged"
    shutil.copy(photos / "p1.jpg", photos / forged)
    index = tmp_path / "idx"
    assert run_cli("index", str(photos), "--out", str(index), *CPU).returncode == 0
    proc = run_cli("search", str(index), str(photos / forged), "-k", "2", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert not any(
        line.strip().endswith("forged") and not line.startswith("query")
        for line in proc.stdout.splitlines()
        if "\\x0a" not in line
    ), proc.stdout
    assert "q.jpg\\x0a   1     1.0000  forged" in proc.stdout
