"""Hand-edited and hostile inputs to `refinery review` and `refinery search`: each is one line
naming the file and what is wrong, or a page, never a traceback (docs/review.md, "A report
edited by hand"; docs/retrieval.md, search)."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import traceback
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from conftest import draw_dup_folder, draw_picture, run_cli

DATA = re.compile(r'<script type="application/json" id="data">(.*?)</script>', re.S)
MISSING = object()


def nested(depth: int) -> list:
    out: list = []
    for _ in range(depth):
        out = [out]
    return out


# What a hand or a hostile tool may put in place of any value of a report.
VALUES: dict[str, Any] = {
    "missing": MISSING,
    "null": None,
    "true": True,
    "0": 0,
    "-1": -1,
    "1e308": 1e308,
    "string": "string",
    "empty": "",
    "list": [],
    "object": {},
    "1MB": "x" * (1 << 20),
    "deep": nested(300),
    "NaN": math.nan,
}


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A real report of drawn pictures (`refinery dedup --report`): (its folder, the report)."""
    base = tmp_path_factory.mktemp("judged")
    root = base / "photos"
    draw_dup_folder(root)
    report = base / "r.json"
    proc = run_cli("dedup", str(root), "--report", str(report), "--device", "cpu")
    assert proc.returncode == 3, proc.stderr  # broken.jpg could not be read
    return root, json.loads(report.read_text())


@pytest.fixture(scope="module")
def small(judged: tuple[Path, dict]) -> dict:
    """Four lines of the real report: a look-alike removed, its keeper, a quality reject, an
    unreadable file; and the whole summary."""
    report = judged[1]
    lines = report["files"]
    removed = next(f for f in lines if f["stage"] == "semantic")
    keeper = next(f for f in lines if f["path"] == removed["kept_as"])
    reject = next(f for f in lines if f["stage"] == "quality")
    error = next(f for f in lines if f["decision"] == "error")
    assert {"cosine", "thumb_correlation"} <= removed["scores"].keys() and removed["file"]
    return {**report, "files": [keeper, removed, reject, error]}


def targets(report: dict) -> list[tuple[str, ...]]:
    """Every key of the report, of its summary, of each line, and of a removed line's scores
    and file: the places a value can be put in."""
    out: list[tuple[str, ...]] = [(key,) for key in report]
    out += [("summary", key) for key in report["summary"]]
    for n, line in enumerate(report["files"]):
        out += [("files", str(n), key) for key in line]
    out += [("files", "1", "scores", key) for key in report["files"][1]["scores"]]
    out += [("files", "1", "file", key) for key in report["files"][1]["file"]]
    return out


def put(report: dict, where: tuple[str, ...], value: Any) -> dict:
    out = copy.deepcopy(report)
    parent: Any = out
    for key in where[:-1]:
        parent = parent[int(key)] if isinstance(parent, list) else parent[key]
    if value is MISSING:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    return out


def strict_json(text: str) -> Any:
    """JSON as a browser parses it: NaN and Infinity are not JSON."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def review_in_process(report: Path, page: Path) -> tuple[str, str]:
    """("refused", the one line) or ("shown", "") as `refinery review` does it, in this process."""
    from refinery.errors import RefineryError
    from refinery.review.page import write_review
    from refinery.review.report import load_report

    try:
        data = load_report(report)
        write_review(data, page, workers=1)
    except RefineryError as e:
        return "refused", str(e)
    return "shown", ""


def saved_decisions(page: Path, tmp: Path) -> Path:
    """What the page's "Save decisions" downloads, made as its script makes it."""
    data = strict_json(DATA.search(page.read_text()).group(1))
    lines = [
        f'{{"path": {json.dumps(f["path"])}, "decision": {json.dumps(f["decision"])}, '
        f'"kept_as": {json.dumps(f["kept_as"])}, "file": {f["file"]}}}'
        for f in data["files"]
        if f["decision"] in ("keep", "remove")
    ]
    out = tmp / "decisions.json"
    out.write_text(
        '{"refinery_decisions": 1, "root": '
        + json.dumps(data["root"])
        + ', "follow_symlinks": '
        + json.dumps(data["follow_symlinks"])
        + ', "files": [\n'
        + ",\n".join(lines)
        + "\n]}\n"
    )
    return out


@pytest.mark.parametrize("value", VALUES, ids=list(VALUES))
def test_any_value_anywhere_in_a_report_is_one_line_or_a_page(small: dict, value: str, tmp_path: Path) -> None:
    from refinery.review.decisions import load as load_decisions

    problems: dict[str, str] = {}
    shown: list[str] = []
    for where in targets(small):
        name = ".".join(where)
        report = put(small, where, VALUES[value])
        path, page = tmp_path / "r.json", tmp_path / "page.html"
        page.unlink(missing_ok=True)
        path.write_text(json.dumps(report))
        try:
            outcome, line = review_in_process(path, page)
        except Exception:  # noqa: BLE001 - what this test looks for
            problems[name] = traceback.format_exc(limit=-3)
            continue
        if outcome == "refused":
            if "\n" in line or not line.startswith(f"{path}: ") or len(line) > 300 or page.exists():
                problems[name] = f"not one short line naming the report: {line[:300]!r}"
            continue
        shown.append(name)
        try:
            data = strict_json(DATA.search(page.read_text()).group(1))
            lines = [f for f in report["files"] if f["decision"] != "skip"]
            assert len(data["files"]) == len(lines), "a line left out of the page"
            load_decisions(saved_decisions(page, tmp_path))  # what the page saves, apply reads
        except Exception as e:  # noqa: BLE001
            problems[name] = f"the page is not whole: {e!r}"[:300]
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())
    # What the page does not use is not checked; what is whole is shown.
    used = ("root", "follow_symlinks")
    ignored = [".".join(w) for w in targets(small) if len(w) == 2 and w[0] == "summary" and w[1] not in used]
    ignored += ["files.0.reason", "files.1.reason"] if value in ("null", "string", "empty", "1MB") else []
    assert set(ignored) <= set(shown), sorted(set(ignored) - set(shown))


def write_report(path: Path, report: dict) -> Path:
    path.write_text(json.dumps(report))
    return path


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (("files", "1", "file"), "string", "file entry 2 is not a report line: "),
        (("files", "1", "scores"), 0.5, "file entry 2 is not a report line: "),
        (("files", "1", "scores", "cosine"), "0.97", "file entry 2 is not a report line: "),
        (("files", "0", "group"), [1], "file entry 1 is not a report line: "),
        (("files", "1", "kept_as"), ["a.jpg"], "file entry 2 is not a report line: "),
        (("summary", "root"), "photos", "names no root folder"),
    ],
    ids=["file-string", "scores-number", "cosine-string", "group-list", "kept_as-list", "root-relative"],
)
def test_the_command_refuses_a_bad_line_in_one_line(
    small: dict, tmp_path: Path, where: tuple[str, ...], value: object, message: str
) -> None:
    report = write_report(tmp_path / "r.json", put(small, where, value))
    proc = run_cli("review", str(report), "--html", str(tmp_path / "page.html"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"Error: {report}: ") and message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.count(str(report)) == 1
    assert not (tmp_path / "page.html").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"summary": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"summary": {"root": "/\xff"}, "files": []}', "not JSON"),
        (b"", "not JSON"),
    ],
    ids=["deep", "not-utf8", "empty"],
)
def test_a_report_that_is_not_json_is_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    report = tmp_path / "r.json"
    report.write_bytes(content)
    proc = run_cli("review", str(report), "--html", str(tmp_path / "page.html"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"Error: {report}: ") and message in proc.stderr, proc.stderr
    assert proc.stderr.count(str(report)) == 1


def page_files(page: Path) -> dict[str, dict]:
    return {f["path"]: f for f in strict_json(DATA.search(page.read_text()).group(1))["files"]}


def test_the_page_reads_no_picture_through_a_link_out_of_the_folder(tmp_path: Path) -> None:
    root, outside = tmp_path / "photos", tmp_path / "outside"
    draw_dup_folder(root)
    (root / "b_small.jpg").rename(root / "sub" / "b_small.jpg")
    report = tmp_path / "r.json"
    assert run_cli("dedup", str(root), "--report", str(report), "--device", "cpu").returncode == 3
    lines = {f["path"]: f for f in json.loads(report.read_text())["files"]}
    assert all(lines[p]["decision"] == "remove" for p in ("sub/b_small.jpg", "d_dark.jpg", "b_low.jpg"))
    # Since the run: a folder and a file of the report became links out of the folder, and
    # a file became a link to another file inside it.
    outside.mkdir()
    draw_picture(50).save(outside / "b_small.jpg")
    draw_picture(51).save(outside / "secret.jpg")
    shutil.rmtree(root / "sub")
    (root / "sub").symlink_to(outside)
    (root / "d_dark.jpg").unlink()
    (root / "d_dark.jpg").symlink_to(outside / "secret.jpg")
    (root / "b_low.jpg").unlink()
    (root / "b_low.jpg").symlink_to("b.png")

    page = tmp_path / "page.html"
    proc = run_cli("review", str(report), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    files = page_files(page)
    for path in ("sub/b_small.jpg", "d_dark.jpg"):
        assert files[path]["thumb"] is None, path
        assert files[path]["unreadable"] == "not shown: outside the folder", path
    assert files["b_low.jpg"]["thumb"] is None
    assert files["b_low.jpg"]["unreadable"].startswith("not shown: a symbolic link")
    for path in ("a.jpg", "b.png", "c.jpg"):
        assert files[path]["thumb"] is not None, path

    # A run that followed links says so in its summary: then the page follows them too.
    followed = json.loads(report.read_text())
    followed["summary"]["follow_symlinks"] = True
    write_report(report, followed)
    assert run_cli("review", str(report), "--html", str(page)).returncode == 0
    files = page_files(page)
    assert files["sub/b_small.jpg"]["thumb"] is not None and files["d_dark.jpg"]["thumb"] is not None


BAD = os.fsdecode(b"bad\xff.jpg")  # a name that is not UTF-8
ESC = "esc\x1b[31m.jpg"  # a name a terminal would act on
ODD = "100% #1?.jpg"  # a name a URL must encode


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("odd") / "pics"
    root.mkdir()
    draw_picture(60).save(root / "plain.jpg", quality=92)
    draw_picture(60).save(root / BAD, quality=40)  # a near copy: the page shows both
    draw_picture(61).save(root / ESC, quality=92)
    draw_picture(62).save(root / ODD, quality=92)
    return root


def test_review_shows_a_name_that_is_not_utf8(odd_folder: Path, tmp_path: Path) -> None:
    report, page = tmp_path / "r.json", tmp_path / "page.html"
    proc = run_cli("dedup", str(odd_folder), "--report", str(report), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert run_cli("review", str(report), "--html", str(page)).returncode == 0
    page.read_bytes().decode("utf-8")  # strict
    files = page_files(page)
    assert files[BAD]["thumb"] is not None and files["plain.jpg"]["thumb"] is not None
    from refinery.review.decisions import load as load_decisions

    saved = load_decisions(saved_decisions(page, tmp_path))  # the name as it came: apply finds the file
    assert os.fsencode(BAD) in {os.fsencode(d.path) for d in saved.files}


@pytest.fixture(scope="module")
def odd_index(odd_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("odd-index") / "idx"
    proc = run_cli("index", str(odd_folder), "--out", str(out), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return out


def check_sheet(sheet: Path, root: Path, names: set[str]) -> None:
    """The sheet is UTF-8, shows each name escaped, and links each picture to its own bytes."""
    text = sheet.read_bytes().decode("utf-8")  # strict: raises on anything that is not UTF-8
    links = {urllib.parse.unquote_to_bytes(h) for h in re.findall(r'href="file://([^"]*)"', text)}
    assert {os.fsencode(root / name) for name in names} <= links
    assert "\x1b" not in text
    assert "bad\\xff.jpg" in text and "esc\\x1b[31m.jpg" in text and "100% #1?.jpg" in text


def test_search_writes_names_that_are_not_utf8(odd_folder: Path, odd_index: Path, tmp_path: Path) -> None:
    query, sheet = odd_folder / BAD, tmp_path / "sheet.html"
    proc = run_cli("search", str(odd_index), str(query), "--html", str(sheet), "-k", "4")
    assert proc.returncode == 0, proc.stderr
    check_sheet(sheet, odd_folder, {"plain.jpg", BAD, ESC, ODD})
    assert re.search(r'href="file://[^"]*/bad%FF\.jpg"', sheet.read_text())  # the query links to itself
    assert "\x1b" not in proc.stdout and "bad\\xff.jpg" in proc.stdout and "esc\\x1b[31m.jpg" in proc.stdout

    done = run_cli("search", str(odd_index), str(query), "--json", "-k", "4")
    assert done.returncode == 0, done.stderr
    answer = strict_json(done.stdout)  # run_cli decodes it as UTF-8, strictly
    assert os.fsencode(answer[0]["query"]) == os.fsencode(query)
    assert {os.fsencode(r["path"]) for r in answer[0]["results"]} == {
        os.fsencode(n) for n in ("plain.jpg", BAD, ESC, ODD)
    }


def test_search_by_words_that_are_not_utf8(clip_model: Path, odd_folder: Path, tmp_path: Path) -> None:
    index, sheet = tmp_path / "idx", tmp_path / "sheet.html"
    proc = run_cli("index", str(odd_folder), "--out", str(index), "--model", str(clip_model), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    words = os.fsdecode(b"\xff")
    proc = run_cli("search", str(index), "--text", words, "--html", str(sheet), "-k", "4")
    assert proc.returncode == 0, proc.stderr
    check_sheet(sheet, odd_folder, {"plain.jpg", BAD, ESC, ODD})
    assert 'query: "\\xff"' in proc.stdout
    done = run_cli("search", str(index), "--text", words, "--json", "-k", "4")
    assert done.returncode == 0, done.stderr
    answer = strict_json(done.stdout)  # run_cli decodes it as UTF-8, strictly
    assert os.fsencode(answer[0]["query"]) == b"\xff"
