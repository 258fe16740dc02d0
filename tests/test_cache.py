"""The feature cache: a second run on an unchanged folder reads nothing again; a changed file
is computed anew; decisions are the same either way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import draw_picture
from refinery.config import Config
from refinery.dedup.run import run_dedup
from refinery.io.cache import FeatureCache
from refinery.runner import Embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("default", device="cpu", batch_size=4)


def decisions(result) -> dict:  # noqa: ANN001
    return {f.path: (f.decision, f.stage, f.kept_as, f.scores) for f in result.files}


def run(folder: Path, embedder: Embedder, cache_dir: Path):  # noqa: ANN201
    cache = FeatureCache(cache_dir, "model-hash", folder)
    try:
        return run_dedup(folder, Config(), embedder, cache=cache)
    finally:
        cache.close()


def test_second_run_comes_from_the_cache(dup_folder: tuple[Path, dict], embedder: Embedder, tmp_path: Path) -> None:
    root, expected = dup_folder
    first = run(root, embedder, tmp_path / "cache")
    second = run(root, embedder, tmp_path / "cache")
    readable = sum(1 for s in expected.values() if s != "error")
    assert first.cached == 0 and second.cached == readable
    assert decisions(first) == decisions(second)
    assert run_dedup(root, Config(), embedder).cached == 0  # no cache given: nothing cached


def test_a_changed_file_is_computed_again(dup_folder: tuple[Path, dict], embedder: Embedder, tmp_path: Path) -> None:
    root, _ = dup_folder
    run(root, embedder, tmp_path / "cache")
    draw_picture(99, (320, 240)).save(root / "d.jpg", quality=92)  # new content, same name
    st = (root / "d.jpg").stat()
    os.utime(root / "d.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = run(root, embedder, tmp_path / "cache")
    fresh = run_dedup(root, Config(), embedder)
    assert again.cached == fresh.cached + len(fresh.files) - 2  # all but d.jpg and broken.jpg
    assert decisions(again) == decisions(fresh)


def test_another_folder_does_not_share_entries(
    dup_folder: tuple[Path, dict], embedder: Embedder, tmp_path: Path
) -> None:
    root, _ = dup_folder
    run(root, embedder, tmp_path / "cache")
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.jpg").write_bytes((root / "a.jpg").read_bytes())
    assert run(other, embedder, tmp_path / "cache").cached == 0


def test_features_of_another_version_are_not_reused(
    dup_folder: tuple[Path, dict], embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = dup_folder
    run(root, embedder, tmp_path / "cache")
    import refinery.io.cache

    monkeypatch.setattr(refinery.io.cache, "FEATURES_VERSION", refinery.io.cache.FEATURES_VERSION + 1)
    assert run(root, embedder, tmp_path / "cache").cached == 0
