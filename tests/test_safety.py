"""refinery never deletes, overwrites or strands a file it was not asked to move.

Each case of issue 15, through the real CLI on real files: whatever refinery is pointed at or
finds planted in a destination, no file outside what it wrote changes (SHA-256 of the victim
files), undo restores the tree byte for byte, and every failure is one line and an exit code.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, draw_picture, run_cli, snapshot
from refinery.dedup.journal import open_journal
from refinery.dedup.undo import undo
from refinery.errors import RefineryError
from refinery.io.fileio import file_sha256

CPU = ("--device", "cpu")


def make_photos(root: Path) -> Path:
    """Seven pictures: an exact copy, a near copy, a dark frame and four pictures that stay."""
    (root / "sub").mkdir(parents=True)
    a, b, e, f = (draw_picture(s, (320, 240)) for s in (0, 4, 7, 9))
    f.save(root / "sub" / "f.jpg", quality=92)
    a.save(root / "a.jpg", quality=92)
    (root / "sub" / "a_copy.jpg").write_bytes((root / "a.jpg").read_bytes())
    b.save(root / "b.png")
    b.resize((192, 144)).save(root / "b_small.jpg", quality=85)
    e.save(root / "e.jpg", quality=92)
    Image.eval(e, lambda v: int(v * 0.05)).save(root / "e_dark.jpg")
    return root


REMOVED = {"sub/a_copy.jpg", "b_small.jpg", "e_dark.jpg"}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    return make_photos(tmp_path / "photos")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """Files refinery has no business with: none of them may change."""
    root = tmp_path / "victim"
    root.mkdir()
    (root / "thesis.txt").write_text("four years of work\n")
    (root / "x.txt").write_text("precious\n")
    draw_picture(99).save(root / "holiday.jpg")
    return root


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The message of a failed run: exactly one error line on stderr (log lines aside), no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.lower().startswith("error:")]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


def without_lock(entries: dict) -> dict:
    """A snapshot of a destination less its lock file (refinery's own, made by a run)."""
    return {rel: entry for rel, entry in entries.items() if rel != ".refinery/lock"}


def contents(*roots: Path) -> Counter:
    """The multiset of file contents under `roots`, refinery's own folder aside."""
    return Counter(
        entry[1]
        for root in roots
        if root.exists()
        for rel, entry in snapshot(root).items()
        if entry[0] == "file" and not rel.startswith(".refinery")
    )


# --- 1. `refinery index --out` never writes into a folder that is not an index ----------


@pytest.mark.parametrize("where", ["another folder", "the indexed folder", "their parent"])
def test_index_refuses_an_out_folder_that_is_not_an_index(photos: Path, victim: Path, where: str) -> None:
    out = {"another folder": victim, "the indexed folder": photos, "their parent": photos.parent}[where]
    before_victim, before_photos = snapshot(victim), snapshot(photos)
    proc = run_cli("index", str(photos), "--out", str(out), *CPU)
    assert proc.returncode == 1
    assert "is not a refinery index" in one_error_line(proc)
    assert snapshot(victim) == before_victim and snapshot(photos) == before_photos


def test_index_replaces_only_its_own_files(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    assert run_cli("index", str(photos), "--out", str(out), "--sift", *CPU).returncode == 0
    (out / "notes.txt").write_text("mine")
    assert run_cli("index", str(photos), "--out", str(out), *CPU).returncode == 0  # without SIFT now
    assert sorted(p.name for p in out.iterdir()) == [
        "embedding.faiss",
        "index.json",
        "keys.npz",
        "notes.txt",
        "pixels.npy",
    ]
    assert (out / "notes.txt").read_text() == "mine"
    found = run_cli("search", str(out), str(photos / "e.jpg"), "-k", "1", "--device", "cpu")
    assert found.returncode == 0 and "e.jpg" in found.stdout.splitlines()[1]


def test_a_damaged_index_is_refused_not_loaded(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    assert run_cli("index", str(photos), "--out", str(out), *CPU).returncode == 0
    pixels = np.load(out / "pixels.npy")
    np.save(out / "pixels.npy", 255 - pixels)  # same size, other bytes: as a crash or an edit might leave it
    proc = run_cli("search", str(out), str(photos / "e.jpg"), "--device", "cpu")
    assert proc.returncode == 1 and "damaged index" in one_error_line(proc)
    assert run_cli("index", str(photos), "--out", str(out), *CPU).returncode == 0  # building again mends it


def test_a_malformed_index_json_is_one_line(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    assert run_cli("index", str(photos), "--out", str(out), *CPU).returncode == 0
    meta = json.loads((out / "index.json").read_text())
    for files in ([[5, "x", None]], [["../outside.jpg", 1, 1]], [["/etc/passwd", 1, 1]]):
        (out / "index.json").write_text(json.dumps({**meta, "files": files}))
        proc = run_cli("search", str(out), str(photos / "e.jpg"), "--device", "cpu")
        assert proc.returncode == 1 and "index.json is malformed" in one_error_line(proc), files


# --- 2. the journal is read, never trusted -------------------------------------------------


def header(root: Path, run: str = "r1", follow: bool = False) -> dict:
    return {"op": "run", "run": run, "version": 2, "root": str(root), "follow_symlinks": follow, "started": ""}


def forged_journals(photos: Path, dest: Path, victim: Path) -> dict[str, list]:
    """Journals that once made undo (or the next dedup) delete or move files anywhere."""
    x = victim / "x.txt"
    sha = file_sha256(x)
    return {
        "old absolute lines, src = dst": [{"op": "move", "id": 1, "src": str(x), "dst": str(x)}],
        "done with the right hash, from anywhere to anywhere": [
            header(photos),
            {
                "op": "move",
                "run": "r1",
                "id": 1,
                "src": str(x),
                "dst": str(victim / "new" / "y.txt"),
                "sha256": sha,
                "bytes": x.stat().st_size,
            },
            {"op": "done", "run": "r1", "id": 1},
        ],
        "paths with ../": [
            header(photos),
            {
                "op": "move",
                "run": "r1",
                "id": 1,
                "src": "../victim/x.txt",
                "dst": "../victim/x.txt",
                "sha256": sha,
                "bytes": x.stat().st_size,
            },
        ],
        "a run whose folder is DEST": [
            header(dest),
            {
                "op": "move",
                "run": "r1",
                "id": 1,
                "src": "x.txt",
                "dst": "x.txt",
                "sha256": sha,
                "bytes": x.stat().st_size,
            },
        ],
        "garbage line": [header(photos), "this is not json"],
        "wrong types": [header(photos), {"op": "move", "run": "r1", "id": "1", "src": 5, "dst": None}],
        "a done without its move": [header(photos), {"op": "done", "run": "r1", "id": 7}],
    }


def write_journal(dest: Path, lines: list) -> None:
    (dest / ".refinery").mkdir(parents=True, exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (dest / ".refinery" / "journal.jsonl").write_text(text)


@pytest.mark.parametrize(
    "case",
    [
        "old absolute lines, src = dst",
        "done with the right hash, from anywhere to anywhere",
        "paths with ../",
        "a run whose folder is DEST",
        "garbage line",
        "wrong types",
        "a done without its move",
    ],
)
def test_a_forged_or_broken_journal_is_refused_whole(photos: Path, victim: Path, tmp_path: Path, case: str) -> None:
    dest = tmp_path / "rejects"
    dest.mkdir()
    shutil.copy(victim / "x.txt", dest / "x.txt")  # a copy of the victim, as if it had been moved there
    write_journal(dest, forged_journals(photos, dest, victim)[case])
    before = snapshot(victim), snapshot(photos), without_lock(snapshot(dest))
    undo_run = run_cli("undo", str(dest))
    assert undo_run.returncode == 1 and "journal.jsonl line" in one_error_line(undo_run)
    dedup_run = run_cli("dedup", str(photos), "--move-rejects-to", str(dest), *CPU)
    assert dedup_run.returncode == 1 and "journal.jsonl line" in one_error_line(dedup_run)
    assert "images/s" not in dedup_run.stdout  # refused before the scan
    assert (snapshot(victim), snapshot(photos), without_lock(snapshot(dest))) == before


@pytest.mark.parametrize("planted", ["journal.jsonl", ".refinery"])
def test_a_journal_or_state_folder_that_is_a_link_is_never_followed(
    photos: Path, victim: Path, tmp_path: Path, planted: str
) -> None:
    dest = tmp_path / "rejects"
    if planted == "journal.jsonl":
        (dest / ".refinery").mkdir(parents=True)
        (dest / ".refinery" / "journal.jsonl").symlink_to(victim / "thesis.txt")
    else:
        dest.mkdir()
        (dest / ".refinery").symlink_to(victim)
    before = snapshot(victim), snapshot(photos)
    for proc in (run_cli("dedup", str(photos), "--move-rejects-to", str(dest), *CPU), run_cli("undo", str(dest))):
        assert proc.returncode == 1 and "symbolic link" in one_error_line(proc)
    assert (snapshot(victim), snapshot(photos)) == before


def random_line(rng: random.Random, photos: Path, dest: Path, victim: Path, runs: list[str]) -> object:
    """One journal line: garbage, or well-formed with paths that try to leave DIR and DEST."""
    names = [
        "x.txt",
        "thesis.txt",
        "a.jpg",
        "sub/a_copy.jpg",
        "b.png",
        "new.jpg",
        "vlink/x.txt",
        "vlink/new.txt",
        "../victim/x.txt",
        str(victim / "x.txt"),
        "sub/../../victim/x.txt",
        ".refinery/journal.jsonl",
        "",
        ".",
        "a.jpg/../../victim/thesis.txt",
    ]
    shas = [file_sha256(p) for p in (victim / "x.txt", victim / "thesis.txt", photos / "a.jpg")] + ["0" * 64, "zz"]
    kind = rng.random()
    if kind < 0.15:
        return rng.choice(["", "{", "null", "[1, 2]", '"run"', "\x00\x01", "{'op': 'move'}", "true"])
    if kind < 0.3 or not runs:
        run = rng.choice(runs + ["r" + str(rng.randrange(100))])
        runs.append(run)
        root = rng.choice(
            [str(photos), str(dest), str(dest / "sub"), "relative/path", str(photos / "sub"), "/nonexistent/folder", 7]
        )
        return {
            "op": "run",
            "run": run,
            "version": rng.choice([2, 2, 2, 1, "2"]),
            "root": root,
            "follow_symlinks": rng.choice([False, True, "yes"]),
            "started": "",
        }
    op = rng.choice(["move", "move", "done", "done", "cancelled", "undone", "renamed"])
    line: dict = {"op": op, "run": rng.choice(runs), "id": rng.choice([1, 2, 3, 0, -1, True, "1"])}
    if op in ("move", "renamed"):
        line["dst"] = rng.choice(names)
    if op == "move":
        line["src"] = rng.choice(names)
        if rng.random() < 0.2:
            line["link"] = rng.choice(["../victim/x.txt", str(victim)])
        else:
            line["sha256"], line["bytes"] = rng.choice(shas), rng.choice([0, 9, 19, -3, "9"])
    return line


def test_random_journals_never_move_or_delete_a_file_outside_dir_and_dest(tmp_path: Path) -> None:
    """Random garbage and random well-formed lines, their paths reaching outside DIR and DEST
    (absolute, '..', links in DEST to elsewhere): undo moves nothing out of DEST but into DIR,
    overwrites and deletes nothing."""
    rng = random.Random(15)
    for trial in range(150):
        base = tmp_path / f"t{trial}"
        photos, dest, victim = base / "photos", base / "rejects", base / "victim"
        for folder in (photos / "sub", dest / "sub", victim):
            folder.mkdir(parents=True)
        for folder in (photos, victim):
            (folder / "x.txt").write_text("precious\n")
            (folder / "thesis.txt").write_text("four years of work\n")
        (photos / "a.jpg").write_bytes(b"a picture")
        (dest / "x.txt").write_text("precious\n")  # copies of the victims, waiting to be "put back"
        (dest / "thesis.txt").write_text("four years of work\n")
        (dest / "vlink").symlink_to(victim)  # a planted link out of DEST
        (dest / "sub" / "vlink").symlink_to(victim)
        runs: list[str] = []
        lines = [random_line(rng, photos, dest, victim, runs) for _ in range(rng.randrange(1, 12))]
        write_journal(dest, lines)
        before_victim, everything = snapshot(victim), contents(photos, dest, victim)
        try:
            with open_journal(dest, create=False) as journal:
                undo(journal)
        except RefineryError:
            pass
        assert snapshot(victim) == before_victim, lines
        assert contents(photos, dest, victim) == everything, lines  # nothing lost, nothing doubled
        assert sorted(p.name for p in base.iterdir()) == ["photos", "rejects", "victim"]


# --- 3. one run at a time in a destination --------------------------------------------------


def test_a_destination_in_use_is_refused_with_its_holder(photos: Path, tmp_path: Path) -> None:
    dest = tmp_path / "rejects"
    write_journal(dest, [header(photos)])
    with open(dest / ".refinery" / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("pid 4242 on elsewhere (refinery dedup big/, since 10:00:00)\n")
        lock.flush()
        before = snapshot(photos)
        for proc in (run_cli("dedup", str(photos), "--move-rejects-to", str(dest), *CPU), run_cli("undo", str(dest))):
            assert proc.returncode == 1
            assert "is in use by pid 4242 on elsewhere" in one_error_line(proc)
        assert snapshot(photos) == before


def test_two_runs_into_one_destination_at_once(tmp_path: Path) -> None:
    """Real processes: one waits for nobody and says who holds the lock, or they run one
    after the other; either way undo gives back both folders byte for byte."""
    folders = [make_photos(tmp_path / f"photos{k}") for k in (1, 2)]
    befores = [snapshot(f) for f in folders]
    dest = tmp_path / "rejects"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "refinery", "dedup", str(f), "--move-rejects-to", str(dest), *CPU],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in folders
    ]
    outcomes = [(p.returncode, p.communicate(timeout=300)[1]) for p in procs]
    outcomes = [(p.returncode, err) for p, (_, err) in zip(procs, outcomes, strict=True)]
    codes = sorted(code for code, _ in outcomes)
    assert codes in ([0, 0], [0, 1]), outcomes
    if codes == [0, 1]:
        assert any("is in use by" in err for code, err in outcomes if code == 1), outcomes
    lines = [json.loads(line) for line in (dest / ".refinery" / "journal.jsonl").read_text().splitlines()]
    moves = [(e["run"], e["id"]) for e in lines if e["op"] == "move"]
    assert len(moves) == len(set(moves))  # ids unique within each run
    proc = run_cli("undo", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert [snapshot(f) for f in folders] == befores
    assert not [rel for rel, entry in snapshot(dest).items() if entry[0] == "file" and not rel.startswith(".refinery")]


# --- 4. copies never write through a planted link ------------------------------------------


def test_copy_never_writes_through_a_planted_link(photos: Path, victim: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    out.mkdir()
    (out / ".a.jpg.refinery-tmp").symlink_to(victim / "thesis.txt")  # the old predictable temp name
    (out / "sub").symlink_to(victim)  # a folder of the tree, planted as a link out
    before = snapshot(victim)
    proc = run_cli("dedup", str(photos), "--copy-keepers-to", str(out), *CPU)
    assert proc.returncode == 3  # a.jpg and the others copied; nothing goes through sub/
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sub/f.jpg: not copied: sub is a symbolic link" in errors[0]
    assert snapshot(victim) == before
    assert os.readlink(out / ".a.jpg.refinery-tmp") == str(victim / "thesis.txt")  # not removed either
    assert (out / "a.jpg").read_bytes() == (photos / "a.jpg").read_bytes()


# --- 5. a file is checked to be what was judged before it moves ------------------------------


def replace_keeping_size_and_time(path: Path, data: bytes) -> None:
    """New bytes of the same length under the same modification time: only a hash tells."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("changed", ["the exact copy", "its keeper"])
def test_a_file_changed_after_it_was_judged_is_not_moved(photos: Path, tmp_path: Path, changed: str) -> None:
    """The first run fills the cache; the file then changes without a trace in its size or
    time, so the second run judges it from the cache as it was: the check before the move
    still finds out."""
    dest, env = tmp_path / "rejects", {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert run_cli("dedup", str(photos), *CPU, env=env).returncode == 0
    path = photos / ("sub/a_copy.jpg" if changed == "the exact copy" else "a.jpg")
    replace_keeping_size_and_time(path, bytes(reversed(path.read_bytes())))
    proc = run_cli("dedup", str(photos), "--move-rejects-to", str(dest), *CPU, env=env)
    assert proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sub/a_copy.jpg: not moved" in errors[0] and "changed since it was judged" in errors[0]
    assert (photos / "sub" / "a_copy.jpg").exists() and not (dest / "sub" / "a_copy.jpg").exists()
    assert {"b_small.jpg", "e_dark.jpg"} <= {rel for rel in snapshot(dest) if not rel.startswith(".refinery")}


def test_a_keeper_deleted_during_the_run_keeps_its_duplicate(tmp_path: Path) -> None:
    """The keeper goes while the run is still reading: its copy is neither moved nor is the
    keeper copied (both named on error lines); the rest goes on."""
    photos = tmp_path / "photos"
    (photos / "zz").mkdir(parents=True)
    draw_picture(500, (320, 240)).save(photos / "a0.png")  # read first
    (photos / "zz" / "copy.png").write_bytes((photos / "a0.png").read_bytes())  # its exact copy, read last
    for i in range(150):
        draw_picture(600 + i, (320, 240)).save(photos / f"m{i:03d}.jpg", quality=90)
    dest, clean, env = tmp_path / "rejects", tmp_path / "clean", {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    with open(tmp_path / "run.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "refinery",
                "dedup",
                str(photos),
                "--move-rejects-to",
                str(dest),
                "--copy-keepers-to",
                str(clean),
                "--set",
                "run.workers=1",
                *CPU,
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    from test_crash import cached_rows, wait_until

    wait_until(proc, lambda: cached_rows(env) >= 16, "16 files read")
    (photos / "a0.png").unlink()
    assert proc.wait(timeout=300) == 3
    output = (tmp_path / "run.log").read_text()
    assert "Traceback" not in output
    assert "zz/copy.png: not moved: its keeper a0.png is gone" in output
    assert "a0.png: not copied: it is gone" in output
    assert (photos / "zz" / "copy.png").exists()


# --- one line, not a traceback ----------------------------------------------------------------


def mount_namespace() -> list[str] | None:
    """A command prefix that runs a shell in a private mount namespace (root, or a user
    namespace), where the test can mount a small or read-only tmpfs; None where neither works."""
    for prefix in (["unshare", "-m"], ["unshare", "-Urm"]):
        if shutil.which("unshare") is None:
            return None
        probe = subprocess.run(
            [
                *prefix,
                "sh",
                "-c",
                "mount -t tmpfs -o size=64k none /mnt 2>/dev/null || mount -t tmpfs -o size=64k none /tmp",
            ],
            capture_output=True,
        )
        if probe.returncode == 0:
            return prefix
    return None


def in_namespace(script: str, env: dict | None = None) -> subprocess.CompletedProcess:
    prefix = mount_namespace()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (no root, no user namespaces)")
    return subprocess.run(
        [*prefix, "sh", "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def big_photos(root: Path, count: int = 6) -> Path:
    """Pictures of ~250 KB each (noise does not compress), each with an exact copy to move."""
    (root / "copies").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(count):
        pixels = np.asarray(draw_picture(700 + i, (300, 280)), np.int16) + rng.integers(-40, 40, (280, 300, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / f"n{i}.png")
        (root / "copies" / f"n{i}.png").write_bytes((root / f"n{i}.png").read_bytes())
    return root


@pytest.mark.parametrize("action", ["--move-rejects-to", "--copy-keepers-to"])
def test_a_full_disk_is_one_line_and_undo_restores_everything(tmp_path: Path, action: str) -> None:
    photos = big_photos(tmp_path / "photos")
    before = snapshot(photos)
    dest = tmp_path / "small"
    dest.mkdir()
    cli = f"{sys.executable} -m refinery"
    script = (
        f"mount -t tmpfs -o size=600k none {dest} && {cli} dedup {photos} {action} {dest}/out --device cpu "
        f"> {tmp_path}/dedup.out 2> {tmp_path}/dedup.err; echo $? > {tmp_path}/dedup.rc; "
        f"find {dest} -name '*.refinery-tmp' > {tmp_path}/temps; "
        f"cat {dest}/out/.refinery/journal.jsonl > {tmp_path}/journal 2>/dev/null; "
        + (
            f"{cli} undo {dest}/out > {tmp_path}/undo.out 2>&1; echo $? > {tmp_path}/undo.rc"
            if action == "--move-rejects-to"
            else "true"
        )
    )
    proc = in_namespace(script)
    assert proc.returncode == 0, proc.stderr
    err = (tmp_path / "dedup.err").read_text()
    assert (tmp_path / "dedup.rc").read_text().strip() == "1", err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "stopped" in errors[0], err
    assert (tmp_path / "temps").read_text() == ""  # no partial file left behind
    if action == "--move-rejects-to":
        lines = [json.loads(line) for line in (tmp_path / "journal").read_text().splitlines()]  # every line whole
        assert any(e["op"] == "done" for e in lines) and any(e["op"] == "cancelled" for e in lines)
        assert (tmp_path / "undo.rc").read_text().strip() == "0", (tmp_path / "undo.out").read_text()
    assert snapshot(photos) == before  # moved files came back; copies never touch the source


def test_a_journal_that_cannot_be_written_stops_before_any_move(photos: Path, tmp_path: Path) -> None:
    before = snapshot(photos)
    dest = tmp_path / "full"
    dest.mkdir()
    script = (
        f"mount -t tmpfs -o size=64k none {dest} && mkdir {dest}/out/ {dest}/out/.refinery && "
        f"(head -c 1M /dev/zero > {dest}/filler 2>/dev/null; true) && "
        f"{sys.executable} -m refinery dedup {photos} --move-rejects-to {dest}/out --device cpu"
    )
    proc = in_namespace(script)
    assert proc.returncode == 1
    assert "cannot write the journal: No space left on device" in one_error_line(proc)
    assert snapshot(photos) == before


@pytest.mark.parametrize("action", ["--move-rejects-to", "--copy-keepers-to"])
def test_a_read_only_destination_is_refused_before_the_scan(photos: Path, tmp_path: Path, action: str) -> None:
    dest = tmp_path / "ro"
    dest.mkdir()
    proc = in_namespace(
        f"mount -t tmpfs -o ro,size=64k none {dest} && "
        f"{sys.executable} -m refinery dedup {photos} {action} {dest}/out --device cpu"
    )
    assert proc.returncode == 1 and "Read-only file system" in one_error_line(proc)
    assert "images/s" not in proc.stdout


def test_a_name_too_long_for_the_destination_is_one_error_line(photos: Path, tmp_path: Path) -> None:
    name = "x" * 250 + ".jpg"  # 254 bytes: its free name "...x.1.jpg" would be 256, over the limit
    (photos / name).write_bytes((photos / "a.jpg").read_bytes())
    dest = tmp_path / "rejects"
    dest.mkdir()
    (dest / name).write_bytes(b"taken")
    proc = run_cli("dedup", str(photos), "--move-rejects-to", str(dest), *CPU)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and name in errors[0] and "File name too long" in errors[0]
    assert (photos / name).exists() and (dest / name).read_bytes() == b"taken"
    assert REMOVED <= {rel for rel in snapshot(dest) if not rel.startswith(".refinery")}


@pytest.mark.parametrize("flag", ["--report", "--csv"])
def test_an_unwritable_report_path_is_refused_before_the_scan(photos: Path, tmp_path: Path, flag: str) -> None:
    (tmp_path / "afile").write_text("a file, not a folder")
    proc = run_cli("dedup", str(photos), flag, str(tmp_path / "afile" / "r.json"), *CPU)
    assert proc.returncode == 1 and "cannot write there" in one_error_line(proc)
    assert "images/s" not in proc.stdout


@pytest.mark.parametrize("flag", ["--report", "--csv"])
def test_a_report_never_overwrites_a_file_of_the_judged_folder(photos: Path, flag: str) -> None:
    before = snapshot(photos)
    proc = run_cli("dedup", str(photos), flag, str(photos / "a.jpg"), *CPU)
    assert proc.returncode == 1 and "an input of this command" in one_error_line(proc)
    assert snapshot(photos) == before


@pytest.mark.parametrize(
    "setting", ["--set=semantic.threshold=-1", "--set=model.batch_size=0", "--set=run.workers=two"]
)
def test_a_bad_setting_is_a_usage_error_before_any_work(photos: Path, setting: str) -> None:
    proc = run_cli("dedup", str(photos), setting, *CPU)
    key = setting.split("=")[1]
    assert proc.returncode == 2 and key in one_error_line(proc)


def test_a_bad_value_in_a_config_file_names_the_file_and_the_key(photos: Path, tmp_path: Path) -> None:
    config = tmp_path / "my.toml"
    config.write_text('[run]\nworkers = "two"\n')
    proc = run_cli("dedup", str(photos), "--config", str(config), *CPU)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert str(config) in line and "run.workers" in line


def test_undo_on_a_folder_without_journal_creates_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    proc = run_cli("undo", str(folder))
    assert proc.returncode == 1 and "no refinery journal" in one_error_line(proc)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("action", ["--move-rejects-to", "--copy-keepers-to"])
@pytest.mark.parametrize("where", ["the folder itself", "inside it", "its parent"])
def test_a_destination_that_is_inside_or_holds_the_folder_is_refused(photos: Path, action: str, where: str) -> None:
    dest = {"the folder itself": photos, "inside it": photos / "sub" / "out", "its parent": photos.parent}[where]
    before = snapshot(photos.parent)
    proc = run_cli("dedup", str(photos), action, str(dest), *CPU)
    assert proc.returncode == 1 and "choose a folder outside it" in one_error_line(proc)
    assert snapshot(photos.parent) == before


def test_a_fifo_in_a_pictures_place_is_an_error_not_a_hang(photos: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    (photos / "link.jpg").symlink_to(tmp_path / "pipe.jpg")  # judged with --follow-symlinks: read, not waited on
    proc = run_cli("dedup", str(photos), "--follow-symlinks", *CPU, timeout=120)
    assert proc.returncode == 3
    assert "link.jpg: not a regular file" in one_error_line(proc)


def test_a_fifo_named_like_a_picture_is_reported(photos: Path, tmp_path: Path) -> None:
    os.mkfifo(photos / "camera.jpg")
    report = tmp_path / "r.json"
    proc = run_cli("dedup", str(photos), "--report", str(report), *CPU, timeout=120)
    assert proc.returncode == 3 and "camera.jpg: not a regular file" in one_error_line(proc)
    assert {"path": "camera.jpg", "decision": "error"}.items() <= next(
        f for f in json.loads(report.read_text())["files"] if f["path"] == "camera.jpg"
    ).items()


def test_a_file_that_cannot_be_written_is_one_line_and_the_old_one_stays(tmp_path: Path) -> None:
    from refinery.io.fileio import write_text_atomic

    (tmp_path / "report.json").write_text("the old report")
    (tmp_path / "not-a-folder").write_text("a file")
    with pytest.raises(RefineryError, match=r"cannot write .*not-a-folder/r\.json: "):
        write_text_atomic(tmp_path / "not-a-folder" / "r.json", "{}")
    os.chmod(tmp_path, 0o500)
    try:
        if not os.access(tmp_path, os.W_OK):  # root writes anyway
            with pytest.raises(RefineryError, match="cannot write .*report.json: Permission denied"):
                write_text_atomic(tmp_path / "report.json", "{}")
    finally:
        os.chmod(tmp_path, 0o700)
    assert (tmp_path / "report.json").read_text() == "the old report"
