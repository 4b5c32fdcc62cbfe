"""The run cache: one folder per configuration, resumed when unfinished, reused when finished.

`train_or_load(config)` is how the book and the command line get a trained model:

* the configuration is checked (`mmhpn.config.check_config`) and its data read before
  anything is written, so a bad start leaves no run folder behind;
* the run folder is ``<runs_dir>/<name>-<hash12>/`` (`run_dir_for`), where ``hash12`` is the
  first 12 hex digits of `mmhpn.config.config_hash`; an explicit `run_dir` may be given;
* a run is *finished* only when its marker file ``FINISHED`` exists. The marker is written
  last, after ``model.pt``, ``history.csv`` and ``metrics.json``, so a run killed at any
  moment is never mistaken for a finished one; the marker records each file's size and
  sha256, the code versions and the fingerprint of the data (file names, sizes, identities,
  cameras: `mmhpn.data.fingerprint`), checked before a run is reused (`mmhpn.run_integrity`).
  ``data_root`` is not in the hash, so a finished run is served only for the data it was
  trained on;
* one process at a time works on a run folder (a lock beside it); a stale or damaged
  folder (an unreadable checkpoint included) is moved aside, never deleted, and trained
  again; temporary files a killed writer left are removed when a run starts;
* a finished run is returned without training; an unfinished one resumes from its last
  checkpoint (at most one epoch of work is lost); a missing one is trained from scratch;
  a start that fails before its first checkpoint removes the folder it created;
* a fine-tuning run (``init_from``) needs its pretraining run's trunk: `pretraining_run`
  trains or loads that run through this cache, in the per-user folder `pretraining_dir`, before the fine-tuning run's lock is taken
  (never one lock inside another), and `mmhpn.training.train` gets the trunk's state;
* in a read-only runs folder a finished run is loaded without the lock; an unfinished one
  is refused in one line.

The files of a run folder (``config.json``, ``checkpoint.pt`` while training, ``history.csv``,
``model.pt``, ``metrics.json``, ``FINISHED``) are described, written and read in
`mmhpn.checkpoints`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from mmhpn import distributed, run_integrity, trunk_cache
from mmhpn.atomic import orphaned_temporaries
from mmhpn.checkpoints import (CHECKPOINT_FILE, CONFIG_FILE, FINISHED_FILE, MODEL_FILE, is_finished, load_model_file,
                               mark_finished, read_run_folder)
from mmhpn.config import TrainConfig, check_config, config_differences, config_hash, pretraining_config
from mmhpn.data import ReIDDataset
from mmhpn.data.fingerprint import dataset_fingerprint
from mmhpn.errors import CheckpointError, DamagedRunError, StaleRunError
from mmhpn.evaluation.model import model_descriptors
from mmhpn.runtime import resolve_device, resolve_precision
from mmhpn.training import evaluation_options, load_training_data, train


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

    def descriptors(self, model: torch.nn.Module, records, device: str | torch.device = "cpu") -> torch.Tensor:
        """The descriptors of `records` (e.g. a dataset's query) that this run's metrics come from.

        Computed as the run's own evaluation computed them (`mmhpn.training.evaluation_options`:
        its precision resolved on `device`, memory format, flip, batch size), from the frozen
        trunk's layer3 maps kept beside the run (`mmhpn.trunk_cache`) when it trained from
        them: the figures' rankings then score what the tables report, and the frozen trunk
        does not run again. `model`: `load_model`'s; it is converted to channels_last in place
        when the run trained so.
        """
        config, device = self.config, resolve_device(str(device))
        precision = resolve_precision(config.precision, device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        maps = (trunk_cache.maps_source(model, config, device, precision, self.path.parent / trunk_cache.FOLDER)
                if config.feature_cache else None)
        return model_descriptors(model, records, **evaluation_options(config, precision), device=device,
                                 progress=False, layer3_maps=maps)[0]


def run_dir_for(config: TrainConfig, runs_dir: str | os.PathLike = "runs") -> Path:
    """``<runs_dir>/<name>-<hash12>``: where `train_or_load` keeps the run of `config`."""
    return Path(runs_dir) / f"{config.run_name}-{config_hash(config)[:12]}"


def load_run(run_dir: str | os.PathLike, config: TrainConfig | None = None) -> Run:
    """Open a finished run folder; with `config`, refuse a folder trained for another one.

    The data is not looked at here (`train_or_load` compares the recorded fingerprint with
    the data at ``data_root`` before it serves a run).
    """
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


PRETRAINING_CACHE_VARIABLE = "MMHPN_PRETRAINING_CACHE"


def pretraining_dir(runs_dir: str | os.PathLike) -> Path:
    """The folder that keeps pretraining runs: one per user, shared by every clone and runs folder.

    A converged pretraining run costs minutes per replicate and depends on nothing a clone
    changes (its configuration hash and data fingerprint say what it is), so, as torch keeps
    downloaded ImageNet weights in ``~/.cache/torch``, pretraining runs live in
    ``$XDG_CACHE_HOME/mmhpn/pretraining`` (``~/.cache/mmhpn/pretraining`` when XDG_CACHE_HOME
    is unset) and only a machine's first build trains them. ``MMHPN_PRETRAINING_CACHE`` names
    another folder, or, set to ``runs``, keeps them beside the fine-tuning runs in `runs_dir`
    (the test suite does this, so that it never touches the user's cache).
    """
    chosen = os.environ.get(PRETRAINING_CACHE_VARIABLE, "")
    if chosen == "runs":
        return Path(runs_dir)
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mmhpn" / "pretraining"


def pretraining_run(config: TrainConfig, runs_dir: str | os.PathLike, progress: bool = True) -> Run:
    """The `init_from` run of `config`, trained or loaded through this cache in
    `pretraining_dir(runs_dir)`."""
    source = pretraining_config(config.init_from)
    if "device" not in config.init_from:  # where it runs is not part of what it is
        source = dataclasses.replace(source, device=config.device)
    return train_or_load(source, pretraining_dir(runs_dir), progress=progress)


def pretrained_trunk_state(config: TrainConfig, runs_dir: str | os.PathLike, progress: bool = True) -> dict:
    """The state_dict of the `init_from` run's model (`pretraining_run`): what `train` starts the trunk from."""
    return pretraining_run(config, runs_dir, progress=progress).load_model("cpu").state_dict()


def train_or_load(config: TrainConfig, runs_dir: str | os.PathLike = "runs", *,
                  run_dir: str | os.PathLike | None = None, progress: bool = True,
                  dataset: ReIDDataset | None = None, **train_options) -> Run | None:
    """Return the finished run of `config`: from the cache, by resuming, or by training.

    `run_dir` overrides the default folder ``<runs_dir>/<name>-<hash12>``; a fine-tuning
    run's pretraining run is kept in `pretraining_dir` of its parent folder. `train_options` go to
    `mmhpn.training.train`; with its testing hooks (`stop_after_epochs`, a callback raising
    `StopTraining`) training can stop before the last epoch, and then the run stays
    unfinished and this returns None. `dataset`: the data `config` trains on
    (`mmhpn.training.load_training_data`), when the caller has read it already for another
    configuration of the same `mmhpn.data.data_fields`; read here otherwise.
    """
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(config, runs_dir)
    check_config(config)  # before any pretraining trains or any folder is written
    dataset = dataset or load_training_data(config)
    data = dataset_fingerprint(dataset)
    is_main = distributed.is_main_process()
    trunk_state = None
    while True:  # twice at most: a folder set aside below may need the pretrained trunk after all
        if trunk_state is None and _needs_trunk(config, run_dir):
            # The pretraining run under its own lock, before this run's: never one inside the other.
            trunk_state = pretrained_trunk_state(config, run_dir.parent, progress=progress)
        with contextlib.ExitStack() as held:
            if is_main:
                try:
                    held.enter_context(run_integrity.run_lock(run_dir))
                except run_integrity.ReadOnlyRunsFolder as err:
                    return _load_without_lock(config, run_dir, data, err)
                # A stale or damaged folder is moved aside, with one line saying why, before anything reads it.
                run_integrity.set_aside_if_unusable(run_dir, config, finished=is_finished(run_dir), data=data)
            distributed.barrier()
            if is_finished(run_dir):
                return load_run(run_dir, config)
            if trunk_state is None and _needs_trunk(config, run_dir):
                continue  # its checkpoint was set aside: fetch the trunk outside this lock, then start afresh
            return _train_locked(config, run_dir, data, progress, dict(train_options, trunk_state=trunk_state,
                                                                       dataset=dataset))


def _needs_trunk(config: TrainConfig, run_dir: Path) -> bool:
    """Whether training `run_dir` would start from the init_from run's trunk (nothing to resume from)."""
    return config.init_from is not None and not is_finished(run_dir) and not (run_dir / CHECKPOINT_FILE).exists()


def _train_locked(config: TrainConfig, run_dir: Path, data: dict, progress: bool, train_options: dict) -> Run | None:
    is_main = distributed.is_main_process()
    created = not run_dir.exists()
    if is_main:
        for leftover in orphaned_temporaries(run_dir):  # a writer killed mid-write; we hold the lock
            leftover.unlink()
            run_integrity.say(f"removed {leftover.name} from {run_dir}, left by an interrupted write")
    try:
        result = train(config, run_dir, progress=progress, **train_options)
    except BaseException:
        if is_main and created:
            _remove_failed_start(run_dir)
        raise
    if result.stopped_early:
        return None  # interrupted on purpose (testing hook): the run stays unfinished
    if is_main:
        mark_finished(run_dir, config, data)
    distributed.barrier()
    run = load_run(run_dir, config)
    run.trained_now = True
    return run


def _remove_failed_start(run_dir: Path) -> None:
    """Remove the folder a start created and failed in before its first checkpoint: it holds only
    config.json (and temporary files of ours); anything else there is left alone."""
    if not run_dir.is_dir() or (run_dir / CHECKPOINT_FILE).exists():
        return
    ours = {run_dir / CONFIG_FILE, *orphaned_temporaries(run_dir)}
    if set(run_dir.iterdir()) <= ours:
        for path in ours:
            path.unlink(missing_ok=True)
        run_dir.rmdir()


def _load_without_lock(config: TrainConfig, run_dir: Path, data: dict, err: CheckpointError) -> Run:
    """A read-only runs folder: a finished, intact run of the same data is loaded without the
    lock (no process can change the folder); anything else is one line."""
    if not is_finished(run_dir):
        raise CheckpointError(f"{err}; the unfinished run {run_dir.name} cannot train there: give a writable "
                              "runs folder (--runs-dir or --run-dir)")
    try:
        run_integrity.check_finished_run(run_dir, data)
    except (StaleRunError, DamagedRunError) as problem:
        raise CheckpointError(f"{problem}; it cannot be moved aside and trained again: {err}") from problem
    return load_run(run_dir, config)
