"""Shared test settings and fixtures.

Small thread counts so tests behave on 2-core machines, and the tiny synthetic dataset,
generated once per test session for every test that reads it (tests must not modify it;
a test that needs its own copy generates one in its `tmp_path`).
"""
from pathlib import Path

import pytest
import torch

from mmhpn.data import ReIDDataset, load_market_layout
from mmhpn.data.synthetic import ensure_synthetic

torch.set_num_threads(2)

TINY_SEED = 0


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The folder of the tiny synthetic dataset (preset ``tiny``, seed `TINY_SEED`); read-only."""
    return ensure_synthetic(tmp_path_factory.mktemp("synthetic") / "tiny", preset="tiny", seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_root) -> ReIDDataset:
    """The tiny synthetic dataset's records (train, query, gallery, multi-query)."""
    return load_market_layout(tiny_root)
