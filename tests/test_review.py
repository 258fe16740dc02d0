"""The review page: `dedup --html` and `review` through the real entry point on real files,
and the page itself in a real headless Chromium (selenium) opened from disk: groups,
thumbnails, filters, the name search, flipped decisions saved as decisions.json."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import draw_dup_folder, draw_picture, next_frame, run_cli, snapshot

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DATA = re.compile(r'<script type="application/json" id="data">(.*?)</script>', re.S)


@dataclass
class Reviewed:
    root: Path
    report: Path
    html: Path
    stdout: str


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Reviewed:
    """A folder with an exact copy, a near copy, a look-alike, a dark picture, an unreadable
    file and a picture of its own, judged once by `dedup --report R --html H`."""
    base = tmp_path_factory.mktemp("review")
    root = base / "photos"
    draw_dup_folder(root)
    for name in ("d_bright.jpg", "d_blur.jpg"):  # one quality reject is enough here
        (root / name).unlink()
    draw_picture(7, (320, 240)).save(root / "e.jpg", quality=92)  # a picture of its own
    report, html = base / "r.json", base / "review.html"
    proc = run_cli("dedup", str(root), "--report", str(report), "--html", str(html), "--device", "cpu")
    assert proc.returncode == 3, proc.stderr  # finished; broken.jpg could not be read
    return Reviewed(root, report, html, proc.stdout)


def page_data(html: Path) -> dict:
    found = DATA.search(html.read_text())
    assert found
    return json.loads(found.group(1))


def test_dedup_writes_one_self_contained_page(reviewed: Reviewed) -> None:
    line = re.search(r"^wrote (.+) \((\d+) groups, (\d+\.\d) MB\)$", reviewed.stdout, re.M)
    assert line and line.group(1) == str(reviewed.html) and line.group(2) == "3", reviewed.stdout
    page = reviewed.html.read_text()
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in page
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # nothing fetched: every picture is inlined
    assert "http://" not in page and "https://" not in page
    data = page_data(reviewed.html)
    report = json.loads(reviewed.report.read_text())
    assert data["root"] == report["summary"]["root"]
    files = {f["path"]: f for f in data["files"]}
    groups = {g["evidence"]: files_of(data, g) for g in data["groups"]}
    assert groups.keys() == {"exact", "near", "semantic"}
    assert groups["exact"] == ["a.jpg", "sub/a_copy.jpg"] and groups["near"] == ["b.png", "b_low.jpg", "b_small.jpg"]
    assert sorted(groups["semantic"]) == ["c.jpg", "c_next.jpg"]
    assert [g["evidence"] for g in data["groups"]][-1] == "exact"  # the safest last
    assert [data["files"][i]["path"] for i in data["rejects"]] == ["d_dark.jpg"]
    assert [data["files"][i]["path"] for i in data["errors"]] == ["broken.jpg"]
    for path in ("a.jpg", "sub/a_copy.jpg", "b.png", "b_low.jpg", "d_dark.jpg"):
        assert files[path]["thumb"] is not None
    assert files["a.jpg"]["thumb"] == files["sub/a_copy.jpg"]["thumb"]  # identical bytes: one thumbnail
    assert len(data["files"]) == sum(1 for f in report["files"] if f["decision"] != "skip")


def files_of(data: dict, group: dict) -> list[str]:
    """A group's paths: its keeper first, then its other files by name."""
    return [data["files"][group["keeper"]]["path"]] + sorted(data["files"][i]["path"] for i in group["members"])


def test_review_command_writes_the_same_page(reviewed: Reviewed, tmp_path: Path) -> None:
    again = tmp_path / "again.html"
    proc = run_cli("review", str(reviewed.report), "--html", str(again))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {again} (3 groups, ")
    assert again.read_bytes() == reviewed.html.read_bytes()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json {", "not JSON"),
        ('{"files": []}', "not a dedup report"),
        ('{"summary": {}, "files": []}', "names no root folder"),
        ('{"summary": {"root": "/x"}, "files": [{"path": "a.jpg"}]}', "file entry 1 is not a report line"),
    ],
)
def test_review_refuses_what_is_not_a_report(tmp_path: Path, content: str, message: str) -> None:
    report = tmp_path / "r.json"
    report.write_text(content)
    proc = run_cli("review", str(report), "--html", str(tmp_path / "page.html"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ") and message in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "page.html").exists()


def test_review_will_not_write_over_its_report(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text('{"summary": {"root": "/x"}, "files": []}')
    proc = run_cli("review", str(report), "--html", str(report))
    assert proc.returncode == 1 and "is an input of this command" in proc.stderr
    assert report.read_text() == '{"summary": {"root": "/x"}, "files": []}'


def frame(background: Image.Image, at: tuple[int, int]) -> Image.Image:
    """A fixed camera's frame: `background` with a dark square standing at `at`."""
    out = background.copy()
    ImageDraw.Draw(out).rectangle([at[0], at[1], at[0] + 30, at[1] + 30], fill=(20, 20, 30))
    return out


def line(
    path: str,
    decision: str,
    group: int | None,
    kept_as: str | None = None,
    stage: str | None = None,
    test: str | None = None,
    **scores: float,
) -> dict:
    return {
        "path": path,
        "decision": decision,
        "stage": stage,
        "reason": "",
        "group": group,
        "kept_as": kept_as,
        "scores": {"sharpness": 100.0, **scores},
        "test": test,
        "file": None,
    }


def test_groups_come_riskiest_first_and_a_lost_file_gets_a_placeholder(tmp_path: Path) -> None:
    from refinery.review.page import write_review

    for k, name in enumerate(("x", "y", "z", "w", "v", "gone")):
        draw_picture(20 + k).save(tmp_path / f"{name}.jpg")
        draw_picture(30 + k).save(tmp_path / f"{name}2.jpg")
    (tmp_path / "gone2.jpg").unlink()  # read for the report, gone since
    report = {
        "summary": {"root": str(tmp_path)},
        "files": [
            line("x.jpg", "keep", 1),
            line("x2.jpg", "remove", 1, "x.jpg", "exact", "picture"),
            line("y.jpg", "keep", 2),
            line("y2.jpg", "remove", 2, "y.jpg", "near", "picture", thumb_correlation=0.95, cosine=0.99),
            line("z.jpg", "keep", 3),
            line("z2.jpg", "remove", 3, "z.jpg", "semantic", "picture", thumb_correlation=0.5, cosine=0.96),
            line("w.jpg", "keep", 4),
            line("w2.jpg", "remove", 4, "w.jpg", "near", "scene", largest_move=0.12),
            # a report written before the scene test measured moves
            line("v.jpg", "keep", 5),
            line("v2.jpg", "remove", 5, "v.jpg", "near", "scene", foreground_overlap=0.6),
            line("gone.jpg", "keep", None),
            line("gone2.jpg", "remove", None, stage="quality"),
        ],
    }
    stats = write_review(report, tmp_path / "page.html")
    data = page_data(tmp_path / "page.html")
    order = [(g["evidence"], g["risk"]) for g in data["groups"]]
    assert order == [("overlap", 0.6), ("scene", 0.88), ("near", 0.95), ("semantic", 0.96), ("exact", 1.0)]
    gone = data["files"][data["rejects"][0]]
    assert gone["path"] == "gone2.jpg" and gone["thumb"] is None and gone["unreadable"] == "no such file"
    assert (stats.groups, stats.files) == (5, 11)
    assert stats.bytes == (tmp_path / "page.html").stat().st_size


def test_a_scene_frame_shows_where_it_differs_from_its_keeper() -> None:
    from refinery.review.difference import difference

    background = draw_picture(3, (160, 120))
    keeper, removed = frame(background, (20, 20)), frame(background, (100, 70))
    marked = np.asarray(difference(next_frame(removed, 0, 0), keeper))  # a little brighter: not a difference
    red = (marked[:, :, 0] > 200) & (marked[:, :, 1] < 60) & (marked[:, :, 2] < 60)
    near_squares = np.zeros_like(red)
    for x, y in ((20, 20), (100, 70)):
        near_squares[y - 4 : y + 35, x - 4 : x + 35] = True
        assert red[y + 5 : y + 26, x + 5 : x + 26].mean() > 0.9  # where the square came and where it went
    assert not red[~near_squares].any()  # and nowhere else


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """Debian's headless Chromium, driven through its chromedriver; downloads go to a folder
    of the test's own."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"no {' or '.join(missing)}: install Debian's chromium and chromium-driver "
            "(tests/run.sh does, when it runs as root)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver, downloads
    finally:
        driver.quit()


def test_a_person_reviews_in_a_browser(reviewed: Reviewed, browser: tuple[Any, Path], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, downloads = browser
    driver.get(reviewed.html.as_uri())
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.execute_script("return document.documentElement.dataset.firstPageMs"))
    css = driver.find_elements

    def visible_paths(selector: str = "figure.tile, tr.error") -> list[str]:
        return sorted(e.get_attribute("data-path") for e in css(By.CSS_SELECTOR, selector))

    def tile(path: str) -> Any:
        return driver.find_element(By.CSS_SELECTOR, f'figure.tile[data-path="{path}"]')

    assert len(css(By.CSS_SELECTOR, "section.group")) == 3
    assert visible_paths() == [
        "a.jpg",
        "b.png",
        "b_low.jpg",
        "b_small.jpg",
        "broken.jpg",
        "c.jpg",
        "c_next.jpg",
        "d_dark.jpg",
        "sub/a_copy.jpg",
    ]
    assert driver.execute_script(
        "const imgs = [...document.querySelectorAll('#list img')];"
        "return imgs.length >= 8 && imgs.every(i => i.complete && i.naturalWidth > 0)"
    )
    reasons = " | ".join(e.text for e in css(By.CSS_SELECTOR, ".reason"))
    for text in ("identical bytes to a.jpg", "same picture as b.png", "looks like c", "too dark", "cannot decode"):
        assert text in reasons
    # scores in words, every figure on hover
    evidence = tile("b_low.jpg").find_element(By.CSS_SELECTOR, ".scores")
    assert "seen small" in evidence.text and "hashes" in evidence.text
    assert "thumb correlation" in evidence.get_attribute("title") and "phash distance" in evidence.get_attribute(
        "title"
    )
    risks = [e.text for e in css(By.CSS_SELECTOR, "section.group .risk")]
    assert risks[-1] == "identical bytes" and risks[0].startswith(("cosine", "thumbnail correlation"))

    # A picture clicked: its original, large (the page sits beside the photos); a duplicate
    # flickers with its keeper; Escape closes it.
    from PIL import Image as PILImage

    tile("b_low.jpg").find_element(By.CSS_SELECTOR, ".pics img").click()
    viewer = driver.find_element(By.ID, "viewer")
    assert viewer.is_displayed()
    with PILImage.open(reviewed.root / "b_low.jpg") as im:
        width = im.width
    wait.until(lambda d: d.execute_script("return document.getElementById('large').naturalWidth") == width)
    assert driver.find_element(By.ID, "large-caption").text == "b_low.jpg"
    driver.find_element(By.ID, "flicker").click()
    wait.until(lambda d: d.find_element(By.ID, "large-caption").text == "b.png - the keeper")
    shot = tmp_path / "viewer.png"
    assert driver.save_screenshot(str(shot))
    driver.find_element(By.ID, "flicker").click()  # stop
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert not viewer.is_displayed()

    # A stage filter: near copies only.
    for stage in ("exact", "semantic", "quality", "error"):
        driver.find_element(By.CSS_SELECTOR, f'#stages input[value="{stage}"]').click()
    assert visible_paths() == ["b.png", "b_low.jpg", "b_small.jpg"]
    for stage in ("exact", "semantic", "quality", "error"):
        driver.find_element(By.CSS_SELECTOR, f'#stages input[value="{stage}"]').click()
    # The name search.
    driver.find_element(By.ID, "search").send_keys("c_NEXT")
    assert visible_paths() == ["c.jpg", "c_next.jpg"]
    driver.find_element(By.ID, "search").clear()
    driver.find_element(By.ID, "search").send_keys("dark")
    assert visible_paths() == ["d_dark.jpg"]
    driver.execute_script(
        "const s = document.getElementById('search'); s.value = '';s.dispatchEvent(new Event('input'))"
    )
    assert len(visible_paths()) == 9

    # A keeper with removed duplicates cannot be removed; "keep instead" swaps, and is undone.
    remove = tile("b.png").find_element(By.CSS_SELECTOR, "button.remove")
    assert not remove.is_enabled() and "keeper of 2 removed files" in remove.get_attribute("title")
    tile("b_small.jpg").find_element(By.CSS_SELECTOR, "button.keep-instead").click()
    assert "keeper" in tile("b_small.jpg").get_attribute("class")
    assert "a duplicate of b_small.jpg" in tile("b.png").text and "a duplicate of b_small.jpg" in tile("b_low.jpg").text
    assert "flipped" in tile("b.png").get_attribute("class")
    tile("b_small.jpg").find_element(By.CSS_SELECTOR, "button.undo").click()
    assert "keeper" in tile("b.png").get_attribute("class") and not css(By.CSS_SELECTOR, ".flipped")

    # "keep too" on the exact copy: marked, with its undo; then saved.
    tile("sub/a_copy.jpg").find_element(By.CSS_SELECTOR, "button.keep-too").click()
    flipped = tile("sub/a_copy.jpg")
    assert "flipped" in flipped.get_attribute("class") and "was remove" in flipped.text
    assert flipped.find_elements(By.CSS_SELECTOR, "button.undo")
    assert tile("a.jpg").find_element(By.CSS_SELECTOR, "button.remove").is_enabled()  # no duplicate left
    assert "1 file flipped, not saved yet" in driver.find_element(By.ID, "changes").text
    shot = tmp_path / "review.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
    driver.find_element(By.ID, "save").click()
    saved = downloads / "decisions.json"
    deadline = time.monotonic() + 15
    while not saved.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    decisions = json.loads(saved.read_text())

    report = json.loads(reviewed.report.read_text())
    assert decisions["refinery_decisions"] == 1 and decisions["root"] == report["summary"]["root"]
    expected = [
        {key: f[key] for key in ("path", "decision", "kept_as", "file")}
        for f in report["files"]
        if f["decision"] in ("keep", "remove")
    ]
    for f in expected:
        if f["path"] == "sub/a_copy.jpg":
            f.update(decision="keep", kept_as=None)
    assert sorted(decisions["files"], key=lambda f: f["path"]) == sorted(expected, key=lambda f: f["path"])
    assert "1 file flipped, saved" in driver.find_element(By.ID, "changes").text
    # The flips are kept in the browser: the page opened again resumes them.
    driver.refresh()
    wait.until(lambda d: d.execute_script("return document.documentElement.dataset.firstPageMs"))
    assert "flipped" in tile("sub/a_copy.jpg").get_attribute("class")
    assert "1 file flipped, saved" in driver.find_element(By.ID, "changes").text
    assert tile("sub/a_copy.jpg").find_elements(By.CSS_SELECTOR, "button.undo")
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems  # no script error, no Content-Security-Policy violation

    # The saved decisions, applied: exactly the approved files move, undo puts back every byte.
    before = snapshot(reviewed.root)
    dest = tmp_path / "rejects"
    applied = run_cli("apply", str(saved), "--move-rejects-to", str(dest))
    assert applied.returncode == 0, applied.stderr
    approved = {f["path"] for f in decisions["files"] if f["decision"] == "remove"}
    moved = {rel for rel, entry in snapshot(dest).items() if entry[0] == "file" and not rel.startswith(".refinery")}
    assert moved == approved and "sub/a_copy.jpg" not in moved
    assert run_cli("undo", str(dest)).returncode == 0
    assert snapshot(reviewed.root) == before


def test_the_page_ranks_a_duplicate_by_its_reason_code_and_an_older_report_by_its_words() -> None:
    from refinery.review.page import evidence

    near_scores = {"thumb_correlation": 0.995, "cosine": 0.97}
    coded = {"stage": "near", "reason": "same picture as a.jpg", "scores": near_scores, "reason_code": "looks_like"}
    assert evidence(coded) == ("semantic", 0.97)  # the code says: alike in its embedding
    assert evidence(coded | {"reason_code": "same_picture", "reason": "looks like a.jpg"}) == ("near", 0.995)
    older = {"stage": "near", "reason": "looks like a.jpg (cosine 0.97)", "scores": near_scores}
    assert evidence(older) == ("semantic", 0.97)  # a report written before reason codes
    assert evidence(older | {"reason": "same picture as a.jpg"}) == ("near", 0.995)


def test_a_review_resumes_from_its_saved_decisions(
    reviewed: Reviewed, browser: tuple[Any, Path], tmp_path: Path
) -> None:
    report = json.loads(reviewed.report.read_text())
    lines = [
        {key: f[key] for key in ("path", "decision", "kept_as", "file")}
        for f in report["files"]
        if f["decision"] in ("keep", "remove")
    ]
    for f in lines:
        if f["path"] == "sub/a_copy.jpg":
            f.update(decision="keep", kept_as=None)
    saved = tmp_path / "decisions.json"
    root = report["summary"]["root"]
    saved.write_text(json.dumps({"refinery_decisions": 1, "root": root, "follow_symlinks": False, "files": lines}))
    page = tmp_path / "again.html"
    alone = run_cli("review", str(saved), "--html", str(page))
    assert alone.returncode == 1 and "is a decisions file" in alone.stderr
    assert f"refinery review REPORT.json --decisions {saved} --html review.html" in alone.stderr
    resumed = run_cli("review", str(reviewed.report), "--decisions", str(saved), "--html", str(page))
    assert resumed.returncode == 0, resumed.stderr
    assert f"1 flips of {saved} resumed" in resumed.stdout
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page.read_text()).group(1))
    assert data["resume"] == [["sub/a_copy.jpg", "keep", None]]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, _ = browser
    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.documentElement.dataset.firstPageMs"))
    copy = driver.find_element(By.CSS_SELECTOR, 'figure.tile[data-path="sub/a_copy.jpg"]')
    assert "flipped" in copy.get_attribute("class") and "was remove" in copy.text
    assert "1 file flipped, saved" in driver.find_element(By.ID, "changes").text
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"refinery_decisions": 1, "root": str(tmp_path), "files": []}))
    refused = run_cli("review", str(reviewed.report), "--decisions", str(other), "--html", str(page))
    assert refused.returncode == 1 and "give the report the decisions were saved from" in refused.stderr


def test_large_previews_show_when_the_originals_are_out_of_reach(tmp_path: Path, browser: tuple[Any, Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photos = tmp_path / "photos"
    photos.mkdir()
    big = draw_picture(9, (800, 600))
    big.save(photos / "big.png")
    big.resize((400, 300)).save(photos / "small.jpg", quality=90)
    report, page = tmp_path / "r.json", tmp_path / "page.html"
    assert run_cli("dedup", str(photos), "--report", str(report), "--device", "cpu").returncode == 0
    proc = run_cli("review", str(report), "--html", str(page), "--large-previews")
    assert proc.returncode == 0, proc.stderr
    data = page_data(page)
    small = next(f for f in data["files"] if f["path"] == "small.jpg")
    assert small["large"] is not None and small["thumb"] != small["large"]
    photos.rename(tmp_path / "moved")  # the originals out of the page's reach
    driver, _ = browser
    driver.get(page.as_uri())
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.execute_script("return document.documentElement.dataset.firstPageMs"))
    driver.find_element(By.CSS_SELECTOR, 'figure.tile[data-path="small.jpg"] .pics img').click()
    wait.until(lambda d: d.execute_script("return document.getElementById('large').naturalWidth") == 400)
    caption = driver.find_element(By.ID, "large-caption").text
    assert caption == "small.jpg (its preview: the original is not reachable from this page)"
