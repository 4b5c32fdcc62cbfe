"""Keeping the run cache honest under real use: one process per run folder, checked finishes.

`mmhpn.runs.train_or_load` uses these:

* `run_lock(run_dir)` - an OS file lock on ``<run_dir>.lock`` (beside the folder, so moving
  the folder aside does not move the lock) held for the whole check-train-finish sequence.
  A second process on the same configuration waits, then finds the run finished and loads
  it. The lock is `filelock`'s ``fcntl``/``msvcrt`` lock: the operating system drops it when
  its process dies, so a run killed with ``kill -9`` never blocks the next one. In a
  read-only runs folder the lock cannot be created (`ReadOnlyRunsFolder`): a finished run
  is then loaded without it (nothing can change the folder), an unfinished one is refused.
* the ``FINISHED`` marker that `mmhpn.checkpoints.mark_finished` writes: the configuration
  hash, the versions of what the code computes (`mmhpn.versions`), the fingerprint of the
  data (`mmhpn.data.fingerprint`) and the size and sha256 of every file of the run
  (``config.json``, ``history.csv``, ``metrics.json``, ``model.pt``), recorded when the run
  finished;
* `check_finished_run(run_dir, data)` - raises `StaleRunError` when the marker records another
  training-semantics or synthetic-format version (or none: a marker written before versions
  were recorded), or, given the fingerprint of the data at ``data_root`` now, another
  fingerprint (or none: a marker written before fingerprints were recorded, which cannot
  show what it was trained on - such runs are trained again once), and `DamagedRunError`
  when the marker is unreadable or a recorded file is missing, has another size (truncated)
  or another sha256; `check_unfinished_run` raises `DamagedRunError` for a resume checkpoint
  that cannot be read. `train_or_load` then moves the folder aside to
  ``<run_dir>.stale-<time>`` / ``<run_dir>.damaged-<time>`` (`set_aside`; nothing is
  deleted), says so in one line, and trains again.

Why both a version check and the hash: the versions are part of the configuration hash, so
a default run folder (``<name>-<hash12>``) of an older version is simply never looked at; a
folder named explicitly (``mmhpn train --run-dir``) has no hash in its name, hence the check.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

from mmhpn import versions
from mmhpn.atomic import NOT_PERMITTED
from mmhpn.checkpoints import CHECKPOINT_FILE, CONFIG_FILE, file_record, load_checkpoint, read_finished, recorded_versions
from mmhpn.config import TrainConfig, config_differences, config_hash
from mmhpn.data.fingerprint import SPLITS
from mmhpn.errors import CheckpointError, DamagedRunError, StaleRunError


def say(line: str) -> None:
    print(f"mmhpn.runs: {line}", flush=True)


# ------------------------------------------------------------------------------------------
# The lock.

def lock_path(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(f"{run_dir.name}.lock")


class ReadOnlyRunsFolder(CheckpointError):
    """The lock beside a run folder cannot be created: its folder is not writable (verified by the errno)."""


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, announce: Callable[[str], None] = say) -> Iterator[Path]:
    """Hold ``<run_dir>.lock``; if another process holds it, say so once and wait for it.

    Raises `ReadOnlyRunsFolder` when the lock file cannot be created for want of permission
    (a read-only folder or file system), before anything is held.
    """
    path = lock_path(run_dir)
    lock = FileLock(str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            announce(f"waiting for another process working on {run_dir} (lock {path})")
            lock.acquire()
    except OSError as err:
        if err.errno not in NOT_PERMITTED:
            raise
        raise ReadOnlyRunsFolder(f"cannot create the lock {path} ({err.strerror}): the runs folder "
                                 f"{path.parent} is read-only") from err
    try:
        yield path
    finally:
        lock.release()


# ------------------------------------------------------------------------------------------
# The finished marker.

def check_finished_run(run_dir: str | os.PathLike, data: dict | None = None) -> dict:
    """Raise StaleRunError / DamagedRunError (one line naming the folder) unless the finished run is intact.

    With `data` (the `mmhpn.data.fingerprint.dataset_fingerprint` of the data at the
    configuration's ``data_root`` now), also StaleRunError when the run was trained on other
    data, or recorded no fingerprint (finished by an mmhpn before fingerprints: it cannot
    say what it was trained on).
    """
    run_dir = Path(run_dir)
    marker = read_finished(run_dir)
    recorded = marker.get("versions", {})
    now = recorded_versions("synthetic" if recorded.get("synthetic_format") is not None else "")
    for key, label in (("training_semantics", "training-semantics"), ("synthetic_format", "synthetic data format")):
        if recorded.get(key) != now[key]:
            raise StaleRunError(f"run folder {run_dir} was trained under {label} version {recorded.get(key)}, "
                                f"this mmhpn is at version {now[key]}: its results come from older code or data")
    for name, expected in sorted(marker.get("files", {}).items()):
        path = run_dir / name
        if not path.is_file():
            raise DamagedRunError(f"run folder {run_dir} is damaged: {name} is missing")
        size = path.stat().st_size
        if size != expected["size"]:
            raise DamagedRunError(f"run folder {run_dir} is damaged: {name} has {size} bytes, "
                                  f"{expected['size']} were recorded when the run finished (truncated?)")
        if file_record(path)["sha256"] != expected["sha256"]:
            raise DamagedRunError(f"run folder {run_dir} is damaged: {name} differs from the file recorded "
                                  "when the run finished (sha256 mismatch)")
    if data is not None:
        check_same_data(run_dir, marker.get("data"), data)
    return marker


def check_same_data(run_dir: Path, recorded: dict | None, now: dict) -> None:
    """StaleRunError unless the marker's recorded data fingerprint is `now`'s."""
    if not isinstance(recorded, dict) or "sha256" not in recorded:
        raise StaleRunError(f"run folder {run_dir} was finished by an mmhpn that recorded no fingerprint of its "
                            "data: it cannot show it was trained on the data its configuration now names")
    if recorded["sha256"] != now["sha256"]:
        def counts(images: dict) -> str:
            return "/".join(str(images.get(split, "?")) for split in SPLITS)

        raise StaleRunError(f"run folder {run_dir} was trained on other data than its data folder holds now "
                            f"({'/'.join(SPLITS)} images: {counts(recorded.get('images', {}))} recorded from "
                            f"{recorded.get('data_root')}, {counts(now['images'])} now)")


def check_unfinished_run(run_dir: Path, config: TrainConfig) -> None:
    """StaleRunError for an unfinished folder of the same settings hashed by older code (an explicit
    run_dir); DamagedRunError for an unreadable resume checkpoint (a crash mid-write on a file
    system without atomic renames, a disk error)."""
    try:
        stored = json.loads((run_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        stored = None  # no folder yet, or a corrupt config.json: training refuses the latter itself
    if isinstance(stored, dict) and stored.get("hash") != config_hash(config) \
            and not config_differences(stored.get("config", {}), config):
        raise StaleRunError(f"run folder {run_dir} holds an unfinished run of the same settings made by an older "
                            f"mmhpn (its hash predates training-semantics version {versions.TRAINING_SEMANTICS_VERSION})")
    if (run_dir / CHECKPOINT_FILE).is_file():
        try:
            load_checkpoint(run_dir / CHECKPOINT_FILE)  # read in full: a truncated zip fails here, not mid-resume
        except DamagedRunError as err:
            raise DamagedRunError(f"run folder {run_dir} is damaged: {err}") from err


def set_aside(run_dir: Path, kind: str) -> Path:
    """Rename `run_dir` to ``<run_dir>.<kind>-<UTC time>`` (never overwriting) and return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = run_dir.with_name(f"{run_dir.name}.{kind}-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = run_dir.with_name(f"{run_dir.name}.{kind}-{stamp}-{counter}")
    os.rename(run_dir, target)
    return target


def set_aside_if_unusable(run_dir: Path, config: TrainConfig, finished: bool, data: dict) -> Path | None:
    """Move a stale or damaged `run_dir` aside (one line saying why); return where it went, or None.

    `data`: the fingerprint of the data at ``config.data_root`` now (see `check_finished_run`).
    """
    try:
        if finished:
            check_finished_run(run_dir, data)
        else:
            check_unfinished_run(run_dir, config)
    except (StaleRunError, DamagedRunError) as err:
        kind = "damaged" if isinstance(err, DamagedRunError) else "stale"
        target = set_aside(run_dir, kind)
        say(f"{err}; moved it to {target.name} and training again")
        return target
    return None
