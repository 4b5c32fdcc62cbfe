"""The check that a pretraining set shares no person with the test split it is scored on.

Stand-in pretraining sets (presets ``pretrain``, ``tiny-pretrain``) draw their people from
another identity stream than the sets they are evaluated on; `check_disjoint_identities`
verifies that, person by person, by attributes (`nearest_people`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mmhpn.data.synthetic.identities import Identity
from mmhpn.data.synthetic.planning import Plan
from mmhpn.errors import DatasetError


# Two attribute values look alike: the same category; colours within this L1 distance (0-255
# per channel; palette colours meant to differ are more than 90 apart, see identities._far,
# and a person's colour is jittered by a few levels around its palette colour); body factors
# within this difference.
ALIKE_COLOR_L1 = 60
ALIKE_BODY = 0.05
ATTRIBUTES = tuple(f.name for f in dataclasses.fields(Identity) if f.name not in ("group", "changed_part"))


def _alike(name: str, test: list[Identity], others: list[Identity]) -> np.ndarray:
    """(len(test), len(others)) booleans: does attribute `name` look alike?"""
    a = [getattr(x, name) for x in test]
    b = [getattr(y, name) for y in others]
    if isinstance(a[0], tuple):
        return np.abs(np.asarray(a, dtype=float)[:, None, :] - np.asarray(b, dtype=float)[None, :, :]).sum(-1) \
            <= ALIKE_COLOR_L1
    if isinstance(a[0], float):
        return np.abs(np.asarray(a)[:, None] - np.asarray(b)[None, :]) <= ALIKE_BODY
    return np.asarray(a, dtype=object)[:, None] == np.asarray(b, dtype=object)[None, :]


def nearest_people(pretrain: Plan, evaluation: Plan) -> pd.DataFrame:
    """For each test identity of `evaluation`, the most alike person of `pretrain` (any split,
    distractors included): how many of the `ATTRIBUTES` look alike, and which do not.

    Attributes, not exact values: two independently drawn people never share every float, so
    an exact comparison could not fail; looking alike in every attribute is what would make a
    pretraining person a test person for the network.
    """
    test_pids = list(evaluation.test_pids)
    test = [evaluation.identities[pid] for pid in test_pids]
    keys = list(pretrain.identities)
    others = [pretrain.identities[key] for key in keys]
    alike = np.stack([_alike(name, test, others) for name in ATTRIBUTES])  # (attributes, test, pretraining)
    counts = alike.sum(0)
    nearest = counts.argmax(1)
    return pd.DataFrame({
        "test id": test_pids,
        "nearest pretraining person": [keys[j] for j in nearest],
        "attributes alike": counts[np.arange(len(test)), nearest],
        "attributes": len(ATTRIBUTES),
        "not alike": [", ".join(name for name, same in zip(ATTRIBUTES, alike[:, i, j]) if not same)
                      for i, j in enumerate(nearest)],
    })


def check_disjoint_identities(pretrain: Plan, evaluation: Plan) -> int:
    """Check that no person of `pretrain` (any split, distractors included) looks like a test
    identity of `evaluation` in every attribute (`nearest_people`).

    Identities are compared by appearance, not by their ids (the ids of two datasets are
    unrelated). Returns the number of pretraining people checked; raises DatasetError naming
    the look-alikes, e.g. when both sets were drawn from the same identity stream and seed.
    """
    nearest = nearest_people(pretrain, evaluation)
    shared = nearest[nearest["attributes alike"] == len(ATTRIBUTES)]
    if len(shared):
        listed = ", ".join(f"{a} ~ test id {b:04d}" for a, b in
                           zip(shared["nearest pretraining person"][:5], shared["test id"][:5]))
        raise DatasetError(
            f"the pretraining set has people who look like {len(shared)} test identities of the evaluation split "
            f"in every attribute ({listed}); draw it from another identity_stream (pretrain uses "
            f"{pretrain.config.identity_stream}, evaluation {evaluation.config.identity_stream})"
        )
    return len(pretrain.identities)
