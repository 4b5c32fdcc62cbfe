"""The book's profiles: a training profile of `mmhpn.config.PROFILES` plus what only the book
needs.

`smoke` (minutes, for the test suite), `demo` (the default: synthetic data, CPU, three seeds,
fine-tuned from one pretraining run) and `paper` (the paper's schedule, for users with the
real datasets and a GPU). A profile names no notebook: its `parameters` go to every notebook
that declares them (papermill passes only those).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from mmhpn.config import make_config
from mmhpn.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    """A book profile: a training profile of `mmhpn.config.PROFILES` (same name; its dataset,
    data folder and synthetic preset are read from there, `_training_data`) plus what only the
    book needs: the notebooks' seeds, device and other values (`parameters`), each passed to
    every notebook that declares a parameter of that name.
    """

    name: str
    dataset: str
    data_root: str
    synthetic_preset: str | None
    parameters: dict[str, Any] = field(default_factory=dict)

    def notebook_parameters(self) -> dict[str, Any]:
        """What the build passes the notebooks (each gets the ones its parameters cell declares)."""
        return {"dataset": self.dataset, "data_root": self.data_root, "profile": self.name, **self.parameters}


def _training_data(name: str) -> dict[str, Any]:
    """The dataset, data folder and synthetic preset of training profile `name`
    (`mmhpn.config.PROFILES`): where a book profile's data comes from, written only there."""
    config = make_config(name)
    synthetic = config.dataset == "synthetic"
    return {"dataset": config.dataset, "data_root": config.data_root,
            "synthetic_preset": config.synthetic_preset if synthetic else None}


PROFILES: dict[str, Profile] = {
    # A few minutes on 2 CPU cores: the demo's code paths (pretraining, the shared trunk
    # cache, fine-tuning, intervals over seeds) on tiny settings; two seeds, the fewest an
    # interval can be computed from.
    "smoke": Profile(
        name="smoke",
        **_training_data("smoke"),
        parameters={"seeds": [0, 1], "device": "cpu", "overrides": {}, "eval_every": 0},
    ),
    # `make book`'s default on 2 CPU cores: every row over three seeds, fine-tuned from one
    # pretraining run (the demo training profile); the measured time is on the compute-cost page.
    "demo": Profile(
        name="demo",
        **_training_data("demo"),
        parameters={"seeds": [0, 1, 2], "device": "cpu", "overrides": {}, "eval_every": 1},
    ),
    # The paper's schedule on a real dataset (a GPU and hours per training).
    "paper": Profile(
        name="paper",
        **_training_data("paper"),
        parameters={"seeds": [0, 1, 2], "device": "cuda"},
    ),
}


def get_profile(name: str, dataset: str | None = None, data_root: str | None = None,
                device: str | None = None, seeds: list[int] | None = None) -> Profile:
    """The named profile with the command line's overrides applied."""
    if name not in PROFILES:
        raise ConfigError(f"unknown book profile {name!r}; expected one of {sorted(PROFILES)}")
    profile = PROFILES[name]
    params = dict(profile.parameters)
    if device is not None:
        params["device"] = device
    if seeds is not None:
        if not seeds:
            raise ConfigError("seeds must name at least one seed")
        params["seeds"] = list(seeds)
    changes: dict[str, Any] = {"parameters": params}
    if dataset is not None:
        changes["dataset"] = dataset
        if dataset != "synthetic":
            changes["synthetic_preset"] = None
            if data_root is None:
                changes["data_root"] = f"data/{dataset}"
    if data_root is not None:
        changes["data_root"] = data_root
    return replace(profile, **changes)
