"""`torchrun --nproc_per_node=2 -m mmhpn train` on CPU: DDP with gloo, one run folder, rank 0 writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from mmhpn.data import load_dataset


@pytest.mark.slow
def test_two_gloo_processes_train_one_run(tiny_root, tmp_path):
    data = tiny_root
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "mmhpn", "train", "--profile", "smoke", "--epochs", "1", "--data-root", str(data),
               "--runs-dir", str(runs), "--device", "cpu", "--no-progress",
               # DDP trains the whole network (the paper profile's way), not the smoke book's
               # single-process fine-tuning from cached layer3 maps
               "--init-from", "none", "--no-freeze-below-layer4", "--no-feature-cache"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on a 2-core machine
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained") == 1  # only rank 0 reports

    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]  # one run folder for both processes
    assert (runs / f"{run_dir.name}.lock").is_file()  # rank 0 held the run's lock beside it
    assert sorted(p.name for p in run_dir.iterdir()) == \
        ["FINISHED", "config.json", "history.csv", "metrics.json", "model.pt"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and 0 <= metrics["rank1"] <= 1 and 0 <= metrics["mAP"] <= 1
    history = pd.read_csv(run_dir / "history.csv")
    # Each process saw its half of the training images, 8 (= 16 / 2) a step, full batches only.
    num_train = len(load_dataset("synthetic", data, generate=False).train)
    assert list(history["epoch"]) == [1] and history["images"].iloc[0] == (num_train // 2 // 8) * 8 * 2
