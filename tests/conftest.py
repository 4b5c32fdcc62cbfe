"""Shared test settings and fixtures.

Small thread counts so tests behave on 2-core machines, the tiny synthetic dataset,
generated once per test session for every test that reads it (tests must not modify it;
a test that needs its own copy generates one in its `tmp_path`), and the environment of a
child process that runs this checkout's mmhpn.
"""
import os
from pathlib import Path

import pytest
import torch

from mmhpn.data import ReIDDataset, load_market_layout
from mmhpn.data.synthetic import ensure_synthetic

torch.set_num_threads(2)
# Pretraining runs beside each test's runs, never in the user's per-user cache
# (mmhpn.runs.pretraining_dir); notebook kernels and child processes inherit it.
os.environ["MMHPN_PRETRAINING_CACHE"] = "runs"

TINY_SEED = 0


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The folder of the tiny synthetic dataset (preset ``tiny``, seed `TINY_SEED`); read-only."""
    return ensure_synthetic(tmp_path_factory.mktemp("synthetic") / "tiny", preset="tiny", seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_root) -> ReIDDataset:
    """The tiny synthetic dataset's records (train, query, gallery, multi-query)."""
    return load_market_layout(tiny_root)


@pytest.fixture(scope="session")
def child_env() -> dict:
    """The environment for a child process or notebook kernel: this checkout's mmhpn first on
    PYTHONPATH, progress bars off."""
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TQDM_DISABLE"] = "1"
    return env
