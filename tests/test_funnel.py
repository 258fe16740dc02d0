"""The funnel as a library: one list of stages keeping one contract, and run_dedup doing what
the CLI does (a model's calibrated threshold)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from conftest import draw_dup_folder
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
    # run_dedup applies it, as `refinery dedup` does
    (tmp_path / "photos").mkdir()
    embedder.spec = calibrated
    assert run_dedup(tmp_path / "photos", Config(), embedder).semantic_threshold == 0.97
    assert run_dedup(tmp_path / "photos", own, embedder).semantic_threshold == 0.9
