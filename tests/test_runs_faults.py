"""The run cache under faults (issues 14 and 21), on the unit settings.

kill -9 during training, two processes training one configuration, a lock left by a killed
process, truncated, stale and damaged run folders, a run served for other data, a full
disk, a read-only runs folder, Ctrl-C, a corrupt checkpoint, failed starts, and a finished
run whose multiple-query evaluation failed. Each test checks the one line the user sees,
that nothing was lost, and that the next run works.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock, Timeout

import mmhpn.runs
import mmhpn.training
from mmhpn import checkpoints, run_integrity, versions
from mmhpn.atomic import atomic_torch_save, atomic_write_text, orphaned_temporaries
from mmhpn.checkpoints import CHECKPOINT_FILE, CONFIG_FILE, FINISHED_FILE, MODEL_FILE, is_finished
from mmhpn.cli import main
from mmhpn.config import TrainConfig, build_model_for, make_config, pretrain_overrides, pretraining_config
from mmhpn.data import load_data
from mmhpn.data.fingerprint import dataset_fingerprint
from mmhpn.errors import CheckpointError, ConfigError, DamagedRunError, StaleRunError, WriteError
from mmhpn.runs import load_run, run_dir_for, train_or_load

REPO = Path(__file__).resolve().parents[1]

# A training in a child process: argv = config.json, run_dir, role, folder for signal files.
# Roles: "kill-after-epoch-1" stops in its epoch hook after the first checkpoint and waits to
# be killed; "hold-until-go" waits after epoch 1 until the test says go (so that a second
# process is known to be waiting on the lock); "plain" just calls train_or_load.
CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from mmhpn.runs import train_or_load
    from mmhpn.config import TrainConfig

    config = TrainConfig.from_dict(json.loads(Path(sys.argv[1]).read_text()))
    run_dir, role, signals = Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])

    def hook(epoch, row):
        if role == "kill-after-epoch-1":
            (signals / "epoch-1-saved").touch()
            time.sleep(600)  # killed here
        if role == "hold-until-go":
            (signals / "training").touch()
            deadline = time.time() + 300
            while not (signals / "go").exists() and time.time() < deadline:
                time.sleep(0.1)

    run = train_or_load(config, run_dir=run_dir, progress=False, on_epoch_end=hook)
    print("RESULT " + json.dumps({"trained_now": run.trained_now, "metrics": run.metrics,
                                   "path": str(run.path)}), flush=True)
""")


def _start_child(folder: Path, config: TrainConfig, run_dir: Path, role: str, env: dict) -> subprocess.Popen:
    script, config_file = folder / "child.py", folder / f"config-{role}.json"
    script.write_text(CHILD)
    config_file.write_text(json.dumps(config.to_dict()))
    return subprocess.Popen([sys.executable, str(script), str(config_file), str(run_dir), role, str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=str(REPO))


def _wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"child exited with {process.returncode} before {path.name}:\n{process.stdout.read()}")
        if time.time() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {path.name}")
        time.sleep(0.1)


def _result(process: subprocess.Popen, timeout_s: float = 300) -> tuple[dict, str]:
    output, _ = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, output
    line = [line for line in output.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):]), output


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# ------------------------------------------------------------------------------------------
# kill -9 during training; the lock it held; the resumed run.

@pytest.fixture(scope="module")
def killed_then_resumed(tiny_root, child_env, tmp_path_factory):
    """A 2-epoch unit run whose process is killed with SIGKILL after epoch 1, then resumed here."""
    folder = tmp_path_factory.mktemp("killed")
    config = make_config("unit", data_root=str(tiny_root), epochs=2)
    run_dir = folder / "run"
    child = _start_child(folder, config, run_dir, "kill-after-epoch-1", child_env)
    try:
        _wait_for(folder / "epoch-1-saved", child)
    finally:
        if child.poll() is None and not (folder / "epoch-1-saved").exists():
            child.kill()
    lock = FileLock(str(run_integrity.lock_path(run_dir)))
    try:
        lock.acquire(timeout=0.2)
        held_while_alive = False
    except Timeout:
        held_while_alive = True
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    lock.acquire(timeout=10)  # the OS released the killed holder's lock (a Timeout here fails, not hangs)
    lock.release()
    state_after_kill = {"killed": child.returncode == -signal.SIGKILL, "finished": is_finished(run_dir),
                        "checkpoint_epoch": torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["epoch"],
                        "lock_held_while_alive": held_while_alive}
    epochs_trained = []
    run = train_or_load(config, run_dir=run_dir, progress=False,
                        on_epoch_end=lambda epoch, row: epochs_trained.append(epoch))
    return {"config": config, "run": run, "after_kill": state_after_kill, "epochs_trained": epochs_trained}


@pytest.mark.slow
def test_kill_9_during_training_loses_at_most_one_epoch(killed_then_resumed):
    after_kill = killed_then_resumed["after_kill"]
    # The child held <run_dir>.lock while alive; once killed, the lock was free within seconds.
    assert after_kill == {"killed": True, "finished": False, "checkpoint_epoch": 1, "lock_held_while_alive": True}
    # Resumed here: only the second epoch (0-based 1) was trained again.
    assert killed_then_resumed["epochs_trained"] == [1]
    run = killed_then_resumed["run"]
    assert run.trained_now and list(run.history["epoch"]) == [1, 2] and is_finished(run.path)
    assert not (run.path / CHECKPOINT_FILE).exists()


# ------------------------------------------------------------------------------------------
# Two processes, one configuration.

@pytest.mark.slow
def test_two_processes_on_one_configuration_train_once(tiny_root, child_env, tmp_path):
    config = make_config("unit", data_root=str(tiny_root), epochs=1)
    run_dir = run_dir_for(config, tmp_path / "runs")
    first = _start_child(tmp_path, config, run_dir, "hold-until-go", child_env)
    second = None
    try:
        _wait_for(tmp_path / "training", first)  # the first holds the lock, mid-training
        second = _start_child(tmp_path, config, run_dir, "plain", child_env)
        # Let the first finish only once the second says it is waiting for the lock.
        seen = []
        while not any("waiting for another process" in line for line in seen):
            line = second.stdout.readline()
            assert line, f"the second process ended without waiting for the lock:\n{''.join(seen)}"
            seen.append(line)
        assert str(run_dir) in seen[-1]
        (tmp_path / "go").touch()
        (result_1, _), (result_2, output_2) = _result(first), _result(second)
    finally:
        for child in (first, second):
            if child is not None and child.poll() is None:
                child.kill()
    assert (result_1["trained_now"], result_2["trained_now"]) == (True, False)
    assert result_1["metrics"] == result_2["metrics"] and result_1["path"] == result_2["path"] == str(run_dir)
    assert "Traceback" not in output_2 and is_finished(run_dir)


# ------------------------------------------------------------------------------------------
# Helpers: a finished run folder without training, and training replaced by a recorder.

def finished_without_training(run_dir: Path, config: TrainConfig, data_root: Path | None = None,
                              metrics: dict | None = None) -> Path:
    """A finished run folder of `config` as `train_or_load` leaves it, with made-up scores and
    weights (nothing here reads them), marked with the fingerprint of the data at `data_root`."""
    run_dir.mkdir(parents=True)
    checkpoints.write_config(config, run_dir)
    checkpoints.write_history([{"epoch": 1, "lr": config.lr, "loss": 2.0, "seconds": 0.5, "images": 16}], run_dir)
    checkpoints.write_metrics(metrics or {"rank1": 0.5, "mAP": 0.25, "protocol": "toolbox", "num_queries": 8},
                              run_dir)
    atomic_torch_save({"weights": "not read here"}, run_dir / MODEL_FILE)
    data = load_data(config if data_root is None else make_config("unit", data_root=str(data_root)))
    checkpoints.mark_finished(run_dir, config, dataset_fingerprint(data))
    return run_dir


class Retrained(Exception):
    pass


def spy_train(monkeypatch) -> list:
    """Replace training by a recorder: these tests check what happens before it starts."""
    calls = []

    def train(config, run_dir, **options):
        calls.append((Path(run_dir), sorted(p.name for p in Path(run_dir).glob("*"))))
        raise Retrained

    monkeypatch.setattr(mmhpn.runs, "train", train)
    return calls


def no_training(monkeypatch) -> None:
    def train(*args, **kwargs):
        raise AssertionError("a finished run must not be trained again")

    monkeypatch.setattr(mmhpn.runs, "train", train)


# ------------------------------------------------------------------------------------------
# Damaged and stale run folders.

def _copy_run(killed_then_resumed, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(killed_then_resumed["run"].path, copy)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("name", [MODEL_FILE, "metrics.json"])
def test_truncated_file_is_reported_moved_aside_and_retrained(killed_then_resumed, tmp_path, monkeypatch,
                                                              capsys, name):
    run_dir = _copy_run(killed_then_resumed, tmp_path)
    full_size = (run_dir / name).stat().st_size
    with open(run_dir / name, "r+b") as handle:
        handle.truncate(full_size // 2)
    with pytest.raises(DamagedRunError, match=rf"run folder {run_dir} is damaged: {name} has {full_size // 2} "
                                              rf"bytes, {full_size} were recorded"):
        load_run(run_dir)
    calls = spy_train(monkeypatch)
    with pytest.raises(Retrained):
        train_or_load(killed_then_resumed["config"], run_dir=run_dir, progress=False)
    assert calls == [(run_dir, [])]  # training starts in an empty folder ...
    aside = list(tmp_path.glob("run.damaged-*"))
    assert len(aside) == 1 and (aside[0] / name).stat().st_size == full_size // 2  # ... nothing deleted
    line = _one_line(capsys.readouterr().out)
    assert str(run_dir) in line and name in line and aside[0].name in line


@pytest.mark.slow
def test_changed_file_of_the_same_size_is_detected(killed_then_resumed, tmp_path):
    run_dir = _copy_run(killed_then_resumed, tmp_path)
    data = bytearray((run_dir / MODEL_FILE).read_bytes())
    data[-100] ^= 0xFF
    (run_dir / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(DamagedRunError, match=r"model.pt differs from the file recorded when the run finished \(sha256 mismatch\)"):
        load_run(run_dir)


@pytest.mark.slow
def test_run_of_an_older_training_semantics_version_is_never_reused(killed_then_resumed, tmp_path, monkeypatch,
                                                                    capsys):
    config = killed_then_resumed["config"]
    run_dir = _copy_run(killed_then_resumed, tmp_path)
    old = versions.TRAINING_SEMANTICS_VERSION
    monkeypatch.setattr(versions, "TRAINING_SEMANTICS_VERSION", old + 1)
    # (A default folder changes name with the version: test_default_run_folder_name_changes_with_the_version.)
    # A folder named explicitly is refused, moved aside and trained again.
    with pytest.raises(StaleRunError, match=f"trained under training-semantics version {old}, this mmhpn is at version {old + 1}"):
        load_run(run_dir, config)
    calls = spy_train(monkeypatch)
    with pytest.raises(Retrained):
        train_or_load(config, run_dir=run_dir, progress=False)
    assert calls == [(run_dir, [])] and len(list(tmp_path.glob("run.stale-*"))) == 1
    line = _one_line(capsys.readouterr().out)
    assert f"training-semantics version {old}," in line and "training again" in line


def test_default_run_folder_name_changes_with_the_version(tiny_root, monkeypatch):
    config = make_config("unit", data_root=str(tiny_root))
    before = run_dir_for(config)
    monkeypatch.setattr(versions, "TRAINING_SEMANTICS_VERSION", versions.TRAINING_SEMANTICS_VERSION + 1)
    assert run_dir_for(config) != before


def test_marker_without_versions_counts_as_stale(tiny_root, tmp_path):
    config = make_config("unit", data_root=str(tiny_root))
    run_dir = finished_without_training(tmp_path / "run", config)
    (run_dir / FINISHED_FILE).write_text(f"{config.hash}\n")  # the old marker format
    with pytest.raises(StaleRunError, match="recorded no training-semantics version"):
        load_run(run_dir)
    (run_dir / FINISHED_FILE).write_text('{"format": 2, "files": {"model.p')  # a marker cut short
    with pytest.raises(DamagedRunError, match="its FINISHED marker is not a format-2 JSON record"):
        load_run(run_dir)


def test_unfinished_run_of_older_code_is_set_aside(tiny_root, tmp_path, monkeypatch, capsys):
    config = make_config("unit", data_root=str(tiny_root))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoints.write_config(config, run_dir)  # as an interrupted run of version N leaves it
    (run_dir / CHECKPOINT_FILE).write_bytes(b"checkpoint of the older code")
    monkeypatch.setattr(versions, "TRAINING_SEMANTICS_VERSION", versions.TRAINING_SEMANTICS_VERSION + 1)
    calls = spy_train(monkeypatch)
    with pytest.raises(Retrained):
        train_or_load(config, run_dir=run_dir, progress=False)
    assert calls == [(run_dir, [])]
    aside = list(tmp_path.glob("run.stale-*"))
    assert len(aside) == 1 and (aside[0] / CHECKPOINT_FILE).read_bytes() == b"checkpoint of the older code"
    assert "unfinished run of the same settings made by an older mmhpn" in capsys.readouterr().out


def test_unfinished_run_of_another_configuration_is_not_moved(tiny_root, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoints.write_config(make_config("unit", data_root=str(tiny_root), lr=0.02), run_dir)
    spy_train(monkeypatch)
    with pytest.raises(Retrained):  # left in place for training, which refuses it naming the fields (test_runs)
        train_or_load(make_config("unit", data_root=str(tiny_root)), run_dir=run_dir, progress=False)
    assert (run_dir / CONFIG_FILE).exists() and not list(tmp_path.glob("run.*-*"))


# ------------------------------------------------------------------------------------------
# A run is served only for the data it was trained on (data_root is not in the hash).

def _other_data(tiny_root: Path, folder: Path) -> Path:
    """A copy of the tiny set with one training image fewer: the same name, preset and seed."""
    shutil.copytree(tiny_root, folder)
    next(iter(sorted((folder / "bounding_box_train").glob("*.jpg")))).unlink()
    return folder


def test_a_finished_run_is_served_for_a_copy_of_its_data_only(tiny_root, tmp_path, monkeypatch, capsys):
    config = make_config("unit", data_root=str(tiny_root))
    run_dir = finished_without_training(run_dir_for(config, tmp_path / "runs"), config)
    # The same images elsewhere (another data_root, the same hash): the same run.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_root, copy)
    no_training(monkeypatch)
    served = train_or_load(make_config("unit", data_root=str(copy)), tmp_path / "runs", progress=False)
    assert served.path == run_dir and not served.trained_now
    # Other images under the same settings: moved aside (kept), one line, trained again.
    other = make_config("unit", data_root=str(_other_data(tiny_root, tmp_path / "other")))
    calls = spy_train(monkeypatch)
    with pytest.raises(Retrained):
        train_or_load(other, tmp_path / "runs", progress=False)
    assert calls == [(run_dir, [])]
    (aside,) = (tmp_path / "runs").glob(f"{run_dir.name}.stale-*")
    assert is_finished(aside)
    line = _one_line(capsys.readouterr().out)
    assert "was trained on other data than its data folder holds now" in line and aside.name in line
    assert f"{len(load_data(config).train)}/" in line and f"{len(load_data(other).train)}/" in line


def test_a_marker_without_a_data_fingerprint_is_stale(tiny_root, tmp_path, monkeypatch, capsys):
    """Runs finished before fingerprints were recorded cannot show what they were trained on:
    each is moved aside and trained again, once."""
    config = make_config("unit", data_root=str(tiny_root))
    run_dir = finished_without_training(tmp_path / "run", config)
    marker = json.loads((run_dir / FINISHED_FILE).read_text())
    del marker["data"]
    (run_dir / FINISHED_FILE).write_text(json.dumps(marker))
    load_run(run_dir)  # opening a folder by hand does not look at the data ...
    calls = spy_train(monkeypatch)
    with pytest.raises(Retrained):  # ... serving it for a configuration does
        train_or_load(config, run_dir=run_dir, progress=False)
    assert calls == [(run_dir, [])] and len(list(tmp_path.glob("run.stale-*"))) == 1
    assert "recorded no fingerprint of its data" in _one_line(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------
# A full disk: every run-folder writer says so in one line and keeps the previous file.

TORCH_DISK_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"  # torch.save on /dev/full


def _torch_disk_full(obj, f):
    with open(f, "wb") as handle:
        handle.write(b"part of a checkpoint")
    raise RuntimeError(TORCH_DISK_FULL)


def _os_disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("writer, had_previous", [
    *[(writer, had) for writer in ("checkpoint", "model", "history", "metrics", "finished") for had in (True, False)],
    ("config", False),  # config.json is written once, then only checked
])
def test_full_disk_keeps_the_previous_file_and_says_so(tiny_root, tmp_path, monkeypatch, writer, had_previous):
    config = make_config("unit", data_root=str(tiny_root))
    model = build_model_for(config, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    writes = {
        "checkpoint": (CHECKPOINT_FILE, lambda: checkpoints.write_checkpoint(tmp_path, config, 4, model, optimizer,
                                                                             scaler, 1, [])),
        "model": (MODEL_FILE, lambda: checkpoints.write_model_file(tmp_path, config, 4, model)),
        "config": (CONFIG_FILE, lambda: checkpoints.write_config(config, tmp_path)),
        "history": ("history.csv", lambda: checkpoints.write_history([{"epoch": 1, "loss": 1.0}], tmp_path)),
        "metrics": ("metrics.json", lambda: checkpoints.write_metrics({"rank1": 0.5}, tmp_path)),
        "finished": (FINISHED_FILE, lambda: atomic_write_text(tmp_path / FINISHED_FILE, "{}\n")),  # as mark_finished
    }
    name, write = writes[writer]
    if had_previous:
        write()
    previous = (tmp_path / name).read_bytes() if (tmp_path / name).exists() else None
    if name.endswith(".pt"):
        monkeypatch.setattr(torch, "save", _torch_disk_full)  # torch raises a RuntimeError, not an OSError
    else:
        monkeypatch.setattr(Path, "write_text", _os_disk_full)  # the JSON and text writers
        monkeypatch.setattr(mmhpn.checkpoints.pd.DataFrame, "to_csv", _os_disk_full)
    with pytest.raises(WriteError) as caught:
        write()
    monkeypatch.undo()
    kept = "previous file kept" if previous is not None else f"no previous {name} existed"
    assert str(caught.value).startswith(f"no space left writing {tmp_path / name}") and str(caught.value).endswith(kept)
    assert "\n" not in str(caught.value)
    assert ((tmp_path / name).read_bytes() if (tmp_path / name).exists() else None) == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if previous is not None else [])  # no temporary left


@pytest.mark.slow
def test_full_disk_during_training_stops_in_one_line_and_the_next_run_resumes(tiny_root, tmp_path, monkeypatch,
                                                                              capsys):
    config = make_config("unit", data_root=str(tiny_root))
    run_dir = tmp_path / "run"
    real_save = torch.save
    saves = []

    def full_at_the_second_checkpoint(obj, f):
        saves.append(Path(f).name)
        if sum(".checkpoint.pt.tmp" in name for name in saves) == 2:
            _torch_disk_full(obj, f)
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", full_at_the_second_checkpoint)
    assert main(["train", "--profile", "unit", "--data-root", str(tiny_root), "--run-dir", str(run_dir),
                 "--no-progress"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == f"mmhpn train: error: no space left writing {run_dir / CHECKPOINT_FILE} (torch: {TORCH_DISK_FULL}); " \
                   "previous file kept"
    assert torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["epoch"] == 1  # epoch 1 is not lost
    assert not orphaned_temporaries(run_dir)
    monkeypatch.undo()
    epochs = []
    run = train_or_load(config, run_dir=run_dir, progress=False, on_epoch_end=lambda epoch, row: epochs.append(epoch))
    assert epochs == [1] and run.trained_now and list(run.history["epoch"]) == [1, 2]


# ------------------------------------------------------------------------------------------
# A read-only runs folder.

class _ReadOnlyLock:
    """FileLock on a read-only file system: creating the lock file fails."""

    def __init__(self, path):
        self.path = path

    def acquire(self, timeout=None):
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), self.path)


def test_read_only_runs_folder_serves_finished_runs_and_refuses_unfinished_ones(tiny_root, tmp_path, monkeypatch):
    config = make_config("unit", data_root=str(tiny_root))
    finished = finished_without_training(run_dir_for(config, tmp_path / "runs"), config)
    monkeypatch.setattr(run_integrity, "FileLock", _ReadOnlyLock)
    no_training(monkeypatch)
    run = train_or_load(config, tmp_path / "runs", progress=False)
    assert run.path == finished and run.metrics["rank1"] == 0.5 and not run_integrity.lock_path(finished).exists()
    unfinished = tmp_path / "runs" / "unfinished"
    unfinished.mkdir()
    checkpoints.write_config(config, unfinished)
    with pytest.raises(CheckpointError) as caught:
        train_or_load(config, run_dir=unfinished, progress=False)
    message = str(caught.value)
    assert "\n" not in message and "is read-only" in message and "the unfinished run unfinished cannot train there" in message
    assert sorted(p.name for p in unfinished.iterdir()) == [CONFIG_FILE]  # untouched
    # A stale finished run cannot be moved aside there: said in one line, left as it is.
    marker = json.loads((finished / FINISHED_FILE).read_text())
    del marker["data"]
    (finished / FINISHED_FILE).write_text(json.dumps(marker))
    with pytest.raises(CheckpointError, match="recorded no fingerprint.*cannot be moved aside and trained again"):
        train_or_load(config, tmp_path / "runs", progress=False)
    assert is_finished(finished)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (the test above fakes it)")
def test_read_only_runs_folder_for_real(tiny_root, tmp_path, monkeypatch):
    config = make_config("unit", data_root=str(tiny_root))
    finished = finished_without_training(run_dir_for(config, tmp_path / "runs"), config)
    no_training(monkeypatch)
    os.chmod(tmp_path / "runs", 0o555)
    try:
        assert train_or_load(config, tmp_path / "runs", progress=False).path == finished
        with pytest.raises(CheckpointError, match="Permission denied.*is read-only"):
            train_or_load(make_config("unit", data_root=str(tiny_root), seed=1), tmp_path / "runs", progress=False)
    finally:
        os.chmod(tmp_path / "runs", 0o755)


# ------------------------------------------------------------------------------------------
# A finished run whose multiple-query evaluation could not run.

def test_a_finished_run_with_a_multi_query_error_is_served(tiny_root, tmp_path, capsys):
    config = make_config("unit", data_root=str(tiny_root))
    error = "query 0001_c1s1_000001_00.jpg has no gt_bbox image of its identity and camera"
    metrics = {"rank1": 0.5, "mAP": 0.25, "protocol": "toolbox", "num_queries": 8, "multi_query": {"error": error}}
    run_dir = finished_without_training(tmp_path / "run", config, metrics=metrics)
    argv = ["train", "--profile", "unit", "--data-root", str(tiny_root), "--run-dir", str(run_dir), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "finished earlier, loaded from the run folder" in out and f"multiple query: not scored ({error})" in out


# ------------------------------------------------------------------------------------------
# Ctrl-C during training.

@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_the_same_command_resumes(tiny_root, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--profile", "unit", "--data-root", str(tiny_root), "--run-dir", str(run_dir), "--no-progress"]
    real_epoch = mmhpn.training._train_one_epoch

    def interrupted_in_epoch_2(model, forward, loader, criterion, optimizer, scaler, config, epoch, *rest):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(model, forward, loader, criterion, optimizer, scaler, config, epoch, *rest)

    monkeypatch.setattr(mmhpn.training, "_train_one_epoch", interrupted_in_epoch_2)
    assert main(argv) == 130
    captured = capsys.readouterr()
    assert _one_line(captured.err) == \
        f"mmhpn train: interrupted; run the same command again to resume {run_dir} from epoch 2"
    first_epoch = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["history"]
    monkeypatch.undo()
    assert main(argv) == 0 and "(trained)" in capsys.readouterr().out
    history = load_run(run_dir).history
    assert list(history["epoch"]) == [1, 2] and history["seconds"].iloc[0] == pytest.approx(first_epoch[0]["seconds"])


# ------------------------------------------------------------------------------------------
# A corrupt checkpoint; temporary files left by a killed writer.

def test_corrupt_checkpoint_is_set_aside_and_the_run_starts_afresh(tiny_root, tmp_path, monkeypatch, capsys):
    config = make_config("unit", data_root=str(tiny_root))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoints.write_config(config, run_dir)
    (run_dir / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 half a zip")  # a disk error, a copy cut short
    calls = spy_train(monkeypatch)
    with pytest.raises(Retrained):
        train_or_load(config, run_dir=run_dir, progress=False)
    assert calls == [(run_dir, [])]  # afresh, in an empty folder
    (aside,) = tmp_path.glob("run.damaged-*")
    assert (aside / CHECKPOINT_FILE).read_bytes() == b"PK\x03\x04 half a zip"  # kept for inspection
    line = _one_line(capsys.readouterr().out)
    assert f"run folder {run_dir} is damaged: checkpoint {run_dir / CHECKPOINT_FILE} is corrupt" in line
    assert aside.name in line and "training again" in line


def test_temporary_files_of_a_killed_writer_are_removed_when_a_run_starts(tiny_root, tmp_path, monkeypatch, capsys):
    config = make_config("unit", data_root=str(tiny_root))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoints.write_config(config, run_dir)
    (run_dir / ".checkpoint.pt.tmp-4242-123456789").write_bytes(b"half a checkpoint")
    calls = spy_train(monkeypatch)
    with pytest.raises(Retrained):
        train_or_load(config, run_dir=run_dir, progress=False)
    assert calls == [(run_dir, [CONFIG_FILE])]
    assert "removed .checkpoint.pt.tmp-4242-123456789" in _one_line(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------
# Failed starts leave no run folder behind.

def test_a_start_that_fails_before_its_first_checkpoint_leaves_no_folder(tiny_root, tmp_path, monkeypatch):
    config = make_config("unit", data_root=str(tiny_root))
    run_dir = run_dir_for(config, tmp_path / "runs")

    def fails_in_epoch_1(*args, **kwargs):
        raise ConfigError("training diverged: the loss became nan in epoch 1; try a lower lr than 0.01")

    monkeypatch.setattr(mmhpn.training, "_train_one_epoch", fails_in_epoch_1)
    with pytest.raises(ConfigError, match="diverged"):
        train_or_load(config, tmp_path / "runs", progress=False)
    assert not run_dir.exists()  # it held only the config.json this start wrote
    # A folder that held something before is left as it is.
    run_dir.mkdir(parents=True)
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="diverged"):
        train_or_load(config, tmp_path / "runs", progress=False)
    assert sorted(p.name for p in run_dir.iterdir()) == [CONFIG_FILE, "notes.txt"]


# ------------------------------------------------------------------------------------------
# A fine-tuning run's pretraining run: trained under its own lock, never inside another.

def test_pretraining_run_is_resolved_before_the_fine_tuning_lock(tiny_root, tmp_path, monkeypatch):
    init_from = pretrain_overrides("unit", synthetic_preset="tiny", data_root=str(tiny_root), epochs=1)
    config = make_config("unit", data_root=str(tiny_root), init_from=init_from, freeze_below_layer4=True)
    held, trained = [], []
    real_lock = run_integrity.run_lock

    @contextlib.contextmanager
    def recording_lock(run_dir, *args, **kwargs):
        with real_lock(run_dir, *args, **kwargs) as path:
            held.append(Path(run_dir).name)
            try:
                yield path
            finally:
                held.remove(Path(run_dir).name)

    def fake_train(config, run_dir, *, trunk_state=None, dataset=None, progress=True):
        """What train leaves, with the locks held while it ran and whether it got a trunk."""
        trained.append((config.name or config.run_name, list(held), trunk_state is not None))
        model = build_model_for(config, dataset.num_train_pids)
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoints.write_config(config, run_dir)
        checkpoints.write_model_file(run_dir, config, dataset.num_train_pids, model)
        checkpoints.write_history([{"epoch": 1, "loss": 1.0, "seconds": 0.1, "images": 16}], run_dir)
        checkpoints.write_metrics({"rank1": 0.5, "mAP": 0.25}, run_dir)
        return mmhpn.training.TrainResult(history=None, metrics={})

    monkeypatch.setattr(run_integrity, "run_lock", recording_lock)
    monkeypatch.setattr(mmhpn.runs, "train", fake_train)
    run = train_or_load(config, tmp_path / "runs", progress=False)
    pretraining = run_dir_for(pretraining_config(init_from), tmp_path / "runs")
    assert trained == [("pretrain-unit", [pretraining.name], False), (config.run_name, [run.path.name], True)]
    # The same through mmhpn.runs.pretraining_run (the training page's summary): loaded, not trained.
    assert mmhpn.runs.pretraining_run(config, tmp_path / "runs").path == pretraining and len(trained) == 2
