"""Retrieval: `refinery index`, `search` and `eval` through the real CLI on real files, and the
metrics and pixel measures on hand-made numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from conftest import draw_picture, next_frame, run_cli
from refinery.retrieval.evaluate import average_precision, score_rankings, split_queries
from refinery.retrieval.methods import pixel_scores

CLASSES = 3
PER_CLASS = 6


def draw_face(size: int = 240, background: tuple[int, int, int] = (90, 120, 160)) -> Image.Image:
    """A drawn face that OpenCV's frontal-face Haar cascade finds: skin oval, brows, eyes, nose, mouth."""
    im = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(im)
    s = size / 320

    def at(*xy: float) -> list[float]:
        return [v * s for v in xy]

    draw.ellipse(at(80, 50, 240, 270), fill=(225, 190, 160))
    draw.ellipse(at(110, 120, 150, 140), fill=(40, 30, 30))
    draw.ellipse(at(170, 120, 210, 140), fill=(40, 30, 30))
    draw.rectangle(at(105, 105, 155, 112), fill=(60, 40, 30))
    draw.rectangle(at(165, 105, 215, 112), fill=(60, 40, 30))
    draw.polygon([(160 * s, 140 * s), (150 * s, 190 * s), (170 * s, 190 * s)], fill=(190, 150, 125))
    draw.ellipse(at(125, 210, 195, 230), fill=(150, 60, 60))
    return im.filter(ImageFilter.GaussianBlur(2 * s))


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CLASSES folders, each one scene seen PER_CLASS times (a few pixels on, a little brighter)."""
    root = tmp_path_factory.mktemp("classes")
    for c in range(CLASSES):
        folder = root / f"class_{c}"
        folder.mkdir()
        scene = draw_picture(500 + c, (320, 240))
        for i in range(PER_CLASS):
            next_frame(scene, dx=2 * i, dy=i).save(folder / f"view_{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def index(classes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("index") / "classes.index"
    proc = run_cli("index", str(classes), "--out", str(out), "--sift", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert f"indexed {CLASSES * PER_CLASS} pictures" in proc.stdout and "flat index" in proc.stdout
    return out


def search_json(index: Path, *args: str) -> list[dict]:
    proc = run_cli("search", str(index), *args, "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_search_finds_the_query_first_and_its_class_next(index: Path, classes: Path) -> None:
    query = classes / "class_1" / "view_2.jpg"
    [answer] = search_json(index, str(query), "-k", "4")
    assert answer["query"] == str(query)
    results = answer["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4]
    assert results[0]["path"] == "class_1/view_2.jpg" and results[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert all(r["path"].startswith("class_1/") for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_l2_metric_gives_distances_in_the_same_order(index: Path, classes: Path) -> None:
    query = str(classes / "class_0" / "view_0.jpg")
    cosine = search_json(index, query, "-k", "5")[0]["results"]
    l2 = search_json(index, query, "-k", "5", "--metric", "l2")[0]["results"]
    assert [r["path"] for r in cosine] == [r["path"] for r in l2]
    for c, d in zip(cosine, l2, strict=True):
        assert d["score"] == pytest.approx(2 - 2 * c["score"], abs=1e-4)


@pytest.mark.parametrize("method", ["pixel-l1", "pixel-l2", "pixel-cosine", "pixel-pearson", "sift"])
def test_every_baseline_finds_an_identical_picture(index: Path, classes: Path, method: str) -> None:
    [answer] = search_json(index, str(classes / "class_2" / "view_3.jpg"), "-k", "3", "--method", method)
    assert answer["results"][0]["path"] == "class_2/view_3.jpg"


def test_text_output_html_sheet_and_a_bad_query(index: Path, classes: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a picture")
    sheet = tmp_path / "sheet.html"
    proc = run_cli(
        "search",
        str(index),
        str(classes / "class_0" / "view_1.jpg"),
        str(bad),
        "-k",
        "2",
        "--html",
        str(sheet),
        "--device",
        "cpu",
    )
    assert proc.returncode == 3  # one query could not be read; the other was answered
    assert f"error: {bad}: not an image" in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("query: ") and lines[1].split() == ["1", "1.0000", "class_0/view_1.jpg"]
    page = sheet.read_text()
    assert page.count("data:image/jpeg;base64,") == 3 and "class_0/view_1.jpg" in page


def test_unknown_method_and_a_folder_that_is_no_index(index: Path, classes: Path, tmp_path: Path) -> None:
    query = str(classes / "class_0" / "view_1.jpg")
    proc = run_cli("search", str(index), query, "--method", "colour-histogram")
    assert proc.returncode == 1 and "unknown method 'colour-histogram'" in proc.stderr
    proc = run_cli("search", str(tmp_path), query)
    assert proc.returncode == 1 and "not a refinery index (no index.json in it)" in proc.stderr
    # the photos themselves: indexed into a folder of their own, never into themselves
    proc = run_cli("search", str(classes), query)
    assert proc.returncode == 1 and "Errno" not in proc.stderr
    assert proc.stderr.strip().endswith(
        f"{classes}: a folder of pictures, not a refinery index; index it first: `refinery index {classes} "
        f"--out {classes}.index`, then `refinery search {classes}.index QUERY`"
    )


def test_indexing_again_is_incremental(classes: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(classes.rglob("*.jpg"))[:5]:
        (folder / f"{path.parent.name}_{path.name}").write_bytes(path.read_bytes())
    out = tmp_path / "photos.index"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert "0 embeddings from the cache" in run_cli("index", str(folder), "--out", str(out), env=env).stdout
    draw_picture(77, (320, 240)).save(folder / "new.jpg")
    again = run_cli("index", str(folder), "--out", str(out), env=env)
    assert "indexed 6 pictures" in again.stdout and "5 embeddings from the cache" in again.stdout
    [answer] = search_json(out, str(folder / "new.jpg"), "-k", "1")
    assert answer["results"][0]["path"] == "new.jpg"


def test_faces_are_cropped_and_pictures_without_one_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "people"
    folder.mkdir()
    draw_face(240).save(folder / "face_small.png")
    face = draw_face(200)
    framed = draw_picture(3, (480, 360))
    framed.paste(face, (200, 100))  # the same face in a busy picture
    framed.save(folder / "face_in_scene.png")
    draw_picture(4, (320, 240)).save(folder / "no_face.jpg")
    out = tmp_path / "people.index"
    proc = run_cli("index", str(folder), "--out", str(out), "--faces", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "indexed 2 pictures" in proc.stdout and "1 left out" in proc.stdout
    assert "no_face.jpg: left out: no face found" in proc.stderr
    [answer] = search_json(out, str(folder / "face_small.png"), "-k", "2")
    assert {r["path"] for r in answer["results"]} == {"face_small.png", "face_in_scene.png"}
    assert answer["results"][1]["score"] > 0.8  # the face, not the scene around it
    proc = run_cli("search", str(out), str(folder / "no_face.jpg"), "--device", "cpu")
    assert proc.returncode == 3 and "no face found" in proc.stderr


def test_eval_writes_every_method(classes: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    proc = run_cli("eval", str(classes), "--json", str(out), "-k", "3", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    methods = json.loads(out.read_text())["methods"]
    assert set(methods) == {"embedding:default", "pixel-l1", "pixel-l2", "pixel-cosine", "pixel-pearson", "sift"}
    for scores in methods.values():
        assert set(scores) >= {"top1", "top5", "precision_at_k", "recall_at_k", "map", "queries_per_s"}
        assert 0 <= scores["map"] <= 1 and scores["queries_per_s"] > 0
    assert methods["embedding:default"]["top1"] == 1.0  # views of one scene: the nearest is always its class
    assert "| embedding:default |" in proc.stdout


def test_query_split_is_fixed_and_keeps_classes_apart() -> None:
    paths = [f"c{c}/p{i}.jpg" for c in range(3) for i in range(10)] + ["loose.jpg", "c3/only.jpg"]
    gallery, queries = split_queries(paths)
    assert (gallery, queries) == split_queries(list(reversed(paths)))
    assert not set(gallery) & set(queries) and "loose.jpg" not in gallery + queries
    assert [sum(q.startswith(f"c{c}/") for q in queries) for c in range(3)] == [2, 2, 2]
    assert "c3/only.jpg" in gallery  # a class of one cannot be asked about


def test_average_precision_and_rankings_by_hand() -> None:
    assert average_precision(np.array([True, False, True, False])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([False, False])) == 0.0
    labels = np.array(["a", "a", "b", "b"])
    s = score_rankings([np.array([0, 2, 1, 3]), np.array([0, 1, 2, 3])], ["a", "b"], labels, k=2, seconds=0.5)
    assert (s.top1, s.precision_at_k, s.recall_at_k) == (0.5, 0.25, 0.25)
    assert s.map == pytest.approx(((1 + 2 / 3) / 2 + (1 / 3 + 2 / 4) / 2) / 2)
    assert s.queries_per_s == 4.0


def test_pixel_measures_by_hand() -> None:
    gallery = np.array([[0, 0, 0, 0], [10, 20, 30, 40], [1, 2, 3, 4]], np.uint8)
    query = np.array([1, 2, 3, 4], np.uint8)
    assert pixel_scores("pixel-l1", query, gallery).tolist() == [2.5, 22.5, 0.0]
    assert pixel_scores("pixel-l2", query, gallery).tolist() == [7.5, 607.5, 0.0]
    assert pixel_scores("pixel-cosine", query, gallery)[1:] == pytest.approx([1.0, 1.0])
    assert pixel_scores("pixel-pearson", query, gallery)[1:] == pytest.approx([1.0, 1.0])
    assert pixel_scores("pixel-pearson", np.array([4, 3, 2, 1], np.uint8), gallery)[2] == pytest.approx(-1.0)
