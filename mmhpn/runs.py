"""The run cache: one folder per configuration, resumed when unfinished, reused when finished.

`train_or_load(config)` is how the book and the command line get a trained model:

* the run folder is ``<runs_dir>/<name>-<hash12>/`` (`run_dir_for`), where ``hash12`` is the
  first 12 hex digits of `mmhpn.config.config_hash`; an explicit `run_dir` may be given;
* a run is *finished* only when its marker file ``FINISHED`` exists. The marker is written
  last, after ``model.pt``, ``history.csv`` and ``metrics.json``, so a run killed at any
  moment is never mistaken for a finished one; the marker records each file's size and
  sha256 and the code versions, checked before a run is reused (`mmhpn.run_integrity`);
* one process at a time works on a run folder (a lock beside it); a stale or damaged
  folder is moved aside, never deleted, and trained again;
* a finished run is returned without training; an unfinished one resumes from its last
  checkpoint (at most one epoch of work is lost); a missing one is trained from scratch.

The files of a run folder (``config.json``, ``checkpoint.pt`` while training, ``history.csv``,
``model.pt``, ``metrics.json``, ``FINISHED``) are described, written and read in
`mmhpn.checkpoints`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

import contextlib

from mmhpn import distributed, run_integrity
from mmhpn.checkpoints import FINISHED_FILE, MODEL_FILE, is_finished, load_model_file, mark_finished, read_run_folder
from mmhpn.config import TrainConfig, config_differences, config_hash
from mmhpn.errors import CheckpointError
from mmhpn.training import train


@dataclass
class Run:
    """A finished training run: its folder, configuration, final metrics and per-epoch history."""

    path: Path
    config: TrainConfig
    metrics: dict
    history: pd.DataFrame = field(repr=False)
    trained_now: bool = False  # False when the run came from the cache

    def load_model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The trained model (eval mode) on `device`."""
        model, _ = load_model_file(self.path / MODEL_FILE, device=device)
        return model


def run_dir_for(config: TrainConfig, runs_dir: str | os.PathLike = "runs") -> Path:
    """``<runs_dir>/<name>-<hash12>``: where `train_or_load` keeps the run of `config`."""
    return Path(runs_dir) / f"{config.run_name}-{config_hash(config)[:12]}"


def load_run(run_dir: str | os.PathLike, config: TrainConfig | None = None) -> Run:
    """Open a finished run folder; with `config`, refuse a folder trained for another one."""
    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        raise CheckpointError(f"{run_dir} is not a finished run (no {FINISHED_FILE} marker); "
                              "train it with `mmhpn train --run-dir` or mmhpn.runs.train_or_load")
    run_integrity.check_finished_run(run_dir)  # a stale version or damaged files: one line
    stored, metrics, history = read_run_folder(run_dir)
    if config is not None and stored.get("hash") != config_hash(config):
        diffs = config_differences(stored["config"], config)
        raise CheckpointError(f"run folder {run_dir} holds a run of another configuration ({'; '.join(diffs)})")
    # The stored config carries this machine's data_root/device only if they were the same;
    # a caller's config (same hash) is the more useful one to hand back.
    return Run(path=run_dir, config=config or TrainConfig.from_dict(stored["config"]), metrics=metrics,
               history=history)


def train_or_load(config: TrainConfig, runs_dir: str | os.PathLike = "runs", *,
                  run_dir: str | os.PathLike | None = None, progress: bool = True,
                  **train_options) -> Run | None:
    """Return the finished run of `config`: from the cache, by resuming, or by training.

    `run_dir` overrides the default folder ``<runs_dir>/<name>-<hash12>``. `train_options`
    go to `mmhpn.training.train`; with its testing hooks (`stop_after_epochs`, a callback
    raising `StopTraining`) training can stop before the last epoch, and then the run stays
    unfinished and this returns None.
    """
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(config, runs_dir)
    # One process per run folder (the others wait, then load); a stale or damaged folder is
    # moved aside, with one line saying why, before anything reads it.
    is_main = distributed.is_main_process()
    with run_integrity.run_lock(run_dir) if is_main else contextlib.nullcontext():
        if is_main:
            run_integrity.set_aside_if_unusable(run_dir, config, finished=is_finished(run_dir))
        distributed.barrier()
        return _train_or_load_locked(config, run_dir, progress, train_options)


def _train_or_load_locked(config: TrainConfig, run_dir: Path, progress: bool, train_options: dict) -> Run | None:
    if is_finished(run_dir):
        return load_run(run_dir, config)
    result = train(config, run_dir, progress=progress, **train_options)
    if result.stopped_early:
        return None  # interrupted on purpose (testing hook): the run stays unfinished
    if distributed.is_main_process():
        mark_finished(run_dir, config)
    distributed.barrier()
    run = load_run(run_dir, config)
    run.trained_now = True
    return run
