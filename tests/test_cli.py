"""`mmhpn train`, `pretrain` and `evaluate`: help texts made from the configuration, one-line errors, an
end-to-end smoke run."""
from __future__ import annotations

import json

import pytest

from mmhpn.cli import main


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_train_help_lists_every_option(capsys):
    text = _help(capsys, "train")
    for option in ("--profile", "--data-root", "--run-dir", "--preset", "--layout", "--epochs", "--seed",
                   "--dataset", "--backbone", "--pooling", "--loss", "--gammas", "--height", "--width",
                   "--batch-size", "--lr", "--precision", "--device", "--deterministic", "--eval-every",
                   "--init-from", "--freeze-below-layer4", "--feature-cache", "--val-fraction", "torchrun"):
        assert option in text, option


def test_help_lists_every_field_and_every_name_the_code_accepts(capsys, monkeypatch):
    # The options come from TrainConfig's fields; their choices from the modules that accept
    # the names (model, losses, the dataset registry, the synthetic generator's presets).
    import dataclasses

    from mmhpn.config import PROFILES, TrainConfig
    from mmhpn.data.market import DATASETS
    from mmhpn.data.synthetic import SYNTHETIC_PRESETS
    from mmhpn.evaluation.protocol import PROTOCOLS
    from mmhpn.losses import LOSSES, SINGLE_STRIPE_RULES
    from mmhpn.model import BACKBONES, POOLINGS
    from mmhpn.model import PRESETS as MODEL_PRESETS

    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps help at the terminal's width, hyphens included
    train = " ".join(_help(capsys, "train").split())
    for field in dataclasses.fields(TrainConfig):
        assert f"--{field.name.replace('_', '-')} " in train, field.name
        assert " ".join(field.metadata["help"].split()) in train, field.name
    for option, names in (("--backbone", BACKBONES), ("--preset", MODEL_PRESETS), ("--profile", sorted(PROFILES)),
                          ("--synthetic-preset", SYNTHETIC_PRESETS), ("--loss", LOSSES), ("--pooling", POOLINGS),
                          ("--dataset", DATASETS), ("--single-stripe", SINGLE_STRIPE_RULES),
                          ("--eval-protocol", PROTOCOLS)):
        assert f"{option} {{{','.join(names)}}}" in train, option
    assert "resnet34-l4w128" in BACKBONES and "pretrain" in SYNTHETIC_PRESETS  # the two that had drifted
    pretrain = " ".join(_help(capsys, "pretrain").split())
    for option, names in (("--backbone", BACKBONES), ("--synthetic-preset", SYNTHETIC_PRESETS),
                          ("--profile", sorted(PROFILES))):
        assert f"{option} {{{','.join(names)}}}" in pretrain, option


def test_pretrain_options_left_out_keep_the_profiles_pretraining_values():
    from mmhpn.cli import build_parser
    from mmhpn.cli.options import _overrides
    from mmhpn.cli.training_commands import _PRETRAIN_FIELDS
    from mmhpn.config import pretrain_overrides

    args = build_parser().parse_args(["pretrain", "--profile", "smoke", "--epochs", "3"])
    init_from = pretrain_overrides(args.profile, **_overrides(args, _PRETRAIN_FIELDS))
    assert init_from["data_root"] == "data/synthetic-tiny-pretrain" and init_from["epochs"] == 3
    assert init_from["synthetic_preset"] == "tiny-pretrain"


def test_none_clears_an_optional_field_and_is_refused_elsewhere():
    from mmhpn.cli import build_parser
    from mmhpn.cli.options import _overrides

    args = build_parser().parse_args(["train", "--pretrained", "none", "--init-from", "None", "--layout", "none"])
    assert _overrides(args, ["pretrained", "init_from", "layout", "epochs"]) == \
        {"pretrained": None, "init_from": None, "layout": None}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--epochs", "none"])


def test_evaluate_help_lists_every_option(capsys):
    text = _help(capsys, "evaluate")
    for option in ("--run-dir", "--checkpoint", "--data-root", "--dataset", "--flip", "--rerank", "--protocol"):
        assert option in text, option


def _one_line_error(capsys, argv, command):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mmhpn {command}: error: ") and "\n" not in err, err
    return err


def test_bad_train_values_give_one_line(capsys, tmp_path):
    err = _one_line_error(capsys, ["train", "--profile", "smoke", "--epochs", "0", "--run-dir", str(tmp_path)],
                          "train")
    assert "epochs must be a positive integer" in err
    err = _one_line_error(capsys, ["train", "--profile", "smoke", "--dataset", "market1501",
                                   "--data-root", str(tmp_path / "missing"), "--run-dir", str(tmp_path / "r")],
                          "train")
    assert f"dataset folder {tmp_path / 'missing'} does not exist; expected the extracted market1501" in err
    assert not (tmp_path / "r").exists()


def test_a_missing_dataset_folder_is_a_dataset_error(tmp_path):
    # the same error type as the book's (mmhpn.book.ensure_dataset), for the same condition
    from mmhpn.cli.options import _require_dataset_folder
    from mmhpn.errors import DatasetError

    with pytest.raises(DatasetError, match="does not exist"):
        _require_dataset_folder("market1501", str(tmp_path / "missing"))
    _require_dataset_folder("synthetic", str(tmp_path / "missing"))  # generated where it is missing


@pytest.mark.parametrize("argv", [
    ["train", "--profile", "fast"],
    ["train", "--layout", "{not json"],
    ["train", "--gammas", "a,b"],
    ["train", "--epochs", "two"],
    ["train", "--init-from", "{not json"],
    ["train", "--init-from", "[1, 2]"],
    ["train", "--dataset", "nope"],
    ["train", "--backbone", "resnet18"],
    ["pretrain", "--synthetic-preset", "huge"],
    ["evaluate"],
    ["evaluate", "--run-dir", "a", "--checkpoint", "b"],
    ["evaluate", "--run-dir", "a", "--protocol", "cuhk03"],
])
def test_argument_errors_exit_non_zero_in_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mmhpn {argv[0]}: error: ") and "\n" not in err, err


def test_evaluate_errors_give_one_line(capsys, tmp_path):
    err = _one_line_error(capsys, ["evaluate", "--run-dir", str(tmp_path / "nothing")], "evaluate")
    assert "not a finished run folder" in err
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"garbage")
    err = _one_line_error(capsys, ["evaluate", "--checkpoint", str(bad), "--data-root", str(tmp_path)], "evaluate")
    assert "corrupt" in err and str(bad) in err


@pytest.mark.slow
def test_train_then_evaluate_end_to_end(tiny_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    # fp32: re-scoring reproduces the training's final evaluation exactly (under bf16 autocast
    # the last digits depend on the batch size and memory layout of the evaluation).
    argv = ["train", "--profile", "smoke", "--epochs", "1", "--precision", "fp32", "--data-root", str(tiny_root),
            "--run-dir", str(run_dir), "--no-progress"]
    assert main(argv) == 0
    assert "trained" in capsys.readouterr().out
    # The smoke profile fine-tunes from its pretraining run, trained first beside the run folder.
    assert len(list(tmp_path.glob("pretrain-smoke-*/metrics.json"))) == 1
    assert json.loads((run_dir / "config.json").read_text())["config"]["init_from"]["profile"] == "smoke"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["rank1"] <= 1 and 0 <= metrics["mAP"] <= 1 and metrics["protocol"] == "toolbox"

    assert main(argv) == 0  # the finished run is returned, not trained again
    assert "finished earlier" in capsys.readouterr().out

    out_file = tmp_path / "scores.json"
    assert main(["evaluate", "--run-dir", str(run_dir), "--no-progress", "--output", str(out_file)]) == 0
    scores = json.loads(out_file.read_text())
    assert scores["rank1"] == pytest.approx(metrics["rank1"]) and scores["mAP"] == pytest.approx(metrics["mAP"])
    assert json.loads(capsys.readouterr().out) == scores

    assert main(["evaluate", "--checkpoint", str(run_dir / "model.pt"), "--data-root", str(tiny_root),
                 "--protocol", "market1501-official", "--no-progress"]) == 0
    official = json.loads(capsys.readouterr().out)
    assert official["protocol"] == "market1501-official" and 0 <= official["mAP"] <= 1

    # The same folder asked to train another configuration is refused in one line.
    err = _one_line_error(capsys, argv[:-1] + ["--lr", "0.5"], "train")
    assert "another configuration" in err and "lr" in err


def test_book_command_is_part_of_the_one_command_line(tmp_path, capsys):
    from mmhpn.cli import main

    with pytest.raises(SystemExit) as help_exit:
        main(["book", "--help"])
    assert help_exit.value.code == 0 and "mmhpn book --archive" in capsys.readouterr().out
    (tmp_path / "_toc.yml").write_text("root: book/intro\nchapters:\n  - file: book/executed/01-data\n")
    assert main(["book", "--only", "99-nowhere", "--no-build", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mmhpn book: error: unknown notebook(s) ['99-nowhere']")


@pytest.mark.slow
def test_regime_options_set_the_fields_and_none_clears_init_from(tiny_root, tmp_path, capsys):
    argv = ["train", "--profile", "smoke", "--init-from", "none", "--no-freeze-below-layer4", "--no-feature-cache",
            "--val-fraction", "0.25", "--data-root", str(tiny_root), "--run-dir", str(tmp_path / "run"),
            "--no-progress"]
    assert main(argv) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["init_from"] is None and not config["freeze_below_layer4"] and not config["feature_cache"]
    assert config["val_fraction"] == 0.25 and not list(tmp_path.glob("pretrain-*"))
    assert "synthetic-validation" in (tmp_path / "run" / "metrics.json").read_text()
