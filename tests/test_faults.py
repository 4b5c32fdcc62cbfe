"""Fault tests of the run cache and the notebooks under real use (issue 14), on the smoke settings.

kill -9 during training, two processes training one configuration, a lock left by a killed
process, truncated and stale run folders, a full disk while a checkpoint is written, and
wrong or unknown notebook parameters.
"""
from __future__ import annotations

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

import nbformat
import pytest
import torch
from filelock import FileLock, Timeout

import mmhpn.checkpoints
import mmhpn.runs
from mmhpn import notebook_params, run_integrity, versions
from mmhpn.bookbuild import NotebookExecutionError
from mmhpn.bookbuild.execute import execute_notebook
from mmhpn.atomic import atomic_torch_save
from mmhpn.checkpoints import CHECKPOINT_FILE, CONFIG_FILE, FINISHED_FILE, MODEL_FILE, is_finished
from mmhpn.config import TrainConfig, make_config
from mmhpn.data.synthetic import ensure_synthetic
from mmhpn.errors import CheckpointError, ConfigError, DamagedRunError, StaleRunError
from mmhpn.runs import load_run, run_dir_for, train_or_load

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import add_parameter_check  # noqa: E402

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


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "tiny-synthetic"
    ensure_synthetic(root, preset="tiny", seed=0)
    return root


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TQDM_DISABLE"] = "1"
    return env


def _start_child(folder: Path, config: TrainConfig, run_dir: Path, role: str) -> subprocess.Popen:
    script, config_file = folder / "child.py", folder / f"config-{role}.json"
    script.write_text(CHILD)
    config_file.write_text(json.dumps(config.to_dict()))
    return subprocess.Popen([sys.executable, str(script), str(config_file), str(run_dir), role, str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_child_env(),
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


# ------------------------------------------------------------------------------------------
# kill -9 during training; the lock it held; the resumed run.

@pytest.fixture(scope="module")
def killed_then_resumed(tiny_root, tmp_path_factory):
    """A 2-epoch smoke run whose process is killed with SIGKILL after epoch 1, then resumed here."""
    folder = tmp_path_factory.mktemp("killed")
    config = make_config("unit", data_root=str(tiny_root), epochs=2)
    run_dir = folder / "run"
    child = _start_child(folder, config, run_dir, "kill-after-epoch-1")
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
    started = time.time()
    run = train_or_load(config, run_dir=run_dir, progress=False,
                        on_epoch_end=lambda epoch, row: epochs_trained.append(epoch))
    return {"config": config, "run": run, "after_kill": state_after_kill, "epochs_trained": epochs_trained,
            "resume_s": time.time() - started}


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
def test_two_processes_on_one_configuration_train_once(tiny_root, tmp_path):
    config = make_config("unit", data_root=str(tiny_root), epochs=1)
    run_dir = run_dir_for(config, tmp_path / "runs")
    first = _start_child(tmp_path, config, run_dir, "hold-until-go")
    second = None
    try:
        _wait_for(tmp_path / "training", first)  # the first holds the lock, mid-training
        second = _start_child(tmp_path, config, run_dir, "plain")
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
# Damaged and stale run folders.

def _copy_run(killed_then_resumed, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(killed_then_resumed["run"].path, copy)
    return copy


class Retrained(Exception):
    pass


def _spy_train(monkeypatch) -> list:
    """Replace training by a recorder: these tests check what happens before it starts."""
    calls = []

    def train(config, run_dir, **options):
        calls.append((Path(run_dir), sorted(p.name for p in Path(run_dir).glob("*"))))
        raise Retrained

    monkeypatch.setattr(mmhpn.runs, "train", train)
    return calls


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
    calls = _spy_train(monkeypatch)
    with pytest.raises(Retrained):
        train_or_load(killed_then_resumed["config"], run_dir=run_dir, progress=False)
    assert calls == [(run_dir, [])]  # training starts in an empty folder ...
    aside = list(tmp_path.glob("run.damaged-*"))
    assert len(aside) == 1 and (aside[0] / name).stat().st_size == full_size // 2  # ... nothing deleted
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and str(run_dir) in lines[0] and name in lines[0] and aside[0].name in lines[0]


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
    calls = _spy_train(monkeypatch)
    with pytest.raises(Retrained):
        train_or_load(config, run_dir=run_dir, progress=False)
    assert calls == [(run_dir, [])] and len(list(tmp_path.glob("run.stale-*"))) == 1
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and f"training-semantics version {old}," in line and "training again" in line


def test_default_run_folder_name_changes_with_the_version(tiny_root, monkeypatch):
    config = make_config("unit", data_root=str(tiny_root))
    before = run_dir_for(config)
    monkeypatch.setattr(versions, "TRAINING_SEMANTICS_VERSION", versions.TRAINING_SEMANTICS_VERSION + 1)
    assert run_dir_for(config) != before


@pytest.mark.slow
def test_marker_without_versions_counts_as_stale(killed_then_resumed, tmp_path):
    run_dir = _copy_run(killed_then_resumed, tmp_path)
    (run_dir / FINISHED_FILE).write_text(f"{killed_then_resumed['config'].hash}\n")  # the old marker format
    with pytest.raises(StaleRunError, match="recorded no training-semantics version"):
        load_run(run_dir)
    (run_dir / FINISHED_FILE).write_text('{"format": 2, "files": {"model.p')  # a marker cut short
    with pytest.raises(DamagedRunError, match="its FINISHED marker is not a format-2 JSON record"):
        load_run(run_dir)


def test_unfinished_run_of_older_code_is_set_aside(tiny_root, tmp_path, monkeypatch, capsys):
    config = make_config("unit", data_root=str(tiny_root))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    mmhpn.checkpoints.write_config(config, run_dir)  # as an interrupted run of version N leaves it
    (run_dir / CHECKPOINT_FILE).write_bytes(b"checkpoint of the older code")
    monkeypatch.setattr(versions, "TRAINING_SEMANTICS_VERSION", versions.TRAINING_SEMANTICS_VERSION + 1)
    calls = _spy_train(monkeypatch)
    with pytest.raises(Retrained):
        train_or_load(config, run_dir=run_dir, progress=False)
    assert calls == [(run_dir, [])]
    aside = list(tmp_path.glob("run.stale-*"))
    assert len(aside) == 1 and (aside[0] / CHECKPOINT_FILE).read_bytes() == b"checkpoint of the older code"
    assert "unfinished run of the same settings made by an older mmhpn" in capsys.readouterr().out


def test_unfinished_run_of_another_configuration_is_not_moved(tiny_root, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    mmhpn.checkpoints.write_config(make_config("unit", data_root=str(tiny_root), lr=0.02), run_dir)
    _spy_train(monkeypatch)
    with pytest.raises(Retrained):  # left in place for training, which refuses it naming the fields (test_runs)
        train_or_load(make_config("unit", data_root=str(tiny_root)), run_dir=run_dir, progress=False)
    assert (run_dir / CONFIG_FILE).exists() and not list(tmp_path.glob("run.*-*"))


# ------------------------------------------------------------------------------------------
# A full disk while a checkpoint is written.

@pytest.mark.parametrize("had_previous", [True, False])
def test_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch, had_previous):
    path = tmp_path / CHECKPOINT_FILE
    if had_previous:
        atomic_torch_save({"epoch": 1}, path)

    def disk_full(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"part of a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    kept = f"the previous {path} is kept unchanged" if had_previous else "no previous checkpoint.pt existed"
    with pytest.raises(CheckpointError, match=rf"could not write .*checkpoint.pt \(No space left on device\); {kept}"):
        atomic_torch_save({"epoch": 2}, path)
    monkeypatch.undo()
    if had_previous:
        assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ([CHECKPOINT_FILE] if had_previous else [])


# ------------------------------------------------------------------------------------------
# Notebook parameters.

PARAMETERS_CELL = (
    "# Parameters: `make book` injects its profile's values after this cell.\n"
    'profile: str = "smoke"  # training profile\n'
    "seeds: list[int] = [0, 1]  # training seeds\n"
    "epochs: int = 0  # 0 keeps the profile's value\n"
    "overrides: dict = {}  # further TrainConfig fields\n"
    "device: str | None = None  # torch device\n"
)


@pytest.mark.parametrize("injected, message", [
    ({"seeds": 0}, "parameter seeds: got 0 (int), expected list[int], e.g. [0, 1]"),
    ({"seeds": [0, "1"]}, "parameter seeds: got [0, '1'] (list), expected list[int], e.g. [0, 1]"),
    ({"seed": 3}, "unknown parameter 'seed'; did you mean 'seeds'?"),
    ({"colour": 3}, "unknown parameter 'colour'; the declared parameters are profile, seeds, epochs, overrides, device"),
    ({"epochs": True}, "parameter epochs: got True (bool), expected int, e.g. 0"),
    ({"seeds": "[0, 1]"}, "parameter seeds: got '[0, 1]' (str), expected list[int], e.g. [0, 1] "
                          "(papermill's -p passes text: give it as YAML with -y 'seeds: [0, 1]')"),
])
def test_wrong_parameter_gives_one_line(injected, message):
    namespace = {"profile": "smoke", "seeds": [0, 1], "epochs": 0, "overrides": {}, "device": None, **injected}
    injected_source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in injected.items())
    with pytest.raises(ConfigError) as caught:
        notebook_params.check_parameters(namespace, parameters_source=PARAMETERS_CELL, injected_source=injected_source)
    assert str(caught.value) == message


def test_right_parameters_pass_and_every_problem_is_listed_on_one_line():
    fine = {"profile": "demo", "seeds": [3], "epochs": 2, "overrides": {"lr": 0.1}, "device": "cpu"}
    notebook_params.check_parameters(fine, parameters_source=PARAMETERS_CELL, injected_source="# Parameters\nseeds = [3]\n")
    history = ["", PARAMETERS_CELL, "# Parameters\nseed = 3\nseeds = 0\n", "check_parameters(globals())"]
    with pytest.raises(ConfigError) as caught:
        notebook_params.check_parameters({**fine, "seeds": 0, "seed": 3, "In": history})
    assert str(caught.value) == ("unknown parameter 'seed'; did you mean 'seeds'?; "
                                 "parameter seeds: got 0 (int), expected list[int], e.g. [0, 1]")


def _parameter_notebook(path: Path) -> Path:
    """A notebook like ours: parameters cell, the checking cell (added by the tool), a cell using them."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMETERS_CELL)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A table"), params,
                nbformat.v4.new_code_cell("print('seeds used:', sum(seeds))")]
    assert add_parameter_check.add_check_cell(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def kernel_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", _child_env()["PYTHONPATH"])


@pytest.mark.slow
def test_papermill_with_a_typo_or_a_right_value(tmp_path, kernel_env):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = _parameter_notebook(tmp_path / "table.ipynb")
    with pytest.raises(PapermillExecutionError) as caught:  # papermill ... -p seed 3
        papermill.execute_notebook(str(source), str(tmp_path / "typo.ipynb"), parameters={"seed": 3},
                                   kernel_name="python3", progress_bar=False)
    assert (caught.value.ename, caught.value.evalue) == ("ConfigError", "unknown parameter 'seed'; did you mean 'seeds'?")
    out = papermill.execute_notebook(str(source), str(tmp_path / "right.ipynb"), parameters={"seeds": [2, 5]},
                                     kernel_name="python3", progress_bar=False)
    assert out.cells[-1].outputs[0]["text"] == "seeds used: 7\n"


@pytest.mark.slow
def test_make_book_reports_a_wrong_parameter_in_one_line(tmp_path, kernel_env):
    _parameter_notebook(tmp_path / "notebooks" / "table.ipynb")
    with pytest.raises(NotebookExecutionError) as caught:  # what make book prints after "error:"
        execute_notebook("table", {"seeds": 0}, root=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "ConfigError: parameter seeds: got 0 (int), expected list[int], e.g. [0, 1]" in message
    assert not (tmp_path / "book" / "executed" / "table.ipynb").exists()  # no half-executed page published


def test_tool_adds_the_check_cell_after_every_parameters_cell(tmp_path):
    copies = []
    for source in sorted((REPO / "notebooks").glob("*.ipynb")):
        shutil.copy(source, tmp_path / source.name)
        copies.append(tmp_path / source.name)
    assert copies and add_parameter_check.main([str(p) for p in copies]) == 0
    assert add_parameter_check.main(["--check", *map(str, copies)]) == 0
    for copy in copies:
        before, after = nbformat.read(REPO / "notebooks" / copy.name, 4), nbformat.read(copy, 4)
        index = [i for i, c in enumerate(after.cells) if "parameters" in c.metadata.get("tags", [])][0]
        check = after.cells[index + 1]
        assert check.source == notebook_params.CHECK_CELL_SOURCE
        assert check.metadata["tags"] == ["mmhpn-check-parameters", "remove-cell"]
        # everything else unchanged (the committed notebooks carry the cell already), and a
        # second run changes nothing
        others = [c.source for c in before.cells if notebook_params.CHECK_TAG not in c.metadata.get("tags", [])]
        assert [c.source for c in after.cells[:index + 1] + after.cells[index + 2:]] == others
        assert not add_parameter_check.add_check_cell(after)


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_notebooks_defaults_pass_its_own_check(path):
    """No false alarm: each committed notebook's parameters cell is found and its defaults fit their types."""
    nb = nbformat.read(path, as_version=4)
    source = [c.source for c in nb.cells if "parameters" in c.metadata.get("tags", [])][0]
    namespace: dict = {}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - the notebook's own parameters cell
    declared = notebook_params.declared_parameters(source)
    assert declared and set(declared) <= set(namespace)
    namespace["In"] = ["", source, notebook_params.CHECK_CELL_SOURCE]
    notebook_params.check_parameters(namespace)


@pytest.mark.slow
def test_kill_9_during_a_notebook_publishes_nothing_and_the_next_build_resumes(tmp_path):
    """`make book` killed (kill -9, the whole process group: the build and its kernel) while a
    notebook trains: no executed page is published, the run keeps its last epoch's checkpoint,
    and the next build resumes from it (the epoch is not trained again) and publishes the page."""
    root = tmp_path / "book"
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    command = [sys.executable, "-m", "mmhpn", "book", "--profile", "smoke", "--notebooks", "02-training",
               "--no-build", "--root", str(root)]
    page = root / "book" / "executed" / "02-training.ipynb"
    child = subprocess.Popen(command, env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not list((root / "runs").glob(f"*/{CHECKPOINT_FILE}")):  # an epoch is done
            assert child.poll() is None, "the build ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.1)
        os.killpg(child.pid, signal.SIGKILL)  # before the final evaluation has finished the run
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert not page.exists()  # nothing half-executed is published
    (checkpoint,) = (root / "runs").glob(f"*/{CHECKPOINT_FILE}")
    saved = torch.load(checkpoint, weights_only=True)["history"]
    run_dir = checkpoint.parent
    assert not is_finished(run_dir)
    again = subprocess.run(command, env=_child_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert page.is_file() and is_finished(run_dir)
    # resumed: the same folder, and the checkpointed epochs were not trained again
    history = load_run(run_dir).history
    assert list(history["epoch"][: len(saved)]) == [row["epoch"] for row in saved]
    assert list(history["seconds"][: len(saved)]) == pytest.approx([row["seconds"] for row in saved])
