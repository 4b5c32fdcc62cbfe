"""What each notebook trains, declared once, and the settings its parameters give every row.

A notebook names the rows it trains by a short key of `NOTEBOOK_RUNS` (``"table4"``,
``"figure5"``, ...) in its training cell, ``registry.run_notebook("table4", globals())``, and
never by its file name: the notebook names and their order live in ``_toc.yml`` only. The
book build reads that same call from the notebook's code (`mmhpn.bookbuild.progress`) and
plans the console's run counts with `notebook_run_dirs`, which walks the same rows through
the same planner (`mmhpn.paper.planner`), so the plan and the notebook cannot disagree.

A key's rows come from the notebook's parameters (e.g. Table 6's `poolings`, Table 7's
`gammas` and `single_stripe_rules`, the layouts of Tables 4-5 and the layout page, Figure 5's
`stripe_counts`); the fields every row shares (`notebook_common`) from its dataset, data
folder, device, epochs and overrides.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from mmhpn.config import make_config
from mmhpn.errors import ConfigError
from mmhpn.paper.numbers import dataset_label
from mmhpn.paper.planner import planned_run_dirs, run_rows
from mmhpn.paper.tables import BASELINE, MMHPN_PSL, Row, figure5_rows, table_rows

RUNS_DIR = "runs"  # the notebooks' default run cache (their `runs_dir` parameter)


@dataclass(frozen=True)
class NotebookRuns:
    """What a notebook trains: its rows, from its parameters, and whether it trains only the
    first of its seeds (a figure drawn from one run)."""

    rows: Callable[[Mapping[str, Any]], tuple[Row, ...]]
    first_seed_only: bool = False


NOTEBOOK_PSL_ROW = Row("MMHPN+PSL", MMHPN_PSL)
NOTEBOOK_RUNS: dict[str, NotebookRuns] = {
    "training": NotebookRuns(lambda p: (NOTEBOOK_PSL_ROW,)),
    "table4": NotebookRuns(lambda p: table_rows("table4", layouts=p.get("layouts"))),
    "table5": NotebookRuns(lambda p: table_rows("table5", layouts=p.get("layouts"))),
    "table6": NotebookRuns(lambda p: table_rows("table6", poolings=p.get("poolings"))),
    "table7": NotebookRuns(lambda p: table_rows("table7", gammas=p.get("gammas"),
                                                single_stripe_rules=p.get("single_stripe_rules"))),
    "layouts": NotebookRuns(lambda p: table_rows("layouts", layouts=p.get("layouts"))),
    "figure5": NotebookRuns(lambda p: figure5_rows(p["stripe_counts"])),
    "figure3": NotebookRuns(lambda p: (Row("global (baseline)", BASELINE), figure5_rows([p["part_stripes"]])[0]),
                            first_seed_only=True),
    "figure4": NotebookRuns(lambda p: (NOTEBOOK_PSL_ROW,), first_seed_only=True),
    "tables1-3": NotebookRuns(lambda p: (NOTEBOOK_PSL_ROW,)),
}


def notebook_rows(key: str, params: Mapping[str, Any]) -> tuple[tuple[Row, ...], list[int]]:
    """The rows a notebook training `key` trains with parameters `params`, and the seeds it uses."""
    if key not in NOTEBOOK_RUNS:
        raise ConfigError(f"unknown notebook runs key {key!r}; expected one of {list(NOTEBOOK_RUNS)}")
    entry = NOTEBOOK_RUNS[key]
    seeds = [int(s) for s in params.get("seeds", [])]
    return tuple(entry.rows(params)), seeds[:1] if entry.first_seed_only else seeds


def notebook_common(params: Mapping[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields a notebook's parameters set for every row it trains.

    `common_overrides` of its dataset/data_root/device/epochs/overrides, then its own
    input size where it declares one (Figure 5's `height`/`width` win over `overrides`)
    and its `eval_every` (training curves; not hashed).
    """
    extra = {key: params[key] for key in ("height", "width") if key in params}
    common = common_overrides(params.get("dataset", ""), params.get("data_root", ""), params["device"],
                              params.get("epochs", 0),
                              {**params.get("overrides", {}), **extra})
    if "eval_every" in params:
        common["eval_every"] = int(params["eval_every"])
    return common


def run_notebook(key: str, params: Mapping[str, Any], progress: bool = False) -> pd.DataFrame:
    """Train or load the rows `key` names (`NOTEBOOK_RUNS`) with the notebook's parameters
    `params` (a notebook passes ``globals()``): `mmhpn.paper.planner.run_rows`' frame."""
    rows, seeds = notebook_rows(key, params)
    return run_rows(rows, params["profile"], seeds, runs_dir=params.get("runs_dir", RUNS_DIR), progress=progress,
                    **notebook_common(params))


def notebook_run_dirs(key: str, params: Mapping[str, Any], root: Path) -> list[Path]:
    """The run folders `run_notebook(key, params)` trains or loads when run in `root` (the
    pretraining run first), without training anything: what the book build plans."""
    rows, seeds = notebook_rows(key, params)
    return planned_run_dirs(rows, params["profile"], seeds, Path(root) / params.get("runs_dir", RUNS_DIR),
                            **notebook_common(params))


def data_fields(dataset: str = "", data_root: str = "") -> dict[str, Any]:
    """The TrainConfig data fields a notebook's `dataset`/`data_root` set; empty leaves the
    training profile's own (so a profile's data folder is written in `mmhpn.config` only)."""
    fields: dict[str, Any] = {}
    if dataset:
        fields["dataset"] = dataset
    if data_root:
        fields["data_root"] = data_root
    return fields


def common_overrides(dataset: str, data_root: str, device: str, epochs: int = 0,
                     overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The TrainConfig fields a notebook's parameters set for every row (epochs 0 = profile's;
    an empty dataset or data_root = the profile's).

    `overrides` are further TrainConfig fields (e.g. ``{"height": 128}``), checked by
    `mmhpn.config.make_config` like any other field.
    """
    common: dict[str, Any] = {**data_fields(dataset, data_root), "device": device}
    if epochs:
        common["epochs"] = int(epochs)
    common.update(overrides or {})
    return common


def measured_label(profile: str, **common: Any) -> str:
    """`dataset_label` of the configuration these parameters produce."""
    config = make_config(profile, **common)
    return dataset_label(config.dataset, config.synthetic_preset if config.dataset == "synthetic" else None)


CONFIG_FIELDS = ("dataset", "synthetic_preset", "backbone", "pretrained", "height", "width", "batch_size",
                 "epochs", "lr", "lr_decay_epochs", "momentum", "weight_decay", "precision", "device")


def config_table(profile: str, **common: Any) -> pd.DataFrame:
    """The training settings every row shares (profile + notebook parameters), one per line."""
    config = make_config(profile, **common)
    values = {name: getattr(config, name) for name in CONFIG_FIELDS}
    if config.dataset != "synthetic":
        values.pop("synthetic_preset")
    return pd.DataFrame({"value": [str(v) for v in values.values()]}, index=list(values))


@dataclass(frozen=True)
class NotebookSetup:
    """What a training notebook's first cell sets up from its parameters (`notebook_setup`)."""

    profile: str
    seeds: list[int]
    common: dict[str, Any]
    dataset: str  # the dataset trained on (the profile's where the notebook's parameter is empty)
    measured_on: str
    config_table: pd.DataFrame


def notebook_setup(params: Mapping[str, Any]) -> NotebookSetup:
    """The shared settings of a training notebook (it passes ``globals()``): prints one line
    saying what is measured on what, and returns the settings with their table."""
    pd.set_option("display.width", 200)
    common = notebook_common(params)
    profile = params["profile"]
    measured_on = measured_label(profile, **common)
    seeds = [int(s) for s in params.get("seeds", [])]
    print(f"measured on: {measured_on}; training profile {profile!r}; seeds {seeds}")
    dataset = make_config(profile, **common).dataset
    return NotebookSetup(profile, seeds, common, dataset, measured_on, config_table(profile, **common).T)
