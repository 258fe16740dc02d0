"""The run's columns: the feature table, exact groups over it, and the decisions read back
as report lines."""

from __future__ import annotations

import hashlib

import numpy as np

from refinery.dedup.decisions import ERROR, REMOVE, Decisions, StageName
from refinery.dedup.stages.exact import exact_groups
from refinery.dedup.table import FeatureTable
from refinery.features import QUALITY_FIGURES, THUMB, Features
from refinery.reasons import ReasonCode


def record(path: str, content: bytes, **kw: object) -> Features:
    base = dict(
        path=path,
        file_size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        width=640,
        height=480,
        sharpness=123.456789,
        brightness=120.25,
        edge_density=0.0512345,
        dhash=2**64 - 1,
        phash=2**63 + 5,
        thumb=bytes(range(256)),
        compression=3.5,
    )
    base.update(kw)
    return Features(**base)  # type: ignore[arg-type]


def test_a_row_reads_back_as_the_record_it_was_given() -> None:
    # A digest ending in zero bytes: numpy's "S32" would drop them, the table must not.
    content = next(c for k in range(10_000) if hashlib.sha256(c := str(k).encode()).digest()[-1] == 0)
    table = FeatureTable(["a.jpg", "b/c.png"])
    f = record("b/c.png", content, thumb=b"")
    table.put(1, f)
    assert table[1] == f.__class__(**{**f.to_dict(), "thumb": bytes(THUMB * THUMB)})  # no thumb: a flat one
    g = record("a.jpg", b"other")
    table.put(0, g)
    assert table[0] == g and table[0].sha256 == g.sha256
    assert table.scores(0) == {
        "sharpness": round(g.sharpness, 2),
        "brightness": round(g.brightness, 2),
        "edge_density": round(g.edge_density, 5),
        **{name: round(getattr(g, name), 3) for name in QUALITY_FIGURES},
    }
    table.copy_row(1, 0)
    assert table[1] == Features(**{**g.to_dict(), "path": "b/c.png", "thumb": g.thumb})


def test_exact_groups_by_digest() -> None:
    table = FeatureTable([f"{k}.jpg" for k in range(5)])
    for k, content in enumerate([b"a", b"b", b"a", b"c", b"a"]):
        table.put(k, record(f"{k}.jpg", content))
    groups = exact_groups(table.digests(np.arange(5)))
    assert [g.tolist() for g in groups] == [[0, 2, 4]]
    assert [g.tolist() for g in exact_groups(table.digests(np.array([1, 3, 4])))] == []


def test_decisions_follow_keepers_to_the_last_one_and_read_in_path_order() -> None:
    paths = ["z.jpg", "b.jpg", "a.jpg", "c.jpg", "d.jpg"]
    table = FeatureTable(paths)
    for k, path in enumerate(paths[:4]):
        table.put(k, record(path, path.encode()))
    d = Decisions(table)
    d.remove(
        1, StageName.EXACT, "identical bytes (SHA-256)", keeper=2, reason_code=ReasonCode.IDENTICAL_BYTES
    )  # b -> a ...
    d.remove(2, StageName.NEAR, "same picture as z.jpg", keeper=0)  # ... and a -> z later
    d.extra_scores[2] = {"phash_distance": 1}  # what explain measures against the keeper
    d.mark(4, ERROR, "cannot decode", ReasonCode.UNREADABLE)
    d.assign_groups()
    lines = list(d)
    assert [f.path for f in lines] == sorted(paths)
    by_path = {f.path: f for f in lines}
    assert by_path["b.jpg"].kept_as == by_path["a.jpg"].kept_as == "z.jpg"
    assert by_path["b.jpg"].group == by_path["a.jpg"].group == by_path["z.jpg"].group == 1
    assert by_path["c.jpg"].group is None and by_path["c.jpg"].decision == "keep"
    assert by_path["a.jpg"].scores == {**table.scores(2), "phash_distance": 1}
    assert by_path["d.jpg"].decision == "error" and by_path["d.jpg"].scores == {}
    assert d.counts() == {"keep": 2, "remove": 2, "error": 1, "skip": 0}
    assert [by_path[p].reason_code for p in sorted(paths)] == [None, "identical_bytes", None, "unreadable", None]
    assert len(d.rows(REMOVE)) == 2 and d[0].path == "a.jpg"
