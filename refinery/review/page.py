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
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from refinery.dedup.checks import Judged
from refinery.dedup.splits import split_names, splits_of
from refinery.errors import RefineryError, UnreadableImage, UnsafePath
from refinery.io.fileio import open_folder
from refinery.io.images import LARGE_PREVIEW, REVIEW_THUMB, jpeg_bytes, read_opened, thumbnail
from refinery.io.names import is_plain_path
from refinery.io.outputs import PAGE_MARK, Kind, write_output
from refinery.pages import asset, csp_hash, render
from refinery.parallel import Progress, cpu_count, ordered_map
from refinery.reasons import ReasonCode
from refinery.review.decisions import DecisionsFile
from refinery.review.difference import difference
from refinery.review.report import check_report

PAGE_SIZE = 50  # groups (or quality rejects, or errors) a page shows


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
    large: bytes | None = None  # JPEG: LARGE_PREVIEW's size, when asked for


def evidence(line: dict[str, Any]) -> tuple[str, float]:
    """The kind and strength of the evidence that a removed file duplicates its keeper
    (lower is riskier): identical bytes 1.0; a scene frame 1 less the largest move of a thing
    in it (a share of the thing's size; reports before it gave the foreground's overlap); a
    picture alike in its embedding (reason code looks_like) its cosine; a near copy its
    thumbnail correlation. A report from before reason codes is read by its words."""
    scores = line.get("scores") or {}
    if line.get("test") == "scene" and "largest_move" in scores:
        return "scene", 1.0 - float(scores["largest_move"])
    if line.get("test") == "scene" and "foreground_overlap" in scores:
        return "overlap", float(scores["foreground_overlap"])
    code = line.get("reason_code")
    looks_like = (
        code == ReasonCode.LOOKS_LIKE if code is not None else str(line.get("reason", "")).startswith("looks like")
    )
    if "cosine" in scores and (line.get("stage") == "semantic" or "thumb_correlation" not in scores or looks_like):
        return "semantic", float(scores["cosine"])
    if "thumb_correlation" in scores:
        return "near", float(scores["thumb_correlation"])
    return "exact", 1.0


def write_review(
    report: dict[str, Any],
    out: Path,
    progress: Progress | None = None,
    workers: int = 0,
    pictures: Mapping[str, bytes] | None = None,
    note: str = "",
    resume: list[tuple[str, str, str | None]] | None = None,
    large_previews: bool = False,
) -> ReviewStats:
    """Write the review page of `report` (a dedup report's dict) to `out`, atomically.

    Every file is read again from the report's root for its thumbnail, unless `pictures`
    has one for its path (a JPEG); one that cannot be read any more gets a placeholder
    saying why. `progress` is told of each file done. With a `note`, the page says it instead
    of how to flip decisions, and has no buttons: what it shows cannot be applied. `resume`:
    (path, decision, kept_as) of files a saved decisions file flipped, flipped again on the page.
    `large_previews`: each picture shown also at LARGE_PREVIEW's size, for a click when its
    original is out of reach (a page ~5x as heavy).
    """
    check_report(report)
    root = Path(report["summary"]["root"])
    follow = report["summary"].get("follow_symlinks", False)  # through links only as the run went
    data, tasks = _plan(report)
    # The originals' address (a picture clicked shows its original): the same page wherever it is written
    data["originals"] = root.as_uri().rstrip("/") + "/"
    if resume:
        data["resume"] = [list(flip) for flip in resume]
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
    make = functools.partial(_render, root, follow, files, pictures or {}, large_previews)
    rendered = ordered_map(make, tasks, workers, 4 * workers)
    for task, shown in zip(tasks, rendered, strict=True):
        for index, one in zip(task, shown, strict=True):
            files[index]["thumb"] = store(one.thumb)
            files[index]["diff"] = store(one.diff)
            if one.large is not None:
                files[index]["large"] = store(one.large)
            if one.unreadable:
                files[index]["unreadable"] = one.unreadable
        if advance:
            advance(len(task))
    _reference_pictures(files, store)
    data["thumbs"] = thumbs
    page = render_page(data)
    write_output(out, Kind.PAGE, page)
    shown_files = sum(len(t) for t in tasks) + len(data["errors"])
    return ReviewStats(len(data["groups"]), shown_files, len(page.encode()))


def _plan(report: dict[str, Any]) -> tuple[dict[str, Any], list[list[int]]]:
    """The page's data without thumbnails, and the files to make thumbnails of, by group."""
    files: list[dict[str, Any]] = []
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
        judged = json.dumps(Judged.from_json(file).to_json() if file else None)
        if decision == "keep" and group is None:  # shown nowhere; saved with the decisions
            files.append({"path": line["path"], "decision": "keep", "kept_as": None, "file": judged})
            continue
        files.append(
            {
                key: line.get(key)
                for key in ("path", "decision", "stage", "reason", "group", "kept_as", "scores", "test")
            }
            | {"file": judged}
            | (  # its keeper is in a reference
                {"against": line["against"], "kept_as_sha256": line.get("kept_as_sha256")}
                if line.get("against")
                else {}
            )
        )
        if decision == "error":
            errors.append(index)
        elif group is not None:
            members.setdefault(group, []).append(index)
        else:
            rejects.append(index)
    video = report["summary"].get("video") is True  # refinery frames: in time order, every frame written
    groups = _groups(files, members, rejects, video, split_names(report["summary"]))
    if not video:  # a video's spans stay in time order
        rejects.sort(key=lambda i: (files[i]["stage"] or "", files[i]["path"]))
    counts = {
        d: sum(1 for line in report["files"] if line["decision"] == d) for d in ("keep", "remove", "error", "skip")
    }
    # Saved with the decisions: `refinery apply` goes through links only if this run did.
    data = {
        "root": report["summary"]["root"],
        "follow_symlinks": report["summary"].get("follow_symlinks") is True,
        "counts": counts,
        "page_size": PAGE_SIZE,
        "video": video,
        # what the page's flips are kept under in the browser (across reloads): this report's decisions
        "report_id": _report_id(report),
        "files": files,
        "groups": groups,
        "rejects": rejects,
        "errors": errors,
    }
    tasks = [[g["keeper"], *g["members"]] for g in groups] + [[i] for i in rejects]
    return data, tasks


def resumed(report: dict[str, Any], decisions: DecisionsFile) -> list[tuple[str, str, str | None]]:
    """The flips a decisions file saved from this report's page holds: (path, decision,
    kept_as) of each file it decides otherwise. RefineryError when it is another folder's."""
    if str(decisions.root) != report["summary"]["root"]:
        raise RefineryError(
            f"the decisions are of {decisions.root}, the report of {report['summary']['root']}: give the report "
            "the decisions were saved from"
        )
    lines = {line["path"]: (line["decision"], line.get("kept_as")) for line in report["files"]}
    return [
        (d.path, d.decision, d.kept_as)
        for d in decisions.files
        if d.path in lines and lines[d.path] != (d.decision, d.kept_as)
    ]


def _frame_group(files: list[dict[str, Any]], group: Any, indexes: list[int]) -> dict[str, Any]:
    """A frame written and the spans skipped as its duplicates, in time order."""
    keeper = next(i for i in indexes if files[i]["decision"] == "keep")
    spans = [i for i in indexes if i != keeper]
    weakest = min((evidence(files[i]) for i in spans), key=lambda e: e[1], default=("none", 1.0))
    return {"id": group, "keeper": keeper, "members": spans, "risk": weakest[1], "evidence": weakest[0]}


def _report_id(report: dict[str, Any]) -> str:
    """A short digest of the report's root and every line's path, decision and keeper: a page
    of another report (or of this folder judged again) never takes this one's flips."""
    lines = [(line["path"], line["decision"], line.get("kept_as")) for line in report["files"]]
    text = json.dumps([report["summary"]["root"], lines], ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _groups(
    files: list[dict[str, Any]],
    members: dict[Any, list[int]],
    rejects: list[int],
    video: bool = False,
    splits: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Each group as the page shows it - its keeper, then its removed files from the weakest
    evidence up, then its other kept files - riskiest first; a group without a keeper or
    without a removed file goes to `rejects`, each shown on its own. A video's (`video`):
    every frame written with the spans skipped as its duplicates, in time order."""
    if video:
        return [
            _frame_group(files, group, indexes) for group, indexes in members.items() if indexes
        ]  # report order: by video, then time
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
        if splits and len(across := splits_of([files[i]["path"] for i in [keeper, *others]], splits)) > 1:
            groups[-1]["across"] = across  # dedup --splits: a group across splits is shown first
    groups.sort(key=lambda g: ("across" not in g, g["risk"], files[g["keeper"]]["path"]))
    return groups


def _reference_pictures(files: list[dict[str, Any]], store: Callable[[bytes | None], int | None]) -> None:
    """Beside each file removed as a copy of a reference's picture (dedup --against), that
    picture's thumbnail (`ref`) - read only from inside its reference (the folder, or the folder
    an index was made of), as a report's own pictures are read only from inside its root."""
    from refinery.dedup.reference import pictures_folder

    made: dict[str, int | None] = {}
    for line in files:
        against, kept_as = line.get("against"), line.get("kept_as")
        if not against or not kept_as:
            continue
        if kept_as not in made:
            folder = pictures_folder(Path(against))
            rel = os.path.relpath(kept_as, folder) if folder else ""
            pictured = _thumbnail(folder, rel, False) if folder and is_plain_path(rel) else None
            made[kept_as] = store(_jpeg(pictured[0])) if isinstance(pictured, tuple) else None
        line["ref"] = made[kept_as]


def _render(
    root: Path,
    follow: bool,
    files: list[dict[str, Any]],
    pictures: Mapping[str, bytes],
    large: bool,
    task: list[int],
) -> list[_Shown]:
    """Thumbnails of a group's files (a file's bytes read once for its copies; `pictures`
    made already), with `large` a LARGE_PREVIEW each too, and for each scene frame where it
    differs from its keeper."""
    images: dict[str, tuple[Image.Image, Image.Image | None] | str] = {}
    by_path: dict[str, tuple[Image.Image, Image.Image | None] | str] = {}
    for index in task:
        line = files[index]
        judged = json.loads(line["file"]) or {}
        key = judged.get("sha256") or line["path"]
        if key not in images:
            made = pictures.get(line["path"])
            images[key] = (
                (Image.open(io.BytesIO(made)), None) if made else _thumbnail(root, line["path"], follow, large)
            )
        by_path[line["path"]] = images[key]
    shown = []
    for index in task:
        line = files[index]
        pictured = by_path[line["path"]]
        if isinstance(pictured, str):
            shown.append(_Shown(None, pictured))
            continue
        image, bigger = pictured
        one = _Shown(_jpeg(image), None, large=jpeg_bytes(bigger, LARGE_PREVIEW.quality) if bigger else None)
        keeper = by_path.get(line.get("kept_as") or "")
        if line.get("test") == "scene" and isinstance(keeper, tuple):
            one.diff = _jpeg(difference(image, keeper[0]))
        shown.append(one)
    return shown


def _thumbnail(
    root: Path, path: str, follow: bool, large: bool = False
) -> tuple[Image.Image, Image.Image | None] | str:
    """The picture at root/path (a plain path), its longer side REVIEW_THUMB's at most (and, if
    `large`, LARGE_PREVIEW's too, from the same read); or why it is not shown. Reached one step
    at a time without following a symbolic link, unless the run followed them, so neither a
    report edited by hand nor a folder changed since can show a picture from outside root."""
    try:
        # decoded once: with `large`, at that size, and the small one made from it
        picture = thumbnail(_read_below(root, path, follow), path, LARGE_PREVIEW.side if large else REVIEW_THUMB.side)
    except UnreadableImage as e:  # missing, no longer a picture, ...
        return e.reason
    except UnsafePath:
        return _not_below(root, path)
    except (OSError, ValueError) as e:
        return f"cannot read: {e}"
    if not large:
        return picture, None
    small = picture.copy()
    small.thumbnail((REVIEW_THUMB.side, REVIEW_THUMB.side), Image.Resampling.BILINEAR)
    return small, picture


def _read_below(root: Path, path: str, follow: bool) -> bytes:
    """The bytes of the regular file root/path, or UnreadableImage with the reason; UnsafePath
    for a symbolic link (or a file that is not a folder) on the way, unless `follow`."""
    *folders, name = path.split("/")
    try:
        folder = open_folder(root, folders, follow=follow)
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW), dir_fd=folder
            )
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
    image.save(out, "JPEG", quality=REVIEW_THUMB.quality)
    return out.getvalue()


def render_page(data: dict[str, Any]) -> str:
    """The page: static markup, its own style and script (allowed by hash, nothing else is),
    and `data` as JSON. Every name is put in the page by the script as text, never as markup."""
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")  # no "</script>" inside
    style, script = asset("review.css"), asset("review.js")
    csp = (
        f"default-src 'none'; script-src {csp_hash(script)}; style-src {csp_hash(style)}; "
        # data: the inlined previews; file: the originals, when the page is opened from disk beside them
        "img-src data: file:; base-uri 'none'; form-action 'none'"
    )
    return render("review.html", mark=PAGE_MARK, csp=csp, style=style, payload=payload, script=script)
