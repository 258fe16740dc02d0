"""A reference: pictures judged against, never judged (`refinery dedup NEW --against REF`).

A training set that a test set must not share pictures with, or a clean dataset a new batch
joins. Every reference picture is a keeper that is never removed, moved or written; a NEW
picture that is the same as one of them - the same bytes, a near copy, or alike to the model
- goes, with that reference picture as its keeper.

A reference is a folder (read and embedded by dedup/reference_io.py, through its own feature cache: a second
run reads nothing) or an index made by `refinery index` (read from disk: a million-picture
reference is embedded once). Both hold the same things - each picture's SHA-256, hashes,
thumbnail and unit embedding - made by the same pass, so both give the same decisions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from refinery.dedup.decisions import StageName
from refinery.dedup.evidence import same_frame_words
from refinery.dedup.table import PictureKeys
from refinery.errors import RefineryError
from refinery.reasons import ReasonCode

if TYPE_CHECKING:
    import faiss


@dataclass
class Reference:
    """The pictures of one reference, a row each: where they are, what the picture stages
    compare and their unit embeddings (a FAISS inner-product index, searched exactly)."""

    source: Path  # the folder or index given, resolved
    root: Path  # the folder its pictures are in (an index's: the one it indexed)
    paths: list[str]  # relative to root
    keys: PictureKeys
    vectors: faiss.Index

    def path(self, row: int) -> str:
        """A reference picture as reports name it: its full path (it lies outside the judged folder)."""
        return str(self.root / self.paths[row])

    def __len__(self) -> int:
        return len(self.paths)

    def exact_index(self) -> faiss.Index:
        """The embeddings searched exactly: a large index's HNSW graph is approximate, the
        vectors it stores are not (the same answers as the folder it was made from)."""
        import faiss

        if isinstance(self.vectors, faiss.IndexHNSWFlat):
            return faiss.downcast_index(self.vectors.storage)
        return self.vectors


@dataclass
class Match:
    """A judged picture found to be the same as one reference picture, and by which test."""

    ref: Reference
    ref_row: int
    stage: StageName
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def test(self) -> str:
        """Which test found it: "scene" (a fixed camera's frame, by what stands in front of its
        background) or "picture"."""
        return "scene" if "largest_move" in self.scores else "picture"

    def reason(self) -> tuple[str, ReasonCode]:
        path, s = self.ref.path(self.ref_row), self.scores
        if self.test == "scene":
            return same_frame_words(path, s["largest_move"]) + ", in the reference", ReasonCode.SAME_FRAME
        if self.stage == StageName.EXACT:
            return f"identical bytes to {path} (SHA-256), in the reference", ReasonCode.IDENTICAL_BYTES
        if self.stage == StageName.NEAR:
            return (
                f"same picture as {path} (pHash {s['phash_distance']:g}, dHash {s['dhash_distance']:g} bits, "
                f"thumbnail correlation {s['thumb_correlation']:g}), in the reference",
                ReasonCode.SAME_PICTURE,
            )
        return f"looks like {path} (cosine {s['cosine']:g}), in the reference", ReasonCode.LOOKS_LIKE


def check_references(judged: Path | str, sources: list[Path], outputs: list[tuple[str, Path | None]]) -> None:
    """Before anything is read or written: refuse, in one line, a reference that overlaps the
    judged folder, and an output or destination in a reference (the folder, the index, or
    the folder an index was made of) - nothing is ever written there."""
    guarded = _guarded(sources)
    for source, folder in guarded:
        if folder != source:  # an index: the folder it was made of
            check_apart_at(judged, source, folder)
    for source in sources:
        check_apart_at(judged, Path(source), Path(source))
    for flag, target in outputs:
        if target is None:
            continue
        where = os.path.realpath(target)
        for source, folder in guarded:
            if where == os.path.realpath(folder) or _inside(where, os.path.realpath(folder)):
                raise RefineryError(
                    f"{flag} {target}: inside the reference {source} (--against); refinery never writes "
                    "there: give a place outside it"
                )


def pictures_folder(source: Path) -> Path | None:
    """Where a reference's pictures are: the folder itself, or the folder an index was made of
    (read from its index.json); None when `source` is neither any more."""
    from refinery.retrieval.storage import index_json

    if not source.is_dir():
        return None
    meta = index_json(source)
    if meta is None:
        return None if (source / "index.json").exists() else source
    root = meta.get("root")
    return Path(root) if isinstance(root, str) and os.path.isabs(root) else None


def _guarded(sources: list[Path]) -> list[tuple[Path, Path]]:
    """(source, folder) for each reference: the source itself, and an index's pictures' folder."""
    from refinery.retrieval.storage import index_json

    guarded: list[tuple[Path, Path]] = []
    for source in map(Path, sources):
        meta = index_json(source) if source.is_dir() else None
        guarded += [(source, source)] + ([(source, Path(meta["root"]))] if meta else [])
    return guarded


def check_apart_at(judged: Path | str, source: Path, pictures: Path) -> None:
    """The judged folder and the pictures of the reference `source` (in `pictures`) must not overlap."""
    if not isinstance(judged, Path):
        return
    new, theirs = os.path.realpath(judged), os.path.realpath(pictures)
    if new == theirs or _inside(new, theirs) or _inside(theirs, new):
        how = "is" if new == theirs else "holds" if _inside(new, theirs) else "lies inside"
        raise RefineryError(
            f"--against {source}: its pictures' folder {pictures} {how} the judged folder {judged}; "
            "a reference must be apart from what is judged against it"
        )


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)
