"""The files of a run folder: what each holds, how it is written, how it is read back.

A run folder holds

* ``config.json`` - every `TrainConfig` field, the hash and the hashed field names
  (`write_config`; a folder holding another configuration is refused);
* ``checkpoint.pt`` - while training, after every epoch: the model, the optimizer (momentum
  buffers), the gradient scaler, the history so far and every RNG state (`write_checkpoint`,
  `load_resume_state`); removed once the run is finished;
* ``history.csv`` - one row per epoch (`write_history`);
* ``model.pt`` - the weights and the configuration needed to rebuild the model
  (`write_model_file`, `load_model_file`);
* ``metrics.json`` - the final scores and the protocol used (`write_metrics`);
* ``FINISHED`` - the marker, written last (`mark_finished`, `is_finished`), so a run killed at
  any moment is never mistaken for a finished one; it records the code versions, the
  fingerprint of the data the run used and every file's size and sha256 (`read_finished`;
  `mmhpn.run_integrity` checks them).

Every file is written atomically (`mmhpn.atomic`; a full disk is one line and keeps the
previous file). Torch files are read back with
``torch.load(weights_only=True)``; a file made for another configuration is refused with
the fields that differ.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import torch

from mmhpn import distributed, versions
from mmhpn.atomic import atomic_path, atomic_torch_save, atomic_write_json, atomic_write_text
from mmhpn.config import TrainConfig, build_model_for, config_differences, config_hash
from mmhpn.errors import CheckpointError, ConfigError, DamagedRunError, StaleRunError, torch_load_problem
from mmhpn.runtime import rng_state

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
FINISHED_FILE = "FINISHED"
FINISHED_FORMAT = 2  # 1: a text file holding the hash (no versions, no file checksums)
RECORDED_FILES = (CONFIG_FILE, HISTORY_FILE, METRICS_FILE, MODEL_FILE)  # sized and hashed in FINISHED
CHECKPOINT_FORMAT = 1
RESUME_KEYS = ("epoch", "optimizer", "history", "rng")  # what checkpoint.pt has beyond model.pt


# ------------------------------------------------------------------------------------------
# Writing.

def write_config(config: TrainConfig, run_dir: Path) -> None:
    """Write config.json (all fields + hash); refuse a folder that holds another configuration."""
    path = run_dir / CONFIG_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path} is corrupt ({err}); delete the run folder to start again") from err
        if stored.get("hash") != config_hash(config):
            diffs = config_differences(stored.get("config", {}), config)
            raise CheckpointError(f"run folder {run_dir} holds a run of another configuration "
                                  f"({'; '.join(diffs) or 'hash differs'}); use another folder")
        return
    payload = {"hash": config_hash(config), "hashed_fields": sorted(config.hashed_fields()), "config": config.to_dict()}
    atomic_write_json(path, payload, sort_keys=True)


def model_file_state(config: TrainConfig, num_classes: int, model: torch.nn.Module) -> dict:
    """The content of model.pt: the weights and what is needed to rebuild the model."""
    return {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "config_hash": config_hash(config),
            "num_classes": num_classes, "model": model.state_dict()}


def write_model_file(run_dir: Path, config: TrainConfig, num_classes: int, model: torch.nn.Module) -> None:
    atomic_torch_save(model_file_state(config, num_classes, model), run_dir / MODEL_FILE)


def write_checkpoint(run_dir: Path, config: TrainConfig, num_classes: int, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, epochs_done: int,
                     history: list[dict]) -> None:
    """checkpoint.pt: model.pt's content plus what resuming needs (`RESUME_KEYS`), and the RNG states now."""
    state = {
        **model_file_state(config, num_classes, model),
        "epoch": epochs_done,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "history": [dict(row) for row in history],
        "rng": rng_state(),
        "world_size": distributed.world_size(),
    }
    atomic_torch_save(state, run_dir / CHECKPOINT_FILE)


def write_history(history: list[dict], run_dir: Path) -> None:
    with atomic_path(run_dir / HISTORY_FILE) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def write_metrics(metrics: dict, run_dir: Path) -> None:
    atomic_write_json(run_dir / METRICS_FILE, metrics, sort_keys=True)


def recorded_versions(dataset: str) -> dict:
    """The versions of what the code computes that a run of `dataset` depends on."""
    return {"training_semantics": versions.TRAINING_SEMANTICS_VERSION,
            "synthetic_format": versions.synthetic_format_version() if dataset == "synthetic" else None}


def file_record(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def mark_finished(run_dir: Path, config: TrainConfig, data: dict) -> None:
    """Write the FINISHED marker (last, atomically) with the versions, the fingerprint of the
    data the run was trained and scored on (`data`, `mmhpn.data.fingerprint.dataset_fingerprint`)
    and every file's size and sha256, then drop the resume checkpoint (~2x the model, no longer needed)."""
    marker = {"format": FINISHED_FORMAT, "config_hash": config_hash(config),
              "versions": recorded_versions(config.dataset),
              "data": {**data, "data_root": config.data_root},
              "files": {name: file_record(run_dir / name) for name in RECORDED_FILES},
              "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_text(run_dir / FINISHED_FILE, json.dumps(marker, indent=2, sort_keys=True) + "\n")
    checkpoint = run_dir / CHECKPOINT_FILE
    if checkpoint.exists():
        checkpoint.unlink()


def read_finished(run_dir: Path) -> dict:
    """The marker's content; StaleRunError for a format-1 marker, DamagedRunError for an unreadable one."""
    try:
        text = (run_dir / FINISHED_FILE).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedRunError(f"run folder {run_dir} is damaged: its {FINISHED_FILE} marker cannot be read ({err})")
    if re.fullmatch(r"[0-9a-f]{64}\s*", text):  # format 1: just the configuration hash
        raise StaleRunError(f"run folder {run_dir} was finished by an mmhpn that recorded no training-semantics "
                            f"version (now {versions.TRAINING_SEMANTICS_VERSION}): its results may come from "
                            "older code")
    try:
        marker = json.loads(text)
    except ValueError:
        marker = None
    if not isinstance(marker, dict) or marker.get("format") != FINISHED_FORMAT:
        raise DamagedRunError(f"run folder {run_dir} is damaged: its {FINISHED_FILE} marker is not a "
                              f"format-{FINISHED_FORMAT} JSON record")
    return marker



# ------------------------------------------------------------------------------------------
# Reading.

def is_finished(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / FINISHED_FILE).is_file()


def read_run_folder(run_dir: Path) -> tuple[dict, dict, pd.DataFrame]:
    """(config.json's content, metrics.json's content, history) of a finished run folder."""
    try:
        stored = json.loads((run_dir / CONFIG_FILE).read_text())
        metrics = json.loads((run_dir / METRICS_FILE).read_text())
        TrainConfig.from_dict(stored["config"])  # valid here (fields, values)?
        history = pd.read_csv(run_dir / HISTORY_FILE)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"run folder {run_dir} is damaged ({type(err).__name__}: {err}); "
                              "delete it to train again") from err
    return stored, metrics, history


def load_checkpoint(path: str | os.PathLike, config: TrainConfig | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint or model file (weights_only); refuse corrupt or foreign ones.

    An unreadable file, or one that is not an mmhpn checkpoint, raises `DamagedRunError`; with
    `config`, a file whose stored configuration hash differs raises `CheckpointError` listing
    the fields that differ.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - zip, pickle and EOF errors all mean "unreadable"
        raise DamagedRunError(f"checkpoint {path} is corrupt or not a torch file ({torch_load_problem(err)})") from err
    required = ("format", "config", "config_hash", "num_classes", "model")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise DamagedRunError(f"checkpoint {path} is not an mmhpn checkpoint (expected the keys {list(required)})")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {state['format']}, this mmhpn reads format {CHECKPOINT_FORMAT}")
    if config is not None and state["config_hash"] != config_hash(config):
        diffs = config_differences(state["config"], config)
        raise CheckpointError(
            f"checkpoint {path} was made for another configuration ({'; '.join(diffs) or 'hash differs'})"
        )
    return state


def load_resume_state(path: Path, config: TrainConfig, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint.pt of `config` that training can resume from (a model file cannot)."""
    state = load_checkpoint(path, config, map_location=map_location)
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} cannot be resumed from: it lacks {missing} "
                              "(a model file, not a training checkpoint?)")
    return state


def config_from_checkpoint(state: dict) -> TrainConfig:
    try:
        return TrainConfig.from_dict(state["config"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"the configuration stored in the checkpoint is not valid here: {err}") from err


def load_model_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """Rebuild the model stored in a model.pt or checkpoint.pt (eval mode) and its configuration."""
    state = load_checkpoint(path, map_location="cpu")
    config = config_from_checkpoint(state)
    model = build_model_for(config, int(state["num_classes"]), pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit the model its configuration describes: {err}") from err
    return model.to(device).eval(), config
