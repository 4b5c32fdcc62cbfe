"""Run cache: folder naming, finished marker, resume after interruption, refusing foreign/corrupt files."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import mmhpn.runs
from mmhpn.atomic import atomic_torch_save
from mmhpn.checkpoints import (CHECKPOINT_FILE, FINISHED_FILE, METRICS_FILE, MODEL_FILE, is_finished,
                               load_checkpoint)
from mmhpn.config import config_hash, make_config
from mmhpn.errors import CheckpointError
from mmhpn.runs import run_dir_for, train_or_load
from mmhpn.training import train


@pytest.fixture(scope="module")
def config(tiny_root):
    # fp32 + deterministic: the setting in which a resumed run must match exactly.
    return make_config("unit", data_root=str(tiny_root), epochs=2, precision="fp32", deterministic=True)


@pytest.fixture(scope="module")
def finished(config, tmp_path_factory):
    """An uninterrupted 2-epoch run in the default cache folder."""
    return train_or_load(config, runs_dir=tmp_path_factory.mktemp("runs"), progress=False)


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.slow
def test_run_folder_is_named_by_hash_and_complete(finished, config):
    assert finished.path == run_dir_for(config, finished.path.parent)
    assert finished.path.name == f"unit-mmhpn-softmax-{config_hash(config)[:12]}"
    # The resume checkpoint is dropped once finished; no temp file is left behind.
    assert sorted(p.name for p in finished.path.iterdir()) == \
        sorted(["config.json", "history.csv", MODEL_FILE, METRICS_FILE, FINISHED_FILE])
    assert finished.trained_now and list(finished.history["epoch"]) == [1, 2]
    assert 0 <= finished.metrics["rank1"] <= 1 and 0 <= finished.metrics["mAP"] <= 1
    stored = json.loads((finished.path / "config.json").read_text())
    assert stored["hash"] == config_hash(config) and stored["config"]["epochs"] == 2


@pytest.mark.slow
def test_cache_hit_returns_without_training(finished, config, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not be trained again")

    monkeypatch.setattr(mmhpn.runs, "train", no_training)
    again = train_or_load(config, runs_dir=finished.path.parent, progress=False)
    assert not again.trained_now and again.path == finished.path and again.metrics == finished.metrics


@pytest.mark.slow
def test_resumed_run_matches_uninterrupted_run_exactly(finished, config, tmp_path):
    run_dir = tmp_path / "interrupted"
    assert train_or_load(config, run_dir=run_dir, progress=False, stop_after_epochs=1) is None
    # Interrupted after epoch 1: a checkpoint, no marker, no metrics.
    assert (run_dir / CHECKPOINT_FILE).exists() and not is_finished(run_dir)
    assert not (run_dir / METRICS_FILE).exists()
    assert load_checkpoint(run_dir / CHECKPOINT_FILE, config)["epoch"] == 1

    epochs_trained = []
    resumed = train_or_load(config, run_dir=run_dir, progress=False,
                            on_epoch_end=lambda epoch, row: epochs_trained.append(epoch))
    assert epochs_trained == [1]  # only the second epoch (0-based 1) was trained again
    expected, got = _weights(finished.path / MODEL_FILE), _weights(run_dir / MODEL_FILE)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    drop = {"train_seconds"}
    assert {k: v for k, v in resumed.metrics.items() if k not in drop} == \
        {k: v for k, v in finished.metrics.items() if k not in drop}
    columns = ["epoch", "lr", "loss", "stripe_acc"]
    assert resumed.history[columns].equals(finished.history[columns])


@pytest.mark.slow
def test_foreign_checkpoint_is_refused_naming_the_differences(finished, config, tmp_path):
    other = make_config("unit", data_root=config.data_root, epochs=2, precision="fp32", deterministic=True, lr=0.02)
    with pytest.raises(CheckpointError, match=r"another configuration.*lr: 0\.01 \(stored\) vs 0\.02 \(now\)"):
        load_checkpoint(finished.path / MODEL_FILE, other)
    # The same through training: a run folder holding another configuration's checkpoint.
    run_dir = tmp_path / "foreign"
    run_dir.mkdir()
    shutil.copy(finished.path / MODEL_FILE, run_dir / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match="lr: 0.01"):
        train(other, run_dir, progress=False)
    # And a finished run folder asked for under another configuration.
    with pytest.raises(CheckpointError, match="another configuration"):
        train_or_load(other, run_dir=finished.path, progress=False)


def test_corrupt_checkpoint_is_refused_naming_the_file(config, tmp_path):
    run_dir = tmp_path / "corrupt"
    run_dir.mkdir()
    (run_dir / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(CheckpointError, match=f"checkpoint {run_dir / CHECKPOINT_FILE} is corrupt"):
        train(config, run_dir, progress=False)


@pytest.mark.slow
def test_model_file_is_not_a_resumable_checkpoint(finished, config, tmp_path):
    run_dir = tmp_path / "model-only"
    run_dir.mkdir()
    shutil.copy(finished.path / MODEL_FILE, run_dir / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match="cannot be resumed from"):
        train(config, run_dir, progress=False)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT_FILE
    atomic_torch_save({"epoch": 1}, path)

    def killed_while_writing(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]


@pytest.mark.slow
def test_load_model_gives_the_trained_descriptor(finished, config):
    model = finished.load_model()
    assert not model.training
    with torch.no_grad():
        descriptor = model(torch.randn(2, 3, config.height, config.width))
    assert descriptor.shape == (2, 256 * (4 + 3 + 2 + 1))  # the unit profile's scaled-down mmhpn layout


def test_unfinished_folder_is_not_loaded_as_a_run(tmp_path):
    with pytest.raises(CheckpointError, match="not a finished run"):
        mmhpn.runs.load_run(tmp_path)
