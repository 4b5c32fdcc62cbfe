"""Keeping the run cache honest under real use: one process per run folder, checked finishes.

`mmhpn.runs.train_or_load` uses these:

* `run_lock(run_dir)` - an OS file lock on ``<run_dir>.lock`` (beside the folder, so moving
  the folder aside does not move the lock) held for the whole check-train-finish sequence.
  A second process on the same configuration waits, then finds the run finished and loads
  it. The lock is `filelock`'s ``fcntl``/``msvcrt`` lock: the operating system drops it when
  its process dies, so a run killed with ``kill -9`` never blocks the next one.
* the ``FINISHED`` marker that `mmhpn.checkpoints.mark_finished` writes: the configuration
  hash, the versions of what the code computes (`mmhpn.versions`) and the size and sha256
  of every file of the run (``config.json``, ``history.csv``, ``metrics.json``,
  ``model.pt``), recorded when the run finished;
* `check_finished_run(run_dir)` - raises `StaleRunError` when the marker records another
  training-semantics or synthetic-format version (or none: a marker written before versions
  were recorded), and `DamagedRunError` when the marker is unreadable or a recorded file is
  missing, has another size (truncated) or another sha256. `train_or_load` then moves the folder aside to
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
from mmhpn.checkpoints import CONFIG_FILE, file_record, read_finished, recorded_versions
from mmhpn.config import TrainConfig, config_differences, config_hash
from mmhpn.errors import DamagedRunError, StaleRunError


def say(line: str) -> None:
    print(f"mmhpn.runs: {line}", flush=True)


# ------------------------------------------------------------------------------------------
# The lock.

def lock_path(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(f"{run_dir.name}.lock")


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, announce: Callable[[str], None] = say) -> Iterator[Path]:
    """Hold ``<run_dir>.lock``; if another process holds it, say so once and wait for it."""
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        announce(f"waiting for another process working on {run_dir} (lock {path})")
        lock.acquire()
    try:
        yield path
    finally:
        lock.release()


# ------------------------------------------------------------------------------------------
# The finished marker.

def check_finished_run(run_dir: str | os.PathLike) -> dict:
    """Raise StaleRunError / DamagedRunError (one line naming the folder) unless the finished run is intact."""
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
    return marker


def check_unfinished_run(run_dir: Path, config: TrainConfig) -> None:
    """StaleRunError for an unfinished folder of the same settings hashed by older code (an explicit run_dir)."""
    try:
        stored = json.loads((run_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return  # no folder yet, or a corrupt config.json: training refuses the latter itself
    if isinstance(stored, dict) and stored.get("hash") != config_hash(config) \
            and not config_differences(stored.get("config", {}), config):
        raise StaleRunError(f"run folder {run_dir} holds an unfinished run of the same settings made by an older "
                            f"mmhpn (its hash predates training-semantics version {versions.TRAINING_SEMANTICS_VERSION})")


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


def set_aside_if_unusable(run_dir: Path, config: TrainConfig, finished: bool) -> Path | None:
    """Move a stale or damaged `run_dir` aside (one line saying why); return where it went, or None."""
    try:
        if finished:
            check_finished_run(run_dir)
        else:
            check_unfinished_run(run_dir, config)
    except (StaleRunError, DamagedRunError) as err:
        kind = "damaged" if isinstance(err, DamagedRunError) else "stale"
        target = set_aside(run_dir, kind)
        say(f"{err}; moved it to {target.name} and training again")
        return target
    return None
