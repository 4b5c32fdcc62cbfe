"""The one run planner: the walk over a notebook's rows x seeds that builds each training's
configuration, used both to train them (`run_rows`, what the notebooks run) and to name their
run folders before anything trains (`planned_run_dirs`, what `mmhpn book` counts and times).

`plan_rows` is that walk. For every row and seed it builds the `TrainConfig`
(`row_config`: profile, then the notebook's common fields, then the row's) and the run folder
the run cache keeps it in (`mmhpn.runs.run_dir_for`). A row whose configuration comes from
another run (Table 7's control takes its scale weights from the PSL run of its seed,
`psl_scale_weights`) needs that run's history: the trainer has just trained it (it comes
earlier in the walk); the plan reads it from the run folder when that run has finished, and
otherwise plans a placeholder folder named after it (one run to train, no hash yet).
"""
from __future__ import annotations

import re

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from mmhpn import checkpoints, runs
from mmhpn.config import TrainConfig, make_config, pretraining_config, slug
from mmhpn.data import data_fields
from mmhpn.errors import ConfigError
from mmhpn.paper.tables import Row, get_table
from mmhpn.training import load_training_data

PSL_FACTOR_PREFIX = "psl_factor_"  # history.csv columns written by the training loop for the PSL


def psl_scale_weights(history: pd.DataFrame, decimals: int = 6) -> tuple[float, ...]:
    """Each scale's mean PSL modulating factor over a whole training run, in scale order.

    `history` is a PSL run's per-epoch history: ``psl_factor_<i>`` is the image-weighted
    mean over that epoch's steps of scale i's batch-mean factor, ``images`` the epoch's
    training images. The result is the image-weighted mean over epochs, i.e. the mean over
    every training step weighted by its batch size: the factor averaged over all the
    (image, stripe) pairs the run trained on. Rounded to `decimals` so the constants read
    well in a config file (they are hashed as written).
    """
    columns = sorted((c for c in history.columns if re.fullmatch(PSL_FACTOR_PREFIX + r"\d+", str(c))),
                     key=lambda c: int(str(c)[len(PSL_FACTOR_PREFIX):]))  # not the spreads, psl_factor_sd_<i>
    if not columns:
        raise ConfigError("the history has no psl_factor_<i> columns: it is not a PSL run's, or the run was "
                          "trained before the training loop logged the PSL factors (delete it to retrain)")
    if "images" not in history.columns or len(history) == 0:
        raise ConfigError("the history needs an 'images' column and at least one epoch to weight the PSL factors")
    images = history["images"].astype(float)
    factors = history[columns].astype(float)
    if factors.isna().any().any() or (images <= 0).any():
        raise ConfigError("the PSL factors of some epoch are missing or the epoch saw no images")
    means = (factors.mul(images, axis=0).sum() / images.sum()).tolist()
    return tuple(round(float(m), decimals) for m in means)


def row_config(row: Row, profile: str, seed: int, scale_weights: Sequence[float] | None = None,
               **common: Any) -> TrainConfig:
    """The TrainConfig of one row and seed: profile, then the caller's common fields, then the row's.

    A row with `Row.scale_weights_from` needs `scale_weights` (see `psl_scale_weights`).
    """
    overrides = {**common, **row.overrides, "seed": int(seed)}
    if row.scale_weights_from is not None:
        if scale_weights is None:
            raise ConfigError(f"row {row.label!r} takes its scale weights from row {row.scale_weights_from!r}: "
                              "pass scale_weights (psl_scale_weights of that row's run, same seed)")
        overrides["scale_weights"] = tuple(float(w) for w in scale_weights)
    # A row named by its preset means that preset's layout, even if the profile sets a layout.
    if "preset" in row.overrides and "layout" not in row.overrides:
        overrides["layout"] = None
    return make_config(profile, **overrides)


@dataclass(frozen=True)
class PlannedRun:
    """One (row, seed) of a walk: its configuration and the run folder that holds its run.

    `config` is None for a row that waits for the run its scale weights come from
    (`Row.scale_weights_from`) to finish; `run_dir` is then a placeholder named after that run.
    """

    row: Row
    seed: int
    config: TrainConfig | None
    run_dir: Path


def plan_rows(rows: Sequence[Row], profile: str, seeds: Sequence[int], runs_dir: str | Path,
              history_of: Callable[[PlannedRun], pd.DataFrame | None], **common: Any) -> Iterator[PlannedRun]:
    """Walk `rows` x `seeds` in that order, yielding each `PlannedRun` (see the module's docstring).

    `history_of(source)` gives the per-epoch history of an earlier planned run that a later
    row takes its scale weights from, or None when that run has not finished. The walk is
    lazy: a trainer trains each run before asking for the next one.
    """
    if not seeds:
        raise ConfigError("seeds must name at least one seed")
    planned: dict[tuple[str, int], PlannedRun] = {}
    for row in rows:
        for seed in (int(s) for s in seeds):
            weights = None
            if row.scale_weights_from is not None:
                source = planned.get((row.scale_weights_from, seed))
                if source is None:
                    raise ConfigError(f"row {row.label!r} needs the run of row {row.scale_weights_from!r} "
                                      f"(seed {seed}) first: put that row earlier in the same call")
                history = history_of(source) if source.config is not None else None
                if history is None:
                    waiting = source.run_dir.with_name(f"{source.run_dir.name}.then-{slug(row.label)}")
                    planned[(row.label, seed)] = item = PlannedRun(row, seed, None, waiting)
                    yield item
                    continue
                weights = psl_scale_weights(history)
            config = row_config(row, profile, seed, scale_weights=weights, **common)
            planned[(row.label, seed)] = item = PlannedRun(row, seed, config, runs.run_dir_for(config, runs_dir))
            yield item


def planned_names(rows: Sequence[Row], profile: str, seeds: Sequence[int], **common: Any) -> list[str]:
    """The run folder names (name-hash) `run_rows` trains or loads with these arguments, computed
    without reading any run: a row whose scale weights come from another row's run is named
    after that run (`plan_rows`' placeholder), since its weights are known only once that run
    has trained. What a study records to name the runs a line came from (`studies.runs_digest`)."""
    return [item.run_dir.name for item in plan_rows(rows, profile, seeds, ".", lambda source: None, **common)]


def run_rows(rows: Sequence[Row], profile: str, seeds: Sequence[int], runs_dir: str = "runs",
             progress: bool = False, **common: Any) -> pd.DataFrame:
    """Train or load every (row, seed) of `plan_rows`; one line per run with its metrics, in row order.

    `common` are TrainConfig fields applied to every row (dataset, data_root, device,
    epochs, ...). The returned frame has columns row, seed, rank1, mAP (percent), the
    protocol, whether the run was trained now or came from the cache, and the run folder.
    """
    finished: dict[Path, Any] = {}
    datasets: dict[tuple, Any] = {}  # read once for all rows on the same data
    records = []
    for item in plan_rows(rows, profile, seeds, runs_dir, lambda source: finished[source.run_dir].history, **common):
        config = item.config
        key = data_fields(config)
        if key not in datasets:
            datasets[key] = load_training_data(config)
        run = runs.train_or_load(config, runs_dir=runs_dir, progress=progress, dataset=datasets[key])
        finished[item.run_dir] = run
        records.append({
            "row": item.row.label,
            "seed": item.seed,
            "rank1": 100.0 * float(run.metrics["rank1"]),
            "mAP": 100.0 * float(run.metrics["mAP"]),
            "protocol": run.metrics.get("protocol", ""),
            "trained_now": bool(run.trained_now),
            "train_s": float(run.history["seconds"].sum()) if "seconds" in run.history else np.nan,
            "run": str(run.path),
            "run_hash": config.hash,
            # the replicate's own pretraining run (its folder name: name and hash), empty without one
            "pretraining_run": (runs.run_dir_for(pretraining_config(config.init_from), ".").name
                                if config.init_from is not None else ""),
            # only rows trained with constant scale weights (the PSL control) get this column
            **({"scale_weights": ", ".join(f"{w:.3f}" for w in config.scale_weights)}
               if config.scale_weights else {}),
        })
    return pd.DataFrame.from_records(records)


def run_table(key: str, profile: str, seeds: Sequence[int], runs_dir: str = "runs",
              progress: bool = False, **common: Any) -> pd.DataFrame:
    """`run_rows` for the rows of a paper table (`mmhpn.paper.tables.TABLES`)."""
    return run_rows(get_table(key).rows, profile, seeds, runs_dir=runs_dir, progress=progress, **common)


def planned_run_dirs(rows: Sequence[Row], profile: str, seeds: Sequence[int], runs_dir: str | Path,
                     **common: Any) -> list[Path]:
    """The run folders `run_rows` would train or load with these arguments, one per (row, seed),
    after the pretraining run the rows fine-tune from (``init_from``), which trains first.

    Nothing is trained or written; finished runs are the ones `run_rows` will load.
    """
    def finished_history(source: PlannedRun) -> pd.DataFrame | None:
        if not checkpoints.is_finished(source.run_dir):
            return None
        return pd.read_csv(source.run_dir / checkpoints.HISTORY_FILE)

    items = list(plan_rows(rows, profile, seeds, runs_dir, finished_history, **common))
    pretrainings = dict.fromkeys(runs.run_dir_for(pretraining_config(item.config.init_from),
                                                  runs.pretraining_dir(runs_dir))
                                 for item in items if item.config is not None and item.config.init_from is not None)
    return [*pretrainings, *(item.run_dir for item in items)]
