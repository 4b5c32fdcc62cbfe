"""Configuration checks before anything trains or is written (issue 21): one line each, no run folder.

`TrainConfig` refuses a bad field when it is made (``--lr inf``, ``--batch-size 1``);
`mmhpn.config.check_config` refuses fields that do not fit together or the machine (PSL
gammas per scale, stripes taller than the feature map, an empty weights file), and the run
cache calls it first. A weights file torch refuses to load weights-only is one line without
torch's advice to load it unsafely.
"""
from __future__ import annotations

import math

import pytest
import torch

from mmhpn.cli import main
from mmhpn.config import check_config, make_config
from mmhpn.errors import ConfigError
from mmhpn.model import FEATURE_STRIDE, build_model, feature_map_rows


@pytest.mark.parametrize("overrides, message", [
    ({"lr": math.inf}, "lr must be a positive number, got inf, which is not finite"),
    ({"lr": math.nan}, "lr must be a positive number, got nan, which is not finite"),
    ({"weight_decay": math.inf}, "weight_decay must be a non-negative number, got inf, which is not finite"),
    ({"batch_size": 1}, "batch_size must be at least 2 (BatchNorm needs two images per batch), got 1"),
    ({"backbone": "vgg16"}, "backbone must be one of ['resnet34', 'resnet50', 'resnet101', 'resnet34-l4w256', "
                            "'resnet34-l4w128'], got 'vgg16'"),
])
def test_bad_fields_are_refused_when_the_configuration_is_made(overrides, message):
    with pytest.raises(ConfigError) as caught:
        make_config("unit", **overrides)
    assert str(caught.value) == message


@pytest.mark.parametrize("overrides, message", [
    ({"loss": "psl", "gammas": (0.3, 0.5)}, "loss 'psl' needs one gamma per scale: the model has 4 scales, "
                                            "got gammas (0.3, 0.5)"),
    ({"loss": "psl", "gammas": (0.3, 0.5, -1.0, 2.0)}, "gammas must be a non-empty sequence of finite non-negative"),
    ({"loss": "psl", "gammas": (0.3, 0.5, math.inf, 2.0)}, "gammas must be a non-empty sequence of finite non-negative"),
    ({"loss": "weighted_softmax", "scale_weights": (1.0, 1.0)}, "needs one scale weight per scale: the model has 4"),
    ({"preset": "mmhpn"}, "a 64x32 input gives a feature map 4 rows high, too short for 8 stripes; "
                          "use inputs at least 128 pixels high"),
    ({"layout": {"conv5_3": (12,)}, "height": 176}, "a 176x32 input gives a feature map 11 rows high, too short "
                                                    "for 12 stripes"),
    ({"layout": {"conv6": (1,)}}, "unknown tap(s) ['conv6'] in layout"),
    ({"layout": {"conv5_3": (4,)}, "half_size_epochs": 1},
     "half_size_epochs=1 trains at half size, and a 32x16 input gives a feature map 2 rows high, too short for 4"),
    ({"init_from": {"profile": "unit", "preset": "mmhpn"}, "pretrained": None},
     "a 64x32 input gives a feature map 4 rows high, too short for 8 stripes"),  # the pretraining run's too
])
def test_fields_that_do_not_fit_together_are_one_line(overrides, message):
    config = make_config("unit", **overrides)  # each field alone is fine
    with pytest.raises(ConfigError) as caught:
        check_config(config)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_feature_map_height_check_matches_the_model():
    model = build_model(3, preset="baseline", backbone="resnet34").eval()
    for height in (60, 64, 100, 130, 176):
        with torch.no_grad():
            rows = model.trunk_below_layer4(torch.zeros(1, 3, height, 32)).shape[2]
        assert feature_map_rows(height) == rows == math.ceil(height / FEATURE_STRIDE), height
    check_config(make_config("unit", layout={"conv5_3": (4,)}, height=64))  # 4 rows hold 4 stripes
    check_config(make_config("smoke"))
    check_config(make_config("demo"))


def test_weights_files_are_checked_before_anything_is_written(tmp_path, tiny_root, capsys):
    empty = tmp_path / "resnet34.pth"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"pretrained weights file .* is empty \(0 bytes: an interrupted download"):
        check_config(make_config("unit", pretrained=str(empty)))
    # Through the command line: one line, no run folder.
    run_dir = tmp_path / "run"
    argv = ["train", "--profile", "unit", "--data-root", str(tiny_root), "--run-dir", str(run_dir), "--no-progress"]
    assert main([*argv, "--pretrained", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is empty (0 bytes" in err and not run_dir.exists()


class Pickled:
    """An object a weights-only load refuses (any class outside torch's allow-list)."""


def test_a_file_torch_refuses_to_load_weights_only_is_one_line_without_the_unsafe_advice(tmp_path, tiny_root,
                                                                                          capsys):
    unsafe = tmp_path / "resnet34.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra": Pickled()}, unsafe)
    with pytest.raises(ConfigError) as caught:
        build_model(3, preset="baseline", backbone="resnet34", pretrained=unsafe)
    message = str(caught.value)
    assert "\n" not in message and "weights_only=False" not in message and "trust" not in message
    assert "holds an object a weights-only load refuses (Unsupported global: GLOBAL " in message
    assert "Pickled" in message and "save a state_dict" in message
    # Through the command line: the model is built before the run folder is written.
    run_dir = tmp_path / "run"
    assert main(["train", "--profile", "unit", "--data-root", str(tiny_root), "--run-dir", str(run_dir),
                 "--pretrained", str(unsafe), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmhpn train: error: could not read pretrained weights") and "\n" not in err
    assert not run_dir.exists()


def test_bad_values_from_the_command_line_write_nothing(tmp_path, tiny_root, capsys):
    run_dir = tmp_path / "run"
    base = ["train", "--profile", "unit", "--data-root", str(tiny_root), "--run-dir", str(run_dir), "--no-progress"]
    for extra, message in ((["--lr", "inf"], "lr must be a positive number, got inf"),
                           (["--batch-size", "1"], "batch_size must be at least 2"),
                           (["--loss", "psl", "--gammas", "0.3,0.5"], "one gamma per scale"),
                           (["--layout", '{"conv5_1": [8]}'], "too short for 8 stripes")):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("mmhpn train: error: ") and message in err and "\n" not in err, err
        assert not run_dir.exists()
