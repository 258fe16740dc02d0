"""Every setting has a type and a range or choices; a bad value is a one-line ConfigError."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import run_cli
from refinery.config import Config, apply_overrides, load_config, to_toml, validate
from refinery.errors import ConfigError

# (key, bad value in TOML syntax, words of what is allowed): every range and choice, and a
# wrong type for each kind of key.
BAD = [
    ("model.device", '"gpu"', 'one of "auto", "cpu", "cuda", "coreml"'),
    ("model.device", "3", 'one of "auto", "cpu", "cuda", "coreml"'),
    ("model.batch_size", "0", "between 1 and 1024"),
    ("model.batch_size", "1025", "between 1 and 1024"),
    ("model.batch_size", "8.0", "a whole number (int)"),
    ("model.threads", "-1", "0 or more"),
    ("model.path", "3", "a string"),
    ("quality.max_edge_width", "-0.5", "0 or more"),
    ("quality.max_edge_width", '"sharp"', "a finite number"),
    ("quality.min_light", "-1", "between 0 and 255"),
    ("quality.max_shade", "256", "between 0 and 255"),
    ("quality.min_smear_ratio", "0.5", "1 or more"),
    ("quality.enabled", "2", "true or false"),
    ("quality.min_side", "0", "1 or more"),
    ("near.max_phash", "-1", "between 0 and 64"),
    ("near.max_phash", "65", "between 0 and 64"),
    ("near.max_dhash", "65", "between 0 and 64"),
    ("near.min_correlation", "1.5", "between 0 and 1"),
    ("near.min_correlation", "-0.1", "between 0 and 1"),
    ("near.min_correlation", "nan", "a finite number"),
    ("near.exact_up_to", "-1", "0 or more"),
    ("near.nprobe", "0", "1 or more"),
    ("semantic.threshold", "-1", "between 0.5 and 1.0"),
    ("semantic.threshold", "0.49", "between 0.5 and 1.0"),
    ("semantic.threshold", "1.01", "between 0.5 and 1.0"),
    ("semantic.threshold", "true", "a finite number"),
    ("semantic.chain_guard", "1", "true or false"),
    ("semantic.chain_guard", '"yes"', "true or false"),
    ("semantic.exact_up_to", "-5", "0 or more"),
    ("semantic.nprobe", "0", "1 or more"),
    ("keep.min_sharpness", "-1", "0 or more"),
    ("run.workers", '"two"', "a whole number (int), between 0 and 1024"),
    ("run.workers", "-1", "between 0 and 1024"),
    ("run.workers", "1025", "between 0 and 1024"),
    ("run.workers", "true", "a whole number (int)"),
    ("run.cache", "0", "true or false"),
    ("run.cache_dir", "false", "a string"),
    ("run.scratch_dir", "1", "a string"),
    ("run.follow_symlinks", '"no"', "true or false"),
    ("run.engine", '"dask"', 'one of "local", "ray"'),
    ("train.arch", '"vgg"', 'one of "mobilenetv2", "resnet50", "fastreid-r50-ibn"'),
    ("train.mining", '"semi-hard"', 'one of "batch-hard", "random"'),
    ("train.dim", "0", "1 or more"),
    ("train.hidden", "0", "1 or more"),
    ("train.input_size", "31", "32 or more"),
    ("train.frozen_stages", "-2", "-1 or more"),
    ("train.epochs", "0", "1 or more"),
    ("train.identities_per_batch", "1", "2 or more"),
    ("train.pictures_per_identity", "1", "2 or more"),
    ("train.margin", "0", "more than 0 and at most 2"),
    ("train.margin", "2.5", "more than 0 and at most 2"),
    ("train.learning_rate", "0", "more than 0 and at most 1"),
    ("train.learning_rate", "1.5", "more than 0 and at most 1"),
    ("train.erasing", "1.1", "between 0 and 1"),
    ("train.erasing", "-0.1", "between 0 and 1"),
    ("train.test_share", "0", "more than 0 and less than 1"),
    ("train.test_share", "1", "more than 0 and less than 1"),
    ("train.seed", "-1", "0 or more"),
]

# Values at the edges of what is allowed.
GOOD = [
    ("model.device", '"coreml"'),
    ("model.batch_size", "1"),
    ("model.batch_size", "1024"),
    ("model.threads", "0"),
    ("quality.max_edge_width", "0"),
    ("quality.min_light", "0"),
    ("quality.max_shade", "255"),
    ("quality.min_side", "1"),
    ("quality.enabled", "false"),
    ("near.max_phash", "0"),
    ("near.max_dhash", "64"),
    ("near.min_correlation", "1"),
    ("near.exact_up_to", "0"),
    ("near.nprobe", "1"),
    ("semantic.threshold", "0.5"),
    ("semantic.threshold", "1"),
    ("semantic.chain_guard", "false"),
    ("keep.min_sharpness", "0"),
    ("run.workers", "1024"),
    ("run.engine", '"ray"'),
    ("run.scratch_dir", '"/tmp/refinery"'),
    ("train.arch", '"fastreid-r50-ibn"'),
    ("train.mining", '"random"'),
    ("train.dim", "1"),
    ("train.input_size", "32"),
    ("train.frozen_stages", "-1"),
    ("train.identities_per_batch", "2"),
    ("train.pictures_per_identity", "2"),
    ("train.margin", "2"),
    ("train.learning_rate", "1"),
    ("train.erasing", "0"),
    ("train.test_share", "0.99"),
]


def write_config(tmp_path: Path, key: str, toml: str) -> Path:
    section, name = key.split(".")
    path = tmp_path / "bad.toml"
    path.write_text(f"[{section}]\n{name} = {toml}\n")
    return path


@pytest.mark.parametrize(("key", "toml", "allowed"), BAD)
def test_a_bad_value_from_set_names_key_value_and_what_is_allowed(key: str, toml: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as e:
        apply_overrides(Config(), [f"{key}={toml}"])
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{key} = ") and f"must be {allowed}" in message


@pytest.mark.parametrize(("key", "toml", "allowed"), BAD)
def test_a_bad_value_in_a_config_file_names_the_file_too(tmp_path: Path, key: str, toml: str, allowed: str) -> None:
    path = write_config(tmp_path, key, toml)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key} = ") and f"must be {allowed}" in message


def test_the_message_reads_as_one_line_with_the_reason() -> None:
    with pytest.raises(ConfigError) as e:
        apply_overrides(Config(), ["semantic.threshold=-1"])
    assert str(e.value) == (
        "semantic.threshold = -1: must be between 0.5 and 1.0 (cosine similarity above which two pictures are one)"
    )
    with pytest.raises(ConfigError) as e:
        apply_overrides(Config(), ["run.workers=two"])  # a bare word is a string
    assert str(e.value).startswith('run.workers = "two": must be a whole number (int), between 0 and 1024')


@pytest.mark.parametrize(("key", "toml"), GOOD)
def test_good_values_pass_from_set_and_from_a_file(tmp_path: Path, key: str, toml: str) -> None:
    section, name = key.split(".")
    over = getattr(apply_overrides(Config(), [f"{key}={toml}"]), section)
    read = getattr(load_config(write_config(tmp_path, key, toml)), section)
    assert getattr(over, name) == getattr(read, name)


def test_an_int_goes_where_a_float_does_and_becomes_a_float(tmp_path: Path) -> None:
    cfg = apply_overrides(Config(), ["semantic.threshold=1", "quality.max_edge_width=5"])
    assert cfg.semantic.threshold == 1.0 and type(cfg.semantic.threshold) is float
    assert type(cfg.quality.max_edge_width) is float
    read = load_config(write_config(tmp_path, "keep.min_sharpness", "7"))
    assert read.keep.min_sharpness == 7.0 and type(read.keep.min_sharpness) is float


def test_a_bool_is_no_number_and_a_number_no_bool() -> None:
    for assignment in ("model.batch_size=true", "semantic.threshold=true", "run.cache=1", "run.cache=0"):
        with pytest.raises(ConfigError):
            apply_overrides(Config(), [assignment])
    with pytest.raises(ConfigError, match="model.batch_size = true"):
        validate(dataclasses.replace(Config(), model=dataclasses.replace(Config().model, batch_size=True)))


def test_the_default_config_validates_and_show_prints_every_key(tmp_path: Path) -> None:
    cfg = load_config()
    assert cfg == Config() == validate(Config())
    assert cfg.run.scratch_dir == ""
    text = to_toml(cfg)
    for section in dataclasses.fields(cfg):
        for key in dataclasses.asdict(getattr(cfg, section.name)):
            assert f"\n{key} = " in text, key
    assert 'scratch_dir = ""' in text
    # each key with what it is and what it takes, as a comment above it
    assert "# cosine similarity above which two pictures are one; between 0.5 and 1.0\nthreshold = 0.955" in text
    assert '# which member of a group stays; one of "best", "largest", "oldest", "newest"\npolicy = "best"' in text
    shown = tmp_path / "shown.toml"
    shown.write_text(text)
    assert load_config(shown) == cfg  # what --show prints, comments and all, reads back as the same settings


def test_model_override_is_checked_too() -> None:
    model = Config().model
    assert model.override(model="x.onnx", device="cuda", batch_size=16).batch_size == 16
    with pytest.raises(ConfigError, match=r"model.batch_size = 0: must be between 1 and 1024"):
        model.override(batch_size=0)
    with pytest.raises(ConfigError, match=r'model.device = "gpu"'):
        model.override(device="gpu")
    bad = dataclasses.replace(Config(), model=dataclasses.replace(model, threads=-2))
    with pytest.raises(ConfigError, match=r"model.threads = -2: must be 0 or more"):
        validate(bad)


def test_an_unknown_or_non_setting_name_is_still_refused() -> None:
    for assignment in ("model.override=3", "nowhere.x=1", "semantic.thresold=0.9"):
        with pytest.raises(ConfigError, match="no setting"):
            apply_overrides(Config(), [assignment])


def test_the_cli_refuses_a_bad_value_in_one_line() -> None:
    proc = run_cli("config", "--show", "--set", "semantic.threshold=-1")
    assert proc.returncode != 0 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "semantic.threshold = -1" in lines[0] and "between 0.5 and 1.0" in lines[0]
