"""The network: presets, shapes, APS, taps, gradients and configuration errors."""
import socket

import pytest
import torch
import torchvision

from mmhpn import PRESETS, build_model
from mmhpn.errors import ConfigError
from mmhpn.model import StripeHeads

EXPECTED_DIMS = {"baseline": 256, "msm": 768, "mhpm": 3840, "mmhpn": 3840}
EXPECTED_STRIPES = {
    "baseline": [1],
    "msm": [1, 1, 1],
    "mhpm": [8, 4, 2, 1],
    "mmhpn": [8, 4, 2, 1],
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_shapes_train_and_eval(preset):
    torch.manual_seed(0)
    model = build_model(7, preset=preset, backbone="resnet34")
    images = torch.randn(3, 3, 128, 64)
    model.train()
    outputs = model(images)
    assert [o.shape for o in outputs] == [torch.Size([3, p, 7]) for p in EXPECTED_STRIPES[preset]]
    model.eval()
    with torch.no_grad():
        descriptor = model(images)
    assert descriptor.shape == (3, EXPECTED_DIMS[preset])
    assert model.embedding_dim == EXPECTED_DIMS[preset]


def test_mmhpn_layout_puts_scales_at_the_documented_taps():
    # Sec. 3.2.2: the global branch (conv5_3) holds the whole map only; Sec. 3.2.3: the
    # upper branch carries two scales. Scale order 8, 4, 2, 1 = the order of PAPER_GAMMAS.
    assert PRESETS["mmhpn"] == {"conv5_1": (8, 4), "conv5_2": (2,), "conv5_3": (1,)}
    model = build_model(5, backbone="resnet34")
    assert [(s.tap, s.stripes) for s in model.scales] == [
        ("conv5_1", 8), ("conv5_1", 4), ("conv5_2", 2), ("conv5_3", 1)]
    assert model.embedding_dim == 15 * 256 == 3840


@pytest.mark.parametrize("backbone,channels", [("resnet50", 2048), ("resnet34", 512)])
def test_384x128_input_gives_24x8_maps_at_every_tap(backbone, channels):
    model = build_model(3, preset="msm", backbone=backbone).eval()
    with torch.no_grad():
        maps = model.tap_features(torch.randn(1, 3, 384, 128))
    assert sorted(maps) == ["conv5_1", "conv5_2", "conv5_3"]
    for fmap in maps.values():
        assert fmap.shape == (1, channels, 24, 8)


def test_layout_override_and_twelve_stripes():
    model = build_model(4, backbone="resnet34", layout={"conv5_3": (12,)})
    model.train()
    out = model(torch.randn(2, 3, 192, 64))
    assert [o.shape for o in out] == [torch.Size([2, 12, 4])]
    table5 = build_model(4, backbone="resnet34", layout={"conv5_1": 4, "conv5_2": (2,), "conv5_3": 1})
    assert [(s.tap, s.stripes) for s in table5.scales] == [("conv5_1", 4), ("conv5_2", 2), ("conv5_3", 1)]


def test_too_many_stripes_for_the_input_height_is_a_clear_error():
    model = build_model(4, backbone="resnet34", layout={"conv5_3": (12,)})
    with pytest.raises(ConfigError, match=r"128x64 input .* 8 rows .* 12 stripes.* 192 pixels"):
        model(torch.randn(2, 3, 128, 64))


def test_layout_without_later_taps_drops_unused_blocks():
    model = build_model(4, backbone="resnet34", layout={"conv5_1": (2,)})
    assert len(model.layer4) == 1
    with pytest.raises(ConfigError, match="not computed"):
        model.tap_module("conv5_3")
    assert model.tap_module("conv5_1") is model.layer4[0]


def _pool_with(pooling, fmap, logit=None):
    head = StripeHeads(fmap.shape[1], 4, 3, pooling)
    if logit is not None:
        with torch.no_grad():
            head.aps_logit.fill_(logit)
    return head.pool(fmap)


def test_aps_extremes_equal_gap_and_gmp_and_starts_at_half():
    fmap = torch.randn(2, 6, 8, 4)
    assert torch.allclose(_pool_with("aps", fmap, 100.0), _pool_with("avg", fmap), atol=1e-6)
    assert torch.allclose(_pool_with("aps", fmap, -100.0), _pool_with("max", fmap), atol=1e-6)
    mid = _pool_with("aps", fmap)
    assert torch.allclose(mid, 0.5 * _pool_with("avg", fmap) + 0.5 * _pool_with("max", fmap), atol=1e-6)
    # stripes are horizontal bands, top first
    assert torch.allclose(_pool_with("avg", fmap)[:, :, 0], fmap[:, :, 0:2].mean(dim=(2, 3)), atol=1e-6)


def test_aps_weight_is_one_per_scale_and_shared_by_its_stripes():
    model = build_model(4, backbone="resnet34")
    aps = [name for name, _ in model.named_parameters() if "aps_logit" in name]
    assert len(aps) == len(model.scales) == 4
    assert model.aps_weights() == {"conv5_1/8": 0.5, "conv5_1/4": 0.5, "conv5_2/2": 0.5, "conv5_3/1": 0.5}
    assert build_model(4, backbone="resnet34", pooling="max").aps_weights()["conv5_1/8"] == 0.0


def test_gradients_reach_every_head_aps_weight_and_the_backbone():
    from mmhpn.losses import PartSensitiveLoss

    torch.manual_seed(0)
    model = build_model(5, backbone="resnet34").train()
    outputs = model(torch.randn(4, 3, 128, 64))
    PartSensitiveLoss().forward(outputs, torch.tensor([0, 1, 2, 3])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
    for head in model.heads:
        assert head.aps_logit.grad.abs() > 0
        assert head.reduce.weight.grad.abs().sum() > 0
        # every stripe's own classifier weights (one group per stripe) get a gradient
        per_stripe = head.classifier.weight.grad.view(head.stripes, -1).abs().sum(dim=1)
        assert (per_stripe > 0).all()
    assert model.stem[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(preset="pcb"), "unknown preset 'pcb'"),
    (dict(backbone="resnet18"), "unknown backbone 'resnet18'.*three blocks"),
    (dict(pooling="median"), "unknown pooling"),
    (dict(layout={"conv4_3": (2,)}), "unknown tap"),
    (dict(layout={"conv5_3": (0,)}), "positive integers"),
    (dict(layout={}), "non-empty"),
    (dict(layout={"conv5_3": (2, 2)}), "repeats"),
])
def test_bad_configurations_raise_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_model(5, **{"backbone": "resnet34", **kwargs})


def test_bad_num_classes():
    with pytest.raises(ConfigError, match="num_classes"):
        build_model(0, backbone="resnet34")


def test_imagenet_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ConfigError, match="never downloaded.*resnet34-.*pth"):
        build_model(5, backbone="resnet34", pretrained="imagenet")


def test_local_pretrained_state_dict_is_loaded(tmp_path, monkeypatch):
    torch.manual_seed(1)
    reference = torchvision.models.resnet34(weights=None)
    path = tmp_path / "resnet34.pth"
    torch.save(reference.state_dict(), path)
    model = build_model(5, preset="baseline", backbone="resnet34", pretrained=path)
    assert torch.equal(model.stem[0].weight, reference.conv1.weight)
    assert torch.equal(model.layer4[2].conv2.weight, reference.layer4[2].conv2.weight)
    # the same file through the torch hub cache, as "imagenet"
    hub = tmp_path / "hub" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "resnet34-b627a593.pth").write_bytes(path.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    cached = build_model(5, preset="baseline", backbone="resnet34", pretrained="imagenet")
    assert torch.equal(cached.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)


def test_bad_pretrained_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_model(5, backbone="resnet34", pretrained=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), wrong)
    with pytest.raises(ConfigError, match="do not fit|has shape"):
        build_model(5, backbone="resnet34", pretrained=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="could not read"):
        build_model(5, backbone="resnet34", pretrained=garbage)


def _strip(state, prefix_or_suffix):
    return {k: v for k, v in state.items() if not (k.endswith(prefix_or_suffix) or k.startswith(prefix_or_suffix))}


@pytest.mark.parametrize("keep_fc", [True, False])
def test_state_dict_without_num_batches_tracked_is_loaded(tmp_path, keep_fc):
    # Files saved before BatchNorm had the counter (torchvision's resnet50-19c8e357.pth).
    torch.manual_seed(2)
    reference = torchvision.models.resnet34(weights=None)
    state = _strip(reference.state_dict(), "num_batches_tracked")
    assert not any(k.endswith("num_batches_tracked") for k in state)
    if not keep_fc:
        state = _strip(state, "fc.")
    path = tmp_path / "old-resnet34.pth"
    torch.save(state, path)
    model = build_model(5, backbone="resnet34", pretrained=path)
    assert torch.equal(model.layer2[0].conv1.weight, reference.layer2[0].conv1.weight)
    assert torch.equal(model.layer4[0].bn1.running_var, reference.layer4[0].bn1.running_var)


def test_state_dict_missing_a_real_weight_or_misshaped_is_refused(tmp_path):
    state = _strip(torchvision.models.resnet34(weights=None).state_dict(), "num_batches_tracked")
    missing = dict(state)
    del missing["layer3.1.conv2.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="missing.*layer3.1.conv2.weight"):
        build_model(5, backbone="resnet34", pretrained=tmp_path / "missing.pth")
    no_stats = dict(state)
    del no_stats["bn1.running_mean"]
    torch.save(no_stats, tmp_path / "no-stats.pth")
    with pytest.raises(ConfigError, match="missing.*stem.1.running_mean"):
        build_model(5, backbone="resnet34", pretrained=tmp_path / "no-stats.pth")
    misshaped = dict(state)
    misshaped["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(misshaped, tmp_path / "misshaped.pth")
    with pytest.raises(ConfigError, match="layer2.0.conv1.weight has shape"):
        build_model(5, backbone="resnet34", pretrained=tmp_path / "misshaped.pth")
