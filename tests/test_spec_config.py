"""The model spec round-trips through JSON and ONNX metadata; the config file is strict."""

from __future__ import annotations

from pathlib import Path

import pytest

from refinery.config import load_config
from refinery.errors import ConfigError, ModelError
from refinery.spec import ModelSpec

SPEC = ModelSpec(
    name="m",
    input_name="images",
    input_size=(256, 128),
    output_name="features",
    output_dim=2048,
    normalized=False,
    mean=(1.0, 2.0, 3.0),
    std=(4.0, 5.0, 6.0),
    scale=0.5,
    source="x.pth",
    sha256="ab" * 32,
    opset=18,
)


def test_spec_round_trips_through_metadata_and_json(tmp_path: Path) -> None:
    meta = SPEC.to_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["color"] == "RGB" and meta["input_size"] == "[256, 128]"
    assert ModelSpec.from_metadata(meta) == SPEC
    SPEC.save(tmp_path / "m.json")
    assert ModelSpec.load(tmp_path / "m.json") == SPEC


def test_spec_requires_the_contract_keys() -> None:
    with pytest.raises(ModelError, match="input_size"):
        ModelSpec.from_dict({"name": "m", "input_name": "x", "output_name": "y", "output_dim": 3, "normalized": False})


def test_spec_rejects_unknown_layout() -> None:
    with pytest.raises(ModelError, match="layout"):
        SPEC.replace(layout="NHWC")


def test_identity_normalisation() -> None:
    assert not SPEC.identity_normalisation
    assert SPEC.replace(scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).identity_normalisation


def test_shipped_config_loads_and_flags_override() -> None:
    cfg = load_config()
    assert cfg.model.path == "default" and cfg.model.device == "auto"
    over = cfg.model.override(model="x.onnx", device="cpu", batch_size=None)
    assert (over.path, over.device, over.batch_size) == ("x.onnx", "cpu", cfg.model.batch_size)


def test_config_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[model]\nbatch = 3\n")
    with pytest.raises(ConfigError, match="unknown key.*batch"):
        load_config(path)


def test_a_replaced_setting_says_what_replaced_it(tmp_path: Path) -> None:
    from refinery.config import apply_overrides

    path = tmp_path / "c.toml"
    path.write_text("[scenes]\nmin_overlap = 0.5\n")
    with pytest.raises(ConfigError, match=r"min_overlap is gone: .*scenes\.max_shift"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"scenes\.min_overlap is gone: .*scenes\.max_shift"):
        apply_overrides(load_config(), ["scenes.min_overlap=0.5"])
    assert apply_overrides(load_config(), ["scenes.max_shift=0.1"]).scenes.max_shift == 0.1
