"""The fastreid checkpoint loader: every tensor placed, old and new layouts, loud failures,
and the network checked against upstream fastreid itself where it is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from refinery.errors import CheckpointMismatch, CheckpointNotFound  # noqa: E402
from refinery.export.fastreid import load_fastreid, random_state  # noqa: E402


def test_legacy_checkpoint_loads_every_tensor(fastreid_checkpoints: dict[str, Path]) -> None:
    model, report = load_fastreid(fastreid_checkpoints["legacy"])
    saved = torch.load(fastreid_checkpoints["legacy"], weights_only=True)
    assert set(saved) == {"model", "optimizer", "scheduler", "iteration"}  # fastreid's format
    assert report.layout == "legacy" and report.stem_pool == "pad"
    assert report.training_only == ["heads.classifier.weight"]
    assert report.renamed["heads.bnneck.weight"] == "heads.bottleneck.0.weight"
    assert report.defaults == {}  # learned GeM p and pixel mean/std came from the file
    state = saved["model"]
    assert report.loaded + len(report.training_only) == len(state)
    assert torch.equal(model.heads.pool_layer.p, state["heads.pool_layer.p"])
    assert torch.equal(model.heads.bottleneck[0].running_var, state["heads.bnneck.running_var"])
    assert torch.equal(model.pixel_mean, state["pixel_mean"])
    assert model.backbone.maxpool.padding == 1 and not model.backbone.maxpool.ceil_mode


def test_current_checkpoint_loads_with_fastreid_defaults(fastreid_checkpoints: dict[str, Path]) -> None:
    model, report = load_fastreid(fastreid_checkpoints["current"])
    assert report.layout == "current" and report.stem_pool == "ceil"
    assert report.training_only == ["heads.weight"]
    assert set(report.defaults) == {"heads.pool_layer.p", "pixel_mean", "pixel_std"}
    assert model.heads.pool_layer.p.item() == 3.0
    assert model.backbone.maxpool.ceil_mode


def test_output_is_the_bn_neck_feature_not_normalised(fastreid_checkpoints: dict[str, Path]) -> None:
    model, _ = load_fastreid(fastreid_checkpoints["legacy"])
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        out = model(x)
        neck_in = model.heads.pool_layer(model.backbone((x - model.pixel_mean) / model.pixel_std))
        expected = model.heads.bottleneck(neck_in)[..., 0, 0]
    assert out.shape == (2, 2048)
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out.norm(dim=1), torch.ones(2))


def plain_resnet_state() -> dict[str, torch.Tensor]:
    """A ResNet-50 without IBN in fastreid's key names: bn1 is one BatchNorm, not IN + BN."""
    state = {}
    for key, t in random_state().items():
        if ".bn1.IN." in key or ".bn1.BN." in key:
            merged = key.replace(".IN.", ".").replace(".BN.", ".")
            if merged not in state and t.dim() == 1 and not key.endswith("num_batches_tracked"):
                state[merged] = torch.cat([t, t])
        else:
            state[key] = t
    return state


def test_resnet_without_ibn_fails_with_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "r50.pth"
    torch.save({"model": plain_resnet_state()}, path)
    with pytest.raises(CheckpointMismatch) as info:
        load_fastreid(path)
    msg = str(info.value)
    assert "missing keys" in msg and "backbone.layer1.0.bn1.IN.weight" in msg
    assert "unexpected keys" in msg and "backbone.layer1.0.bn1.weight" in msg
    assert "without IBN" in msg


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    state = random_state()
    state["heads.bottleneck.0.weight"] = torch.ones(1024)
    torch.save({"model": state}, tmp_path / "c.pth")
    with pytest.raises(CheckpointMismatch, match=r"wrong shapes.*heads\.bottleneck\.0\.weight"):
        load_fastreid(tmp_path / "c.pth")


def test_missing_checkpoint_says_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFound, match="vehicleid_bot_R50-ibn.pth") as info:
        load_fastreid(tmp_path / "vehicleid_bot_R50-ibn.pth")
    assert "--arch" in str(info.value)


def test_garbage_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "x.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointMismatch, match="cannot read"):
        load_fastreid(tmp_path / "x.pth")


# --- the oracle: upstream fastreid (PyPI `fastreid`, installed by .ci/run) ------------------


def fastreid_reference(layout: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """fastreid's own Baseline for configs/VehicleID/bagtricks_R50-ibn.yml, with `state` loaded.

    The old model-zoo layout is rebuilt from fastreid's own pieces the way fastreid v0.1.1
    ran it: padded stem max-pool, learned GeM (GeneralizedMeanPoolingP), bnneck weights.
    """
    pytest.importorskip("fastreid")
    from fastreid.config import get_cfg
    from fastreid.layers.pooling import GeneralizedMeanPoolingP
    from fastreid.modeling.meta_arch import build_model

    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "Baseline"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.BACKBONE.DEPTH = "50x"
    cfg.MODEL.BACKBONE.WITH_IBN = True
    cfg.MODEL.BACKBONE.LAST_STRIDE = 1
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NAME = "EmbeddingHead"
    cfg.MODEL.HEADS.POOL_LAYER = "GeneralizedMeanPooling"
    cfg.MODEL.HEADS.WITH_BNNECK = True
    cfg.MODEL.HEADS.NUM_CLASSES = 16
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    if layout == "legacy":
        model.backbone.maxpool = torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        model.heads.pool_layer = GeneralizedMeanPoolingP()
        state = {
            k.replace("heads.bnneck.", "heads.bottleneck.0.").replace("heads.classifier.weight", "heads.weight"): v
            for k, v in state.items()
        }
        model.pixel_mean.copy_(state.pop("pixel_mean"))
        model.pixel_std.copy_(state.pop("pixel_std"))
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model.eval()


@pytest.mark.parametrize("layout", ["legacy", "current"])
def test_same_feature_as_upstream_fastreid(layout: str, fastreid_checkpoints: dict[str, Path]) -> None:
    path = fastreid_checkpoints[layout]
    reference = fastreid_reference(layout, torch.load(path, weights_only=True)["model"])
    ours, _ = load_fastreid(path)
    x = torch.rand(4, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        expected = reference(x.clone())  # fastreid normalises its input in place
        got = ours(x)
    rel = ((got - expected).abs().max() / expected.abs().max()).item()
    centred = torch.nn.functional.cosine_similarity(got - expected.mean(0), expected - expected.mean(0))
    assert rel < 1e-5
    assert centred.min().item() > 0.99999
