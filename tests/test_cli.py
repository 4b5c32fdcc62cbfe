"""`mmhpn train` and `mmhpn evaluate`: help texts, one-line errors, an end-to-end smoke run."""
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
    assert "missing" in err
    err = _one_line_error(capsys, ["train", "--profile", "smoke", "--dataset", "nope", "--data-root",
                                   str(tmp_path), "--run-dir", str(tmp_path / "r2")], "train")
    assert "unknown dataset" in err


@pytest.mark.parametrize("argv", [
    ["train", "--profile", "fast"],
    ["train", "--layout", "{not json"],
    ["train", "--gammas", "a,b"],
    ["train", "--epochs", "two"],
    ["train", "--init-from", "{not json"],
    ["train", "--init-from", "[1, 2]"],
    ["evaluate"],
    ["evaluate", "--run-dir", "a", "--checkpoint", "b"],
])
def test_argument_errors_exit_non_zero(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_evaluate_errors_give_one_line(capsys, tmp_path):
    err = _one_line_error(capsys, ["evaluate", "--run-dir", str(tmp_path / "nothing")], "evaluate")
    assert "not a finished run folder" in err
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"garbage")
    err = _one_line_error(capsys, ["evaluate", "--checkpoint", str(bad), "--data-root", str(tmp_path)], "evaluate")
    assert "corrupt" in err and str(bad) in err


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
    assert main(["book", "--notebooks", "99-nowhere", "--no-build", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mmhpn book: error: unknown notebook(s) ['99-nowhere']")


def test_regime_options_set_the_fields_and_none_clears_init_from(tiny_root, tmp_path, capsys):
    argv = ["train", "--profile", "smoke", "--init-from", "none", "--no-freeze-below-layer4", "--no-feature-cache",
            "--val-fraction", "0.25", "--data-root", str(tiny_root), "--run-dir", str(tmp_path / "run"),
            "--no-progress"]
    assert main(argv) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["init_from"] is None and not config["freeze_below_layer4"] and not config["feature_cache"]
    assert config["val_fraction"] == 0.25 and not list(tmp_path.glob("pretrain-*"))
    assert "synthetic-validation" in (tmp_path / "run" / "metrics.json").read_text()
