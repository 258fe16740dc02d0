"""The review page: a dedup report as one self-contained HTML file, to check every decision
as pictures and flip the wrong ones before anything moves.

The file opens from disk with no server and no network: the report's lines and the
thumbnails (small JPEGs, base64) sit in one JSON block, and a plain script renders a page
of groups at a time, turning into pictures only the thumbnails of the page shown. Groups
come riskiest first (the weakest evidence against their keeper); frames of one fixed camera
get a third picture that marks where the removed frame differs from its keeper. "Save
decisions" downloads decisions.json (version 1, docs/review.md), which `refinery apply`
acts on.

    report = load_report(Path("report.json"))
    write_review(report, Path("review.html"))
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from refinery.errors import RefineryError, UnreadableImage, UnsafePath
from refinery.io.fileio import open_folder, read_json
from refinery.io.images import decode, read_opened
from refinery.io.names import is_plain_path, is_sha256_hex, printable
from refinery.io.outputs import PAGE_MARK, Kind, write_output
from refinery.pages import csp_hash
from refinery.parallel import Progress, cpu_count, ordered_map

THUMB_SIDE = 160  # the longer side of a thumbnail, in pixels
THUMB_QUALITY = 70  # JPEG quality: ~5 KB a thumbnail
PAGE_SIZE = 50  # groups (or quality rejects, or errors) a page shows
# Frames of one camera: a pixel differs where its gray level, each frame over its own mean
# level, differs by more than this (0.15: a person on a square; JPEG noise and a 5% change of
# light stay under it).
DIFF_THRESHOLD = 0.15
DIFF_MIN_PIXELS = 3  # smaller specks of difference get no box
DECISIONS = ("keep", "remove", "error", "skip")
JUDGED = ("bytes", "mtime_ns", "sha256")  # a line's `file`: what was judged of it, as `apply` checks it


@dataclass(frozen=True)
class ReviewStats:
    groups: int  # groups shown (a keeper and its removed duplicates)
    files: int  # files shown: in groups, quality rejects and errors
    bytes: int  # size of the page written


@dataclass
class _Shown:
    """What the page shows of one file, made on a worker thread."""

    thumb: bytes | None  # JPEG
    unreadable: str | None  # why there is no thumbnail
    diff: bytes | None = None  # JPEG: where a scene frame differs from its keeper


def load_report(path: Path) -> dict:
    """A dedup report (`refinery dedup --report`), checked to be one the page can show and
    save; else RefineryError in one line naming the file and what is wrong."""
    report = read_json(path, "a dedup report")  # its own line names the file
    try:
        return check_report(report)
    except RefineryError as e:
        raise RefineryError(f"{path}: {e}") from None


def check_report(report: object) -> dict:
    """`report`, if it is a dedup report whose every line the page can show and save as it is:
    a summary whose root is an absolute folder, and a list of lines, each a keep, remove, error
    or skip of a path, every value the page uses of the type dedup writes (docs/review.md, "A
    report edited by hand"); else RefineryError in one line. Keys the page does not use are
    not looked at."""
    if not isinstance(report, dict) or not isinstance(report.get("summary"), dict) \
            or not isinstance(report.get("files"), list):
        raise RefineryError("not a dedup report (it needs a summary and a list of files); "
                            "write one with refinery dedup --report")
    root = report["summary"].get("root")
    if not isinstance(root, str) or not os.path.isabs(root) or "\x00" in root:
        raise RefineryError("the report's summary names no root folder (an absolute path)")
    if not isinstance(report["summary"].get("follow_symlinks", False), bool):
        raise RefineryError("the report's summary.follow_symlinks is neither true nor false")
    for number, line in enumerate(report["files"], start=1):
        if why := _unfit(line):
            raise RefineryError(f"file entry {number} is not a report line: {why}")
    return report


def _unfit(line: object) -> str:
    """Why the page cannot show and save this line of a report as it is; "" if it can."""
    if not isinstance(line, dict):
        return "not a JSON object"
    path, decision = line.get("path"), line.get("decision")
    if not isinstance(path, str) or not path:
        return "its path is not a file's name"
    where = _cut(printable(path)) + ": "
    if not isinstance(decision, str) or decision not in DECISIONS:
        return where + "its decision is not keep, remove, error or skip"
    if decision == "skip":  # counted, never shown
        return ""
    if decision != "error" and not is_plain_path(path):  # an error's path is only shown, never read
        return where + "its path is not a plain path below the root (like sub/a.jpg)"
    for key in ("stage", "reason", "test"):
        if line.get(key) is not None and not isinstance(line[key], str):
            return f"{where}{key} is neither text nor null"
    kept_as = line.get("kept_as")
    if kept_as is not None and not is_plain_path(kept_as):
        return where + "kept_as is neither a plain path below the root nor null"
    group = line.get("group")
    if group is not None and (not isinstance(group, int) or isinstance(group, bool)):
        return where + "group is neither a whole number nor null"
    scores = line.get("scores")
    if scores is not None and not (isinstance(scores, dict) and all(map(_number, scores.values()))):
        return where + "scores is neither an object of numbers nor null"
    if line.get("file") is not None and not _judged(line["file"]):
        return where + "file is neither {bytes, mtime_ns, sha256} as dedup writes it nor null"
    return ""


def _judged(value: object) -> bool:
    """A line's `file` as dedup writes it and apply checks it: what was judged of the file."""
    return isinstance(value, dict) and _whole(value.get("bytes")) and value["bytes"] >= 0 \
        and _whole(value.get("mtime_ns")) and isinstance(value.get("sha256"), str) \
        and is_sha256_hex(value["sha256"])


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    """A number a float holds: NaN and Infinity are not JSON, nor would a browser read them."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past a float's range
        return False


def _cut(text: str, most: int = 80) -> str:
    return text if len(text) <= most else text[:most] + "..."


def evidence(line: dict) -> tuple[str, float]:
    """The kind and strength of the evidence that a removed file duplicates its keeper
    (lower is riskier): identical bytes 1.0; a scene frame 1 less the largest move of a thing
    in it (a share of the thing's size; reports before it gave the foreground's overlap); a
    picture worded "looks like" its cosine; a near copy its thumbnail correlation."""
    scores = line.get("scores") or {}
    if line.get("test") == "scene" and "largest_move" in scores:
        return "scene", 1.0 - float(scores["largest_move"])
    if line.get("test") == "scene" and "foreground_overlap" in scores:
        return "overlap", float(scores["foreground_overlap"])
    if "cosine" in scores and (line.get("stage") == "semantic" or "thumb_correlation" not in scores
                               or str(line.get("reason", "")).startswith("looks like")):
        return "semantic", float(scores["cosine"])
    if "thumb_correlation" in scores:
        return "near", float(scores["thumb_correlation"])
    return "exact", 1.0


def write_review(report: dict, out: Path, progress: Progress | None = None, workers: int = 0,
                 pictures: Mapping[str, bytes] | None = None, note: str = "") -> ReviewStats:
    """Write the review page of `report` (a dedup report's dict) to `out`, atomically.

    Every file is read again from the report's root for its thumbnail, unless `pictures`
    has one for its path (a JPEG); one that cannot be read any more gets a placeholder
    saying why. `progress` is told of each file done. With a `note`, the page says it instead
    of how to flip decisions, and has no buttons: what it shows cannot be applied.
    """
    check_report(report)
    root = Path(report["summary"]["root"])
    follow = report["summary"].get("follow_symlinks", False)  # through links only as the run went
    data, tasks = _plan(report)
    if note:
        data["note"], data["summary"] = note, report["summary"].get("text")
    advance = progress("thumbnails", sum(len(t) for t in tasks)) if progress else None
    thumbs: list[str] = []
    known: dict[bytes, int] = {}  # a JPEG's digest -> its place in thumbs: copies are stored once

    def store(jpeg: bytes | None) -> int | None:
        if jpeg is None:
            return None
        key = hashlib.sha1(jpeg).digest()
        if key not in known:
            known[key] = len(thumbs)
            thumbs.append(base64.b64encode(jpeg).decode("ascii"))
        return known[key]

    files = data["files"]
    workers = workers or cpu_count()
    rendered = ordered_map(functools.partial(_render, root, follow, files, pictures or {}), tasks, workers,
                           4 * workers)
    for task, shown in zip(tasks, rendered, strict=True):
        for index, one in zip(task, shown, strict=True):
            files[index]["thumb"] = store(one.thumb)
            files[index]["diff"] = store(one.diff)
            if one.unreadable:
                files[index]["unreadable"] = one.unreadable
        if advance:
            advance(len(task))
    data["thumbs"] = thumbs
    page = render_page(data)
    write_output(out, Kind.PAGE, page)
    shown_files = sum(len(t) for t in tasks) + len(data["errors"])
    return ReviewStats(len(data["groups"]), shown_files, len(page.encode()))


def _plan(report: dict) -> tuple[dict, list[list[int]]]:
    """The page's data without thumbnails, and the files to make thumbnails of, by group."""
    files: list[dict] = []
    members: dict[Any, list[int]] = {}
    rejects, errors = [], []
    for line in report["files"]:
        decision = line["decision"]
        if decision == "skip":
            continue
        index = len(files)
        group = line.get("group")
        # `file` goes as JSON text, saved back as it came: its mtime_ns (~1.8e18) is more
        # than a JavaScript number holds exactly. Only what apply reads of it goes.
        file = line.get("file")
        judged = json.dumps({key: file[key] for key in JUDGED} if file else None)
        if decision == "keep" and group is None:  # shown nowhere; saved with the decisions
            files.append({"path": line["path"], "decision": "keep", "kept_as": None, "file": judged})
            continue
        files.append({key: line.get(key) for key in ("path", "decision", "stage", "reason", "group", "kept_as",
                                                     "scores", "test")} | {"file": judged})
        if decision == "error":
            errors.append(index)
        elif group is not None:
            members.setdefault(group, []).append(index)
        else:
            rejects.append(index)
    groups = []
    for group, indexes in members.items():
        removed = [i for i in indexes if files[i]["decision"] == "remove"]
        kept = [i for i in indexes if files[i]["decision"] == "keep"]
        targets = {files[i]["kept_as"] for i in removed}
        keeper = next((i for i in kept if files[i]["path"] in targets), kept[0] if kept else None)
        if keeper is None or not removed:  # not a group of a keeper and its duplicates: shown on their own
            rejects += removed
            continue
        strength = {i: evidence(files[i]) for i in removed}
        others = sorted(removed, key=lambda i: (strength[i][1], files[i]["path"]))
        others += [i for i in kept if i != keeper]
        kind, risk = strength[others[0]]
        groups.append({"id": group, "keeper": keeper, "members": others, "risk": risk, "evidence": kind})
    groups.sort(key=lambda g: (g["risk"], files[g["keeper"]]["path"]))
    rejects.sort(key=lambda i: (files[i]["stage"] or "", files[i]["path"]))
    counts = {d: sum(1 for line in report["files"] if line["decision"] == d) for d in ("keep", "remove", "error",
                                                                                      "skip")}
    # Saved with the decisions: `refinery apply` goes through links only if this run did.
    data = {"root": report["summary"]["root"], "follow_symlinks": report["summary"].get("follow_symlinks") is True,
            "counts": counts, "page_size": PAGE_SIZE,
            "files": files, "groups": groups, "rejects": rejects, "errors": errors}
    tasks = [[g["keeper"], *g["members"]] for g in groups] + [[i] for i in rejects]
    return data, tasks


def _render(root: Path, follow: bool, files: list[dict], pictures: Mapping[str, bytes],
            task: list[int]) -> list[_Shown]:
    """Thumbnails of a group's files (a file's bytes read once for its copies; `pictures`
    made already), and for each scene frame where it differs from its keeper."""
    images: dict[str, Image.Image | str] = {}
    by_path: dict[str, Image.Image | str] = {}
    for index in task:
        line = files[index]
        judged = json.loads(line["file"]) or {}
        key = judged.get("sha256") or line["path"]
        if key not in images:
            made = pictures.get(line["path"])
            images[key] = Image.open(io.BytesIO(made)) if made else _thumbnail(root, line["path"], follow)
        by_path[line["path"]] = images[key]
    shown = []
    for index in task:
        line = files[index]
        image = by_path[line["path"]]
        if isinstance(image, str):
            shown.append(_Shown(None, image))
            continue
        one = _Shown(_jpeg(image), None)
        keeper = by_path.get(line.get("kept_as") or "")
        if line.get("test") == "scene" and isinstance(keeper, Image.Image):
            one.diff = _jpeg(difference(image, keeper))
        shown.append(one)
    return shown


def _thumbnail(root: Path, path: str, follow: bool) -> Image.Image | str:
    """The picture at root/path (a plain path), its longer side THUMB_SIDE at most; or why it
    is not shown. Reached one step at a time without following a symbolic link, unless the
    run followed them, so neither a report edited by hand nor a folder changed since can
    show a picture from outside root."""
    try:
        image = decode(_read_below(root, path, follow), path, min_long=THUMB_SIDE).image
        image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
    except UnreadableImage as e:  # missing, no longer a picture, ...
        return e.reason
    except UnsafePath:
        return _not_below(root, path)
    except (OSError, ValueError) as e:
        return f"cannot read: {e}"
    return image


def _read_below(root: Path, path: str, follow: bool) -> bytes:
    """The bytes of the regular file root/path, or UnreadableImage with the reason; UnsafePath
    for a symbolic link (or a file that is not a folder) on the way, unless `follow`."""
    *folders, name = path.split("/")
    try:
        folder = open_folder(root, folders, follow=follow)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW),
                         dir_fd=folder)
        finally:
            os.close(folder)
    except FileNotFoundError:
        raise UnreadableImage(path, "no such file") from None
    except PermissionError:
        raise UnreadableImage(path, "permission denied") from None
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:  # the file itself is a link
            raise UnsafePath(path) from None
        raise UnreadableImage(path, f"cannot read: {e.strerror or e}") from None
    try:
        return read_opened(fd, path)
    except OSError as e:
        raise UnreadableImage(path, f"cannot read: {e.strerror or e}") from None


def _not_below(root: Path, path: str) -> str:
    """Why root/path, reached through a symbolic link or a file on the way, is not shown."""
    inside = os.path.realpath(root)
    if os.path.commonpath([inside, os.path.realpath(root / path)]) != inside:
        return "not shown: outside the folder"
    steps = path.split("/")
    if any(os.path.islink(root.joinpath(*steps[:k])) for k in range(1, len(steps) + 1)):
        return "not shown: a symbolic link (the page shows only files that are really in the folder)"
    return "no such file"


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def _level(image: Image.Image) -> np.ndarray:
    """Gray levels, lightly smoothed, over their mean: two frames of one camera under a little
    more or less light compare equal."""
    gray = np.asarray(image.convert("L").filter(ImageFilter.BoxBlur(1)), dtype=np.float32)
    return gray / max(float(gray.mean()), 1.0)


def difference(removed: Image.Image, keeper: Image.Image) -> Image.Image:
    """`removed` dimmed to gray, red where it differs from `keeper` (another frame of the same
    camera; resized to match if it is not the same size), each such region boxed in red."""
    import cv2

    if keeper.size != removed.size:
        keeper = keeper.resize(removed.size, Image.Resampling.BILINEAR)
    mask = (np.abs(_level(removed) - _level(keeper)) > DIFF_THRESHOLD).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))  # JPEG specks out
    gray = np.asarray(removed.convert("L"), dtype=np.float32) * 0.55 + 60
    pixels = np.repeat(gray[:, :, None], 3, axis=2).astype(np.uint8)
    pixels[mask > 0] = (235, 30, 30)
    out = Image.fromarray(pixels)
    draw = ImageDraw.Draw(out)
    count, _, boxes, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    for x, y, w, h, area in boxes[1:count].tolist():
        if area >= DIFF_MIN_PIXELS:
            draw.rectangle([x - 2, y - 2, x + w + 1, y + h + 1], outline=(255, 0, 0))
    return out


def render_page(data: dict) -> str:
    """The page: static markup, its own style and script (allowed by hash, nothing else is),
    and `data` as JSON. Every name is put in the page by the script as text, never as markup."""
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")  # no "</script>" inside
    csp = (f"default-src 'none'; script-src {csp_hash(_SCRIPT)}; style-src {csp_hash(_STYLE)}; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{PAGE_MARK}
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>refinery review</title><style>{_STYLE}</style></head>
<body>
<header><h1>refinery review</h1><p id="summary"></p>
<p class="help" id="help">Flip a decision with the buttons under a picture; <b>Save decisions</b> downloads
decisions.json, which <code>refinery apply decisions.json --move-rejects-to DEST</code> acts on.
Nothing is moved by this page.</p>
<div id="controls">
<fieldset id="stages"><legend>show</legend></fieldset>
<label>file name <input type="search" id="search" placeholder="part of a name" autocomplete="off"></label>
<button type="button" id="save">Save decisions</button><span id="changes"></span>
</div>
<nav class="pager"><button type="button" data-page="-1">&lsaquo; previous</button><span class="where"></span>
<button type="button" data-page="1">next &rsaquo;</button></nav>
</header>
<main id="list"></main>
<nav class="pager"><button type="button" data-page="-1">&lsaquo; previous</button><span class="where"></span>
<button type="button" data-page="1">next &rsaquo;</button></nav>
<script type="application/json" id="data">{payload}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


_STYLE = """body{font-family:system-ui,sans-serif;margin:0 1em 1em;background:#fafafa;color:#222}
header{padding:.4em 0;border-bottom:1px solid #ddd}
h1{font-size:20px;margin:.2em 0}h2{font-size:17px;margin:1.2em 0 .4em}
.help{font-size:13px;color:#555;margin:.2em 0}
#summary{margin:.2em 0;font-size:14px}
#controls{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center;font-size:14px}
fieldset{border:1px solid #ccc;padding:.1em .6em;margin:0}legend{font-size:12px;color:#555}
fieldset label{margin-right:.8em}
#save{font-size:15px;padding:.2em 1em}#changes{color:#a60}
.pager{display:flex;gap:1em;align-items:center;margin:.4em 0;font-size:14px}
.group{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.6em 0;padding:.4em .6em}
.group>h3{font-size:14px;margin:0 0 .4em;font-weight:normal}.risk{font-weight:bold}
.row{display:flex;gap:12px;align-items:flex-start}
.members,.grid{display:flex;flex-wrap:wrap;gap:10px}
.tile{margin:0;width:200px;font-size:12px;overflow-wrap:anywhere;padding:4px;border:2px solid transparent;
border-radius:4px}.tile.scene{width:330px}
.tile.keep{border-color:#3a3}.tile.remove{border-color:#d55}
.tile.keeper{background:#efe;position:sticky;left:0}
.tile.flipped{outline:3px dashed #e90;outline-offset:1px;background:#fff6e0}
.pics{display:flex;gap:4px}.pics img,.missing{display:block;max-width:160px;max-height:160px}
.missing{width:120px;height:90px;background:#eee;color:#777;font-size:11px;padding:4px;box-sizing:border-box}
.path{font-weight:bold;margin-top:3px}.decision{font-weight:bold}.keep .decision{color:#282}
.remove .decision{color:#b22}.reason{color:#333}.scores,.stage,.was{color:#666}.was{color:#a60}
.tile button{font-size:12px;margin:3px 3px 0 0}
table.errors{border-collapse:collapse;font-size:13px}table.errors td{border-bottom:1px solid #ddd;padding:2px 8px}
.empty{color:#777}"""

_SCRIPT = """"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const files = data.files;
const original = files.map(f => [f.decision, f.kept_as]);
const indexOf = new Map(files.map((f, i) => [f.path, i]));
const groupOf = new Map();
for (const g of data.groups) for (const i of [g.keeper, ...g.members]) groupOf.set(i, g);
const flips = [];  // {by, changes: [[file, decision before, kept_as before], ...], active}
let version = 0, saved = 0;  // changes made, and made when decisions were last saved
const STAGES = [["exact", "exact copies"], ["near", "near copies"], ["semantic", "look-alikes"],
                ["quality", "quality rejects"], ["error", "unreadable"]];
const EVIDENCE = {exact: "identical bytes", near: "thumbnail correlation", semantic: "cosine",
                  scene: "things in place (1 - largest move)", overlap: "foreground overlap"};
const name = i => files[i].path.toLowerCase();
const items = [
  ...data.groups.map(g => ({kind: "group", g, stages: new Set(g.members.map(i => files[i].stage)),
                            names: [g.keeper, ...g.members].map(name)})),
  ...data.rejects.map(i => ({kind: "reject", i, stages: new Set([files[i].stage || "quality"]), names: [name(i)]})),
  ...data.errors.map(i => ({kind: "error", i, stages: new Set(["error"]), names: [name(i)]})),
];
const list = document.getElementById("list");
const search = document.getElementById("search");
const fieldset = document.getElementById("stages");
let page = 0;
let shown = items;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "data") Object.assign(node.dataset, v);
    else node[k] = v;
  }
  node.append(...children.filter(c => c !== null && c !== undefined));
  return node;
}

function picture(thumb, alt, cls) {
  if (thumb === null || thumb === undefined) return null;
  return el("img", {src: "data:image/jpeg;base64," + data.thumbs[thumb], alt, class: cls || "", loading: "eager"});
}

function changed(i) {
  return files[i].decision !== original[i][0] || files[i].kept_as !== original[i][1];
}

function keeperOf(g) {
  const all = [g.keeper, ...g.members];
  for (const i of all) {
    const k = indexOf.get(files[i].kept_as);
    if (files[i].decision === "remove" && k !== undefined && all.includes(k)) return k;
  }
  return g.keeper;
}

function removedBy(i) {
  const g = groupOf.get(i);
  if (!g) return 0;
  const path = files[i].path;
  return [g.keeper, ...g.members].filter(j => files[j].decision === "remove" && files[j].kept_as === path).length;
}

function flip(by, changes) {
  flips.push({by, changes: changes.map(([i]) => [i, files[i].decision, files[i].kept_as]), active: true});
  for (const [i, decision, keptAs] of changes) Object.assign(files[i], {decision, kept_as: keptAs});
  version += 1;
  render();
}

function blocker(flip) {  // a later flip still in force that changed one of the same files
  const at = flips.indexOf(flip);
  const touched = new Set(flip.changes.map(c => c[0]));
  return flips.slice(at + 1).find(f => f.active && f.changes.some(c => touched.has(c[0])));
}

function act(kind, i) {
  const f = files[i];
  if (kind === "keep-too" || kind === "keep") return flip(i, [[i, "keep", null]]);
  if (kind === "remove") return flip(i, [[i, "remove", null]]);
  if (kind === "keep-instead") {
    const old = f.kept_as;
    const k = indexOf.get(old);
    const g = groupOf.get(i);
    const changes = [[i, "keep", null], [k, "remove", f.path]];
    for (const j of [g.keeper, ...g.members]) {
      if (j !== i && j !== k && files[j].decision === "remove" && files[j].kept_as === old) {
        changes.push([j, "remove", f.path]);
      }
    }
    return flip(i, changes);
  }
  if (kind === "undo") {
    const last = flips.filter(x => x.active && x.by === i).pop();
    if (!last || blocker(last)) return;
    for (const [j, decision, keptAs] of last.changes) Object.assign(files[j], {decision, kept_as: keptAs});
    last.active = false;
    version += 1;
    render();
  }
}

function button(kind, i, text, refused) {
  const b = el("button", {type: "button", class: kind, data: {act: kind, file: i}}, text);
  if (refused) { b.disabled = true; b.title = refused; }
  return b;
}

function buttons(i, role) {
  if (data.note) return null;
  const f = files[i];
  const out = el("div", {class: "buttons"});
  if (f.decision === "remove" && f.kept_as) {
    const k = indexOf.get(f.kept_as);
    const why = k === undefined ? f.kept_as + " is not in the report" : groupOf.has(i) ? "" : "not in a group";
    out.append(button("keep-too", i, "keep too"), button("keep-instead", i, "keep instead", why));
  } else if (f.decision === "remove") {
    out.append(button("keep", i, "keep"));
  } else if (role !== "error") {
    const n = removedBy(i);
    out.append(button("remove", i, "remove", n ? "the keeper of " + n + " removed file" + (n > 1 ? "s" : "") +
                      ": keep them too, or keep one of them instead, first" : ""));
  }
  const last = flips.filter(x => x.active && x.by === i).pop();
  if (last) {
    const later = blocker(last);
    out.append(button("undo", i, "undo this flip", later ? "undo the later flip of " + files[later.by].path +
                      " first" : ""));
  }
  return out;
}

function scores(s) {
  return Object.entries(s || {}).map(([k, v]) => k.replace(/_/g, " ") + " " + v).join(" \\u00b7 ");
}

function tile(i, role) {
  const f = files[i];
  const pics = el("div", {class: "pics"},
                  picture(f.thumb, f.path) || el("div", {class: "missing"}, "no picture: " + (f.unreadable || "?")));
  if (f.diff !== null && f.diff !== undefined && f.decision === "remove" && f.kept_as === original[i][1]) {
    pics.append(picture(f.diff, "where it differs from " + f.kept_as, "diff"));
  }
  let decision = f.decision;
  if (role === "keeper") decision = "keep: the keeper";
  else if (f.decision === "remove" && f.kept_as) decision = "remove: a duplicate of " + f.kept_as;
  const was = changed(i) ? "flipped; was " + original[i][0] + (original[i][1] ? " (a duplicate of " +
                                                                original[i][1] + ")" : "") : null;
  const stage = f.stage ? f.stage + (f.test ? " \\u00b7 " + f.test + " test" : "") : null;
  const diffNote = pics.children.length > 1 ? "red: where it differs from its keeper" : null;
  const cls = ["tile", f.decision, role, changed(i) ? "flipped" : "", diffNote ? "scene" : ""].join(" ");
  return el("figure", {class: cls, data: {path: f.path}}, pics,
            el("figcaption", {}, el("div", {class: "path"}, f.path), el("div", {class: "decision"}, decision),
               was && el("div", {class: "was"}, was), stage && el("div", {class: "stage"}, stage),
               f.reason ? el("div", {class: "reason"}, f.reason) : null,
               el("div", {class: "scores"}, scores(f.scores)), diffNote && el("div", {class: "stage"}, diffNote),
               buttons(i, role)));
}

function groupCard(g) {
  const k = keeperOf(g);
  const others = [g.keeper, ...g.members].filter(i => i !== k);
  const risk = g.evidence === "exact" ? "identical bytes" : EVIDENCE[g.evidence] + " " + g.risk;
  return el("section", {class: "group", data: {group: g.id}},
            el("h3", {}, "group " + g.id + " \\u00b7 " + (others.length + 1) + " files \\u00b7 weakest evidence: ",
               el("span", {class: "risk"}, risk)),
            el("div", {class: "row"}, tile(k, "keeper"),
               el("div", {class: "members"}, ...others.map(i => tile(i, "member")))));
}

function filter() {
  const stages = new Set([...fieldset.querySelectorAll("input:checked")].map(c => c.value));
  const words = search.value.trim().toLowerCase();
  shown = items.filter(it => [...it.stages].some(s => stages.has(s)) &&
                             (!words || it.names.some(n => n.includes(words))));
  page = 0;
  render();
}

function render() {
  const pages = Math.max(1, Math.ceil(shown.length / data.page_size));
  page = Math.min(page, pages - 1);
  const slice = shown.slice(page * data.page_size, (page + 1) * data.page_size);
  const parts = [];
  let section = null, box = null;
  const titles = {group: "Groups: each keeper beside the files removed as its duplicates, riskiest first",
                  reject: "Quality rejects", error: "Unreadable files"};
  for (const it of slice) {
    if (it.kind !== section) {
      section = it.kind;
      parts.push(el("h2", {}, titles[section]));
      box = it.kind === "group" ? null : el(it.kind === "error" ? "table" : "div",
                                            {class: it.kind === "error" ? "errors" : "grid"});
      if (box) parts.push(box);
    }
    if (it.kind === "group") parts.push(groupCard(it.g));
    else if (it.kind === "reject") box.append(tile(it.i, "reject"));
    else box.append(el("tr", {class: "error", data: {path: files[it.i].path}}, el("td", {class: "path"},
                       files[it.i].path), el("td", {class: "reason"}, files[it.i].reason)));
  }
  if (!slice.length) parts.push(el("p", {class: "empty"}, "Nothing to show with these filters."));
  list.replaceChildren(...parts);
  for (const where of document.querySelectorAll(".pager .where")) {
    where.textContent = "page " + (page + 1) + " of " + pages + " \\u00b7 " + shown.length + " of " + items.length +
      " groups, rejects and errors";
  }
  for (const b of document.querySelectorAll(".pager button")) {
    b.disabled = b.dataset.page === "-1" ? page === 0 : page >= pages - 1;
  }
  const flipped = files.filter((f, i) => changed(i)).length;
  document.getElementById("changes").textContent = flipped ? flipped + " file" + (flipped > 1 ? "s" : "") +
    " flipped" + (version !== saved ? ", not saved yet" : ", saved") : "";
}

function save() {  // decisions.json, version 1 (docs/review.md); each `file` as the report wrote it
  const text = JSON.stringify;
  const lines = files.filter(f => f.decision === "keep" || f.decision === "remove").map(f =>
    '{"path": ' + text(f.path) + ', "decision": ' + text(f.decision) + ', "kept_as": ' + text(f.kept_as) +
    ', "file": ' + f.file + "}");
  const out = '{"refinery_decisions": 1, "root": ' + text(data.root) + ', "follow_symlinks": ' +
    text(data.follow_symlinks) + ', "files": [\\n' + lines.join(",\\n") +
    "\\n]}\\n";
  const url = URL.createObjectURL(new Blob([out], {type: "application/json"}));
  const a = el("a", {href: url, download: "decisions.json"});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  saved = version;
  render();
}

const c = data.counts;
document.getElementById("summary").textContent = data.summary ||
  data.root + ": " + (c.keep + c.remove + c.error + c.skip) + " files, " + c.keep + " kept, " + c.remove +
  " removed, " + c.error + " unreadable, " + c.skip + " skipped; " +
  data.groups.length + " groups";
for (const [value, label] of STAGES) {
  const n = items.filter(it => it.stages.has(value)).length;
  fieldset.append(el("label", {}, el("input", {type: "checkbox", value, checked: true, name: "stage"}),
                     " " + label + " (" + n + ")"));
}
if (data.note) {
  document.getElementById("help").textContent = data.note;
  document.getElementById("save").hidden = true;
}
fieldset.addEventListener("change", filter);
search.addEventListener("input", filter);
document.getElementById("save").addEventListener("click", save);
for (const b of document.querySelectorAll(".pager button")) {
  b.addEventListener("click", () => { page += Number(b.dataset.page); render(); window.scrollTo(0, 0); });
}
list.addEventListener("click", e => {
  const b = e.target.closest("button[data-act]");
  if (b && !b.disabled) act(b.dataset.act, Number(b.dataset.file));
});
window.addEventListener("beforeunload", e => { if (version !== saved) e.preventDefault(); });
render();
// When the first page's pictures are decoded: milliseconds since the file began to load.
Promise.all([...list.querySelectorAll("img")].map(img => img.decode().catch(() => null))).then(() => {
  document.documentElement.dataset.firstPageMs = performance.now().toFixed(0);
});
"""
