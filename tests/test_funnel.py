"""The funnel as a library: one list of stages keeping one contract, and run_dedup doing what
the CLI does (a model's calibrated threshold)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from conftest import draw_dup_folder, draw_picture
from refinery.config import Config, SemanticConfig
from refinery.dedup.decisions import STAGES, StageName
from refinery.dedup.run import STAGES_IN_ORDER, run_dedup, with_model_threshold
from refinery.runner.session import Embedder, default_model_path


def test_one_list_of_stages_in_the_funnels_order() -> None:
    names = [stage.name for stage in STAGES_IN_ORDER]
    removing = [name for name in names if name in STAGES]
    assert removing == list(StageName) == ["quality", "exact", "near", "semantic"]
    # the scene finder runs before the near stage (on what reaches it), the grouping last
    assert names.index("scenes") < names.index("near") and names[-1] == "scenes"
    assert all(callable(stage.run) for stage in STAGES_IN_ORDER)


def test_a_run_counts_under_each_stage_and_the_stage_table_adds_up(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    draw_dup_folder(root)
    result = run_dedup(root, Config(), Embedder(default_model_path(), device="cpu"))
    removed = {f.path: f.stage for f in result.files if f.decision == "remove"}
    assert set(removed.values()) == set(STAGES)  # the folder has a case for every stage
    for before, after in zip(STAGES, STAGES[1:], strict=False):
        assert result.stages[before].kept == result.stages[after].seen, (before, after)
    assert sum(result.stages[name].removed for name in STAGES) == len(removed)


def test_the_library_takes_the_threshold_the_model_carries(tmp_path: Path) -> None:
    embedder = Embedder(default_model_path(), device="cpu")
    calibrated = embedder.spec.replace(semantic_threshold=0.97)
    other = tmp_path / "other.onnx"
    default = SemanticConfig().threshold
    assert with_model_threshold(Config(), other, calibrated).semantic.threshold == 0.97
    own = dataclasses.replace(Config(), semantic=SemanticConfig(threshold=0.9))
    assert with_model_threshold(own, other, calibrated).semantic.threshold == 0.9  # the caller's wins
    assert with_model_threshold(Config(), other, calibrated, threshold_set=True).semantic.threshold == default
    assert with_model_threshold(Config(), other, embedder.spec.replace(semantic_threshold=None)) == Config()
    # run_dedup applies it (a calibrated model's own through run_dedup: test_clip's
    # test_dedup_takes_the_threshold_the_model_carries, the CLI calling it)
    (tmp_path / "photos").mkdir()
    draw_picture(1).save(tmp_path / "photos" / "one.png")
    assert run_dedup(tmp_path / "photos", Config(), embedder).semantic_threshold == default
    assert run_dedup(tmp_path / "photos", own, embedder).semantic_threshold == 0.9


def test_a_byte_copy_whose_twin_goes_later_says_so_first(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    big = draw_picture(7, (640, 480))
    big.save(root / "big.png")
    big.resize((320, 240)).save(root / "small.jpg", quality=90)
    (root / "small_copy.jpg").write_bytes((root / "small.jpg").read_bytes())
    lines = {f.path: f for f in run_dedup(root, Config(), Embedder(default_model_path(), device="cpu")).files}
    twin, copy = lines["small.jpg"], lines["small_copy.jpg"]
    assert lines["big.png"].decision == "keep" and twin.kept_as == copy.kept_as == "big.png"
    assert twin.stage == "near" and copy.stage == "exact"
    assert copy.reason == f"identical bytes to small.jpg (SHA-256), which goes too: {twin.reason}"
    assert copy.reason_code == twin.reason_code == "same_picture"  # why it goes, against its keeper
    assert lines["big.png"].reason == "kept: the most pixels (640x480)"  # why it stays rather than them
