"""`make book` killed (kill -9) during a notebook publishes nothing; the next build resumes the run."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmhpn.checkpoints import CHECKPOINT_FILE, is_finished
from mmhpn.runs import load_run

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_kill_9_during_a_notebook_publishes_nothing_and_the_next_build_resumes(tmp_path, child_env):
    """`make book` killed (kill -9, the whole process group: the build and its kernel) while a
    notebook trains: no executed page is published, the run keeps its last epoch's checkpoint,
    and the next build resumes from it (the epoch is not trained again) and publishes the page."""
    root = tmp_path / "book"
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copy2(REPO / "_toc.yml", root / "_toc.yml")  # the one list of the book's notebooks
    command = [sys.executable, "-m", "mmhpn", "book", "--profile", "smoke", "--only", "02-training",
               "--no-build", "--root", str(root)]
    page = root / "book" / "executed" / "02-training.ipynb"
    child = subprocess.Popen(command, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
    again = subprocess.run(command, env=child_env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert page.is_file() and is_finished(run_dir)
    # resumed: the same folder, and the checkpointed epochs were not trained again
    history = load_run(run_dir).history
    assert list(history["epoch"][: len(saved)]) == [row["epoch"] for row in saved]
    assert list(history["seconds"][: len(saved)]) == pytest.approx([row["seconds"] for row in saved])
