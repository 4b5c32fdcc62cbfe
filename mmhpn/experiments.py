"""The library side of the paper's tables: which models each table trains, and its summary.

Each ablation table (Tables 4-7) and Figure 5 is a list of rows, in the paper's row order;
a row is a label and the `mmhpn.config.TrainConfig` fields it changes. `run_table` trains
(or loads) every row for every seed through `mmhpn.runs.train_or_load`, so a model shared
by several tables is trained once: identical configurations hash identically. For that to
hold, a shared row is spelled the same way everywhere (see `BASELINE`, `MMHPN_GAP`,
`MMHPN_APS`, `MMHPN_PSL`).

Decisions that the rows encode (the book's reproduction notes explain them):

* Tables 4 and 5 use GAP and the softmax loss: their last row equals Table 6's GAP row in
  the paper (93.6 / 82.3 on Market-1501), so the ablations were run before APS and PSL.
* Table 6 varies the pooling of the full layout with the softmax loss; its APS row is
  Table 7's softmax row.
* Table 5's rows 1, 1+2 and 1+2+4 grow the `mmhpn` layout from the global branch outward,
  each new scale at the tap the preset gives it: 1 = ``conv5_3: 1`` (the baseline),
  1+2 adds ``conv5_2: 2``, 1+2+4 adds ``conv5_1: 4``, 1+2+4+8 adds ``conv5_1: 8``
  (= the ``mmhpn`` preset, ``conv5_1: 8, 4 | conv5_2: 2 | conv5_3: 1``).
* Figure 5 pools 1, 2, 4, 8 or 12 stripes from the final layer only (a single-scale
  MHPM, GAP, softmax); its 1-stripe point is the baseline's configuration. Its notebook
  trains every point at 192x64 (12 stripes need 12 feature-map rows), so at another
  profile input size that point is a training of its own, not Table 4's baseline run.
* Table 7 compares the softmax loss with the PSL (paper gammas, single-stripe scales
  trained with the plain softmax loss, ``single_stripe="ce"``) and shows the other two
  single-stripe rules: ``literal`` (the global stripe gets no loss) and ``focal``. A control
  row not in the paper, ``weighted_softmax``, multiplies each scale's softmax loss by the
  constant mean PSL factor of that scale measured over the PSL run of the same seed
  (`psl_scale_weights`); `run_rows` trains the PSL row first and derives the control from it.
* The "layouts" table (not in the paper) trains four placements of the same 15 stripes
  with Table 6's APS + softmax recipe: the text's reading (the preset, ``8, 4 | 2 | 1``),
  ``8 | 4, 2 | 1``, the previous preset ``8 | 4 | 2, 1`` and all four at conv5_3 (Table 4's
  MHPM layout, here with APS). Its first row is Table 6's APS row (one training). The
  paper claims nothing here; the table's `questions` are ours.

What each notebook trains is declared once, in `NOTEBOOK_RUNS` (notebook name -> the rows
its parameters select, e.g. Table 6's `poolings`, Table 7's `gammas` and
`single_stripe_rules`, the layouts of Tables 4-5 and the layout page, via `table_rows`): the
notebook's training cell calls `run_notebook` with its own name, and `mmhpn.book` plans the
console's run counts from the same entry. The notebooks' other steps are single calls here
too (`notebook_setup`, `training_histories`, `aps_weights`, `multiple_query_results`,
`comparison_tables`, `attention_figure`, `ranking_figure_of_run`, `figure5_points`).

`summarize` turns the per-seed metrics into mean +/- std and puts the paper's numbers
beside them (from `paper_table`, transcribed in ``mmhpn/resources/paper_tables.csv``);
the measured columns are labelled with the dataset they were measured on, never with a
paper dataset they were not measured on. `check_table` checks the paper's ordering claims
with a confidence interval over seeds and a verdict (`mmhpn.claims`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from mmhpn import claims
from mmhpn.errors import ConfigError

PAPER_DATASETS = {"market1501": "Market-1501", "dukemtmc-reid": "DukeMTMC-reID", "cuhk03-np": "CUHK03"}

# Shared rows, spelled once so that every table hashes them identically.
BASELINE: dict[str, Any] = {"preset": "baseline", "pooling": "avg", "loss": "softmax"}
MMHPN_GAP: dict[str, Any] = {"preset": "mmhpn", "pooling": "avg", "loss": "softmax"}
MMHPN_GMP: dict[str, Any] = {"preset": "mmhpn", "pooling": "max", "loss": "softmax"}
MMHPN_APS: dict[str, Any] = {"preset": "mmhpn", "pooling": "aps", "loss": "softmax"}
MMHPN_PSL: dict[str, Any] = {"preset": "mmhpn", "pooling": "aps", "loss": "psl", "single_stripe": "ce"}
# The control's fields; its scale_weights come from the PSL run (`Row.scale_weights_from`).
MMHPN_PSL_CONTROL: dict[str, Any] = {"preset": "mmhpn", "pooling": "aps", "loss": "weighted_softmax"}
PSL_CONTROL_LABEL = "MMHPN+softmax × mean PSL factors (control, not in the paper)"
OURS = "not in the paper (ours)"  # the source of a question we ask, not a claim of the paper


@dataclass(frozen=True)
class Row:
    """One row of a table: its label as in the paper and the TrainConfig fields it sets.

    `scale_weights_from` names an earlier PSL row of the same table: this row's
    ``scale_weights`` are that row's mean PSL factors, measured per seed on the finished
    PSL run (`psl_scale_weights`). Such a row can only be run after that one.
    """

    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    scale_weights_from: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """A paper table: key in the paper-number file, caption and rows in the paper's order."""

    key: str
    caption: str
    rows: tuple[Row, ...]
    # (better, worse) row-label pairs whose order the paper claims; checked per metric where
    # the paper's own numbers show it (`paper_claims`).
    claims: tuple[tuple[str, str], ...] = ()
    # (better, worse) pairs *we* ask about, not claimed by the paper (same check as claims).
    questions: tuple[tuple[str, str], ...] = ()
    # False for our own tables: no paper numbers, no paper claims (summarize with key=None).
    in_paper: bool = True

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise ConfigError(f"{self.key} has no row {label!r}; rows: {[r.label for r in self.rows]}")


TABLES: dict[str, TableSpec] = {
    "table4": TableSpec(
        key="table4",
        caption="Table 4: effectiveness of the multi-level (MSM) and multi-scale (MHPM) modules",
        rows=(
            Row("Baseline", BASELINE),
            Row("Baseline+MSM", {"preset": "msm", "pooling": "avg", "loss": "softmax"}),
            Row("Baseline+MHPM", {"preset": "mhpm", "pooling": "avg", "loss": "softmax"}),
            Row("Baseline+MMHPN", MMHPN_GAP),
        ),
        claims=(("Baseline+MSM", "Baseline"), ("Baseline+MHPM", "Baseline+MSM"),
                ("Baseline+MMHPN", "Baseline+MHPM")),
    ),
    "table5": TableSpec(
        key="table5",
        caption="Table 5: effectiveness of the number of body parts (scales)",
        rows=(
            Row("1", BASELINE),
            Row("1+2", {"preset": "mmhpn", "layout": {"conv5_2": (2,), "conv5_3": (1,)},
                        "pooling": "avg", "loss": "softmax"}),
            Row("1+2+4", {"preset": "mmhpn", "layout": {"conv5_1": (4,), "conv5_2": (2,), "conv5_3": (1,)},
                          "pooling": "avg", "loss": "softmax"}),
            Row("1+2+4+8", MMHPN_GAP),
        ),
        claims=(("1+2", "1"), ("1+2+4", "1+2"), ("1+2+4+8", "1+2+4")),
    ),
    "table6": TableSpec(
        key="table6",
        caption="Table 6: effectiveness of the pooling strategy (GAP, GMP, APS)",
        rows=(
            Row("MMHPN+GAP", MMHPN_GAP),
            Row("MMHPN+GMP", MMHPN_GMP),
            Row("MMHPN+APS", MMHPN_APS),
        ),
        claims=(("MMHPN+APS", "MMHPN+GAP"), ("MMHPN+APS", "MMHPN+GMP")),
    ),
    "table7": TableSpec(
        key="table7",
        caption="Table 7: softmax loss vs Part Sensitive Loss (and the PSL's single-stripe rules)",
        rows=(
            Row("MMHPN+softmax", MMHPN_APS),
            Row("MMHPN+PSL", MMHPN_PSL),
            Row("MMHPN+PSL (literal: global stripe untrained)",
                {"preset": "mmhpn", "pooling": "aps", "loss": "psl", "single_stripe": "literal"}),
            Row("MMHPN+PSL (focal on single stripes)",
                {"preset": "mmhpn", "pooling": "aps", "loss": "psl", "single_stripe": "focal"}),
            Row(PSL_CONTROL_LABEL, MMHPN_PSL_CONTROL, scale_weights_from="MMHPN+PSL"),
        ),
        claims=(("MMHPN+PSL", "MMHPN+softmax"),),
        # Is the PSL more than a constant re-weighting of the scales? (ours, not the paper's)
        questions=(("MMHPN+PSL", PSL_CONTROL_LABEL),),
    ),
    # Not in the paper: which tap carries which scale. Same 15 stripes, same recipe as
    # Table 6's APS row (APS + softmax: the pooling the paper's model uses, without the PSL,
    # whose gammas are tied to the scale order, not to the taps). The first row *is* that
    # row, so the run cache trains it once.
    "layouts": TableSpec(
        key="layouts",
        caption="Not in the paper: which tap carries which scale (the same 15 stripes, APS + softmax)",
        in_paper=False,
        rows=(
            Row("8, 4 | 2 | 1 (the text's reading)", MMHPN_APS),
            Row("8 | 4, 2 | 1", {"preset": "mmhpn", "layout": {"conv5_1": (8,), "conv5_2": (4, 2), "conv5_3": (1,)},
                                 "pooling": "aps", "loss": "softmax"}),
            Row("8 | 4 | 2, 1 (the previous preset)",
                {"preset": "mmhpn", "layout": {"conv5_1": (8,), "conv5_2": (4,), "conv5_3": (2, 1)},
                 "pooling": "aps", "loss": "softmax"}),
            Row("all at conv5_3 (MHPM)", {"preset": "mhpm", "pooling": "aps", "loss": "softmax"}),
        ),
        # The paper claims nothing here; our questions, "does the text's reading beat this
        # alternative?", are checked with the same machinery as the paper's claims.
        questions=(("8, 4 | 2 | 1 (the text's reading)", "8 | 4, 2 | 1"),
                   ("8, 4 | 2 | 1 (the text's reading)", "8 | 4 | 2, 1 (the previous preset)"),
                   ("8, 4 | 2 | 1 (the text's reading)", "all at conv5_3 (MHPM)")),
    ),
}

FIGURE5_STRIPES = (1, 2, 4, 8, 12)
# Sec. 4.4.2 on Figure 5 (Market-1501): "as body scale increases, the mAP and Rank1 accuracy
# generally improve", and 8 stripes beat 1 by 9.6 mAP / 6.9 Rank-1. Of 12 stripes it says
# only that they bring "no obvious improvement": not an ordering, so not checked.
FIGURE5_CLAIMS = (("2", "1"), ("4", "2"), ("8", "4"), ("8", "1"))
FIGURE5_SOURCE = "paper text, Sec. 4.4.2: Market-1501"


def figure5_rows(stripe_counts: Iterable[int] = FIGURE5_STRIPES) -> tuple[Row, ...]:
    """Figure 5's points: n stripes pooled from conv5_3 only (GAP, softmax); n = 1 is the baseline."""
    rows = []
    for count in stripe_counts:
        if count == 1:
            rows.append(Row("1", BASELINE))
        else:
            rows.append(Row(str(count), {"preset": "baseline", "layout": {"conv5_3": (int(count),)},
                                         "pooling": "avg", "loss": "softmax"}))
    return tuple(rows)


def row_layout(row: Row) -> dict[str, tuple[int, ...]]:
    """The {tap: stripe counts} a row trains: its own layout, else its preset's."""
    from mmhpn.model import PRESETS

    layout = row.overrides.get("layout")
    if layout is None:
        return dict(PRESETS[row.overrides.get("preset", "mmhpn")])
    return {tap: tuple(counts) if isinstance(counts, (list, tuple)) else (counts,) for tap, counts in layout.items()}


def body_scale_results(runs: Sequence) -> pd.DataFrame:
    """Figure 5's input from trained runs (`mmhpn.runs.Run`): columns stripes, seed, rank1, mAP.

    Every run must pool a single scale at the final layer (``layout={"conv5_3": (P,)}`` or
    the ``baseline`` preset); anything else is an error rather than a mislabelled point.
    """
    from mmhpn.model import PRESETS, TAPS, parse_layout

    rows = []
    for run in runs:
        config = run.config
        layout = config.layout if config.layout is not None else PRESETS.get(config.preset)
        if layout is None:
            raise ConfigError(f"run {getattr(run, 'path', run)} has unknown preset {config.preset!r} and no layout")
        scales = parse_layout(layout)
        if len(scales) != 1 or scales[0].tap != TAPS[-1]:
            raise ConfigError(f"run {getattr(run, 'path', run)} pools {[s.label for s in scales]}; a body-scale run "
                              f"pools one scale at the final layer, e.g. layout={{'{TAPS[-1]}': (4,)}}")
        missing = [key for key in ("rank1", "mAP") if key not in run.metrics]
        if missing:
            raise ConfigError(f"run {getattr(run, 'path', run)} has no {missing} in its metrics")
        rows.append({"stripes": scales[0].stripes, "seed": int(config.seed),
                     "rank1": float(run.metrics["rank1"]), "mAP": float(run.metrics["mAP"])})
    if not rows:
        raise ConfigError("runs is empty; expected the trained body-scale runs")
    return pd.DataFrame(rows, columns=["stripes", "seed", "rank1", "mAP"])


def get_table(key: str) -> TableSpec:
    if key not in TABLES:
        raise ConfigError(f"unknown table {key!r}; known tables: {sorted(TABLES)}")
    return TABLES[key]


# ---------------------------------------------------------------------------------------
# training


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
    columns = sorted((c for c in history.columns if str(c).startswith(PSL_FACTOR_PREFIX)),
                     key=lambda c: int(str(c)[len(PSL_FACTOR_PREFIX):]))
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


def row_config(row: Row, profile: str, seed: int, scale_weights: Sequence[float] | None = None, **common: Any):
    """The TrainConfig of one row and seed: profile, then the caller's common fields, then the row's.

    A row with `Row.scale_weights_from` needs `scale_weights` (see `psl_scale_weights`).
    """
    from mmhpn.config import make_config

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


def run_rows(rows: Sequence[Row], profile: str, seeds: Sequence[int], runs_dir: str = "runs",
             progress: bool = False, **common: Any) -> pd.DataFrame:
    """Train or load every (row, seed); one line per run with its metrics, in row order.

    `common` are TrainConfig fields applied to every row (dataset, data_root, device,
    epochs, ...). The returned frame has columns row, seed, rank1, mAP (percent), the
    protocol, whether the run was trained now or came from the cache, and the run folder.
    """
    from mmhpn.runs import train_or_load

    if not seeds:
        raise ConfigError("seeds must name at least one seed")
    records, finished = [], {}
    for row in rows:
        for seed in seeds:
            weights = None
            if row.scale_weights_from is not None:
                source = finished.get((row.scale_weights_from, int(seed)))
                if source is None:
                    raise ConfigError(f"row {row.label!r} needs the run of row {row.scale_weights_from!r} "
                                      f"(seed {seed}) first: put that row earlier in the same call")
                weights = psl_scale_weights(source.history)
            config = row_config(row, profile, seed, scale_weights=weights, **common)
            run = train_or_load(config, runs_dir=runs_dir, progress=progress)
            finished[(row.label, int(seed))] = run
            records.append({
                "row": row.label,
                "seed": int(seed),
                "rank1": 100.0 * float(run.metrics["rank1"]),
                "mAP": 100.0 * float(run.metrics["mAP"]),
                "protocol": run.metrics.get("protocol", ""),
                "trained_now": bool(run.trained_now),
                "train_s": float(run.history["seconds"].sum()) if "seconds" in run.history else np.nan,
                "run": str(run.path),
                "run_hash": config.hash,
                # only rows trained with constant scale weights (the PSL control) get this column
                **({"scale_weights": ", ".join(f"{w:.3f}" for w in config.scale_weights)}
                   if config.scale_weights else {}),
            })
    return pd.DataFrame.from_records(records)


def run_table(key: str, profile: str, seeds: Sequence[int], runs_dir: str = "runs",
              progress: bool = False, **common: Any) -> pd.DataFrame:
    """`run_rows` for the rows of a paper table (see `TABLES`)."""
    return run_rows(get_table(key).rows, profile, seeds, runs_dir=runs_dir, progress=progress, **common)


# ---------------------------------------------------------------------------------------
# each table's knobs, as the notebooks expose them

POOLING_ROWS = {"avg": "MMHPN+GAP", "max": "MMHPN+GMP", "aps": "MMHPN+APS"}  # Table 6


def table_rows(key: str, layouts: Mapping[str, Any] | None = None, poolings: Sequence[str] | None = None,
               gammas: Sequence[float] | None = None,
               single_stripe_rules: Sequence[str] | None = None) -> tuple[Row, ...]:
    """The rows of table `key` with the knobs its notebook exposes (None keeps the paper's rows).

    * `layouts` (Tables 4, 5, layouts): ``{row label: {tap: stripe counts}}`` replaces those
      rows' layouts (a row not named keeps its own);
    * `poolings` (Table 6): which of ``avg``, ``max``, ``aps`` to train, in that order;
    * `gammas` (Table 7): the PSL's gammas, one per scale (coarsest last), for every PSL row;
    * `single_stripe_rules` (Table 7): which PSL rows to train, by their single-stripe rule
      (``ce`` the main row, ``literal``, ``focal``); the control needs ``ce``.

    With the default values the rows are exactly `TABLES[key].rows`, so they hash as before.
    """
    rows = list(get_table(key).rows)
    if layouts:
        labels = {row.label for row in rows}
        unknown = sorted(set(layouts) - labels)
        if unknown:
            raise ConfigError(f"layouts names row(s) {unknown} that {key} does not have; rows: {sorted(labels)}")
        rows = [replace(row, overrides={**row.overrides, "layout": layouts[row.label]}) if row.label in layouts
                else row for row in rows]
    if poolings is not None:
        if key != "table6":
            raise ConfigError("poolings is Table 6's knob")
        unknown = [p for p in poolings if p not in POOLING_ROWS]
        if unknown or not poolings:
            raise ConfigError(f"poolings must name some of {list(POOLING_ROWS)}, got {list(poolings)!r}")
        rows = [get_table(key).row(POOLING_ROWS[p]) for p in poolings]
    if gammas is not None or single_stripe_rules is not None:
        if key != "table7":
            raise ConfigError("gammas and single_stripe_rules are Table 7's knobs")
    if gammas is not None:
        rows = [replace(row, overrides={**row.overrides, "gammas": tuple(float(g) for g in gammas)})
                if row.overrides.get("loss") == "psl" else row for row in rows]
    if single_stripe_rules is not None:
        rules = set(single_stripe_rules)
        known = {row.overrides["single_stripe"] for row in rows if row.overrides.get("loss") == "psl"}
        if rules - known:
            raise ConfigError(f"single_stripe_rules must name some of {sorted(known)}, got {list(single_stripe_rules)!r}")
        kept = [row for row in rows if row.overrides.get("loss") != "psl" or row.overrides["single_stripe"] in rules]
        labels = {row.label for row in kept}
        rows = [row for row in kept if row.scale_weights_from is None or row.scale_weights_from in labels]
    return tuple(rows)


# ---------------------------------------------------------------------------------------
# the notebooks' trainings, declared once: the notebooks run them (`run_notebook`) and
# `mmhpn.book` plans the console's run counts from the same entries (`notebook_rows`)

NOTEBOOK_PSL_ROW = Row("MMHPN+PSL", MMHPN_PSL)
# notebook name -> (the table key its claims are checked under, or None; its rows from its
# parameters; whether it trains only the first of its seeds)
NOTEBOOK_RUNS: dict[str, tuple[str | None, Any, bool]] = {
    "02-training": (None, lambda p: (NOTEBOOK_PSL_ROW,), False),
    "03-table-4-branches": ("table4", lambda p: table_rows("table4", layouts=p.get("layouts")), False),
    "04-table-5-body-parts": ("table5", lambda p: table_rows("table5", layouts=p.get("layouts")), False),
    "05-table-6-pooling": ("table6", lambda p: table_rows("table6", poolings=p.get("poolings")), False),
    "06-table-7-psl": ("table7", lambda p: table_rows("table7", gammas=p.get("gammas"),
                                                      single_stripe_rules=p.get("single_stripe_rules")), False),
    "07-layouts": ("layouts", lambda p: table_rows("layouts", layouts=p.get("layouts")), False),
    "08-figure-5-body-scales": ("figure5", lambda p: figure5_rows(p["stripe_counts"]), False),
    "09-figure-3-attention": (None, lambda p: (Row("global (baseline)", BASELINE),
                                               figure5_rows([p["part_stripes"]])[0]), True),
    "10-figure-4-ranking": (None, lambda p: (NOTEBOOK_PSL_ROW,), True),
    "11-tables-1-3-comparison": (None, lambda p: (NOTEBOOK_PSL_ROW,), False),
}


def slug(text: str) -> str:
    """`text` as a file-name part: letters, digits, '-', '_' and '.' kept, the rest '-'."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def notebook_rows(notebook: str, params: Mapping[str, Any]) -> tuple[tuple[Row, ...], list[int]]:
    """The rows notebook `notebook` trains with parameters `params`, and the seeds it uses."""
    if notebook not in NOTEBOOK_RUNS:
        return (), []
    _, rows, first_seed_only = NOTEBOOK_RUNS[notebook]
    seeds = [int(s) for s in params.get("seeds", [])]
    return tuple(rows(params)), seeds[:1] if first_seed_only else seeds


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


def run_notebook(notebook: str, params: Mapping[str, Any], progress: bool = False) -> pd.DataFrame:
    """Train or load what `NOTEBOOK_RUNS` says `notebook` trains, with its parameters `params`
    (a notebook passes ``globals()``): `run_rows`' frame."""
    rows, seeds = notebook_rows(notebook, params)
    if not rows:
        raise ConfigError(f"notebook {notebook!r} trains nothing (not in experiments.NOTEBOOK_RUNS)")
    return run_rows(rows, params["profile"], seeds, runs_dir=params.get("runs_dir", "runs"), progress=progress,
                    **notebook_common(params))


# ---------------------------------------------------------------------------------------
# the paper's numbers and the summary


def paper_numbers() -> pd.DataFrame:
    """All numbers transcribed from the paper's Tables 1-7 (with their source)."""
    with resources.files("mmhpn.resources").joinpath("paper_tables.csv").open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, comment="#")
    return frame


def paper_table(key: str) -> pd.DataFrame:
    """One paper table as rows x (dataset, metric) columns, in the paper's row order."""
    frame = paper_numbers()
    frame = frame[frame["table"] == key]
    if frame.empty:
        raise ConfigError(f"no paper numbers for {key!r} in paper_tables.csv")
    order = list(dict.fromkeys(frame["row"]))
    long = frame.melt(id_vars=["row", "dataset", "setting"], value_vars=["rank1", "mAP"], var_name="metric")
    long["column"] = long["dataset"].map(PAPER_DATASETS).fillna(long["dataset"])
    long.loc[long["setting"] == "multiple_query", "column"] += " (multiple query)"
    wide = long.pivot_table(index="row", columns=["column", "metric"], values="value", sort=False)
    wide = wide.reindex(order)
    # dataset by dataset (in the paper's column order), Rank-1 then mAP within each
    datasets = list(dict.fromkeys(long["column"]))
    wide = wide[[(c, m) for c in datasets for m in ("rank1", "mAP") if (c, m) in wide.columns]]
    wide.columns = pd.MultiIndex.from_tuples([(f"paper: {c}", m.replace("rank1", "Rank-1")) for c, m in wide.columns])
    return wide


def dataset_label(dataset: str, synthetic_preset: str | None = None) -> str:
    """How measured columns are titled: the dataset they were measured on."""
    if dataset == "synthetic":
        return f"synthetic ({synthetic_preset})" if synthetic_preset else "synthetic"
    return PAPER_DATASETS.get(dataset, dataset)


def mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if len(values) == 0:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.1f} (1 seed)"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def summarize(results: pd.DataFrame, key: str | None, measured_on: str,
              row_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean ± std over seeds per row (percent), beside the paper's numbers for table `key`.

    The measured columns are titled ``measured on <measured_on> (n seeds)``. The paper's
    columns keep their own dataset names; rows the paper does not have (e.g. the PSL
    variants) show blanks there.
    """
    order = list(row_order) if row_order is not None else list(dict.fromkeys(results["row"]))
    seeds = results["seed"].nunique()
    grouped = results.groupby("row", sort=False)
    title = f"measured on {measured_on} ({seeds} seed{'s' if seeds != 1 else ''})"
    measured = pd.DataFrame({
        (title, "Rank-1"): grouped["rank1"].apply(mean_std),
        (title, "mAP"): grouped["mAP"].apply(mean_std),
    }).reindex(order)
    measured.columns = pd.MultiIndex.from_tuples(measured.columns)
    if key is None:
        return measured
    paper = paper_table(key).reindex(order)
    summary = pd.concat([measured, paper.astype(object).where(paper.notna(), "")], axis=1)
    summary.index.name = "row"
    return summary


def paper_claims(key: str, pairs: Iterable[tuple[str, str]],
                 metrics: Sequence[str] = claims.METRICS) -> list[claims.Claim]:
    """The `pairs` of paper table `key` that the paper's own numbers show, metric by metric.

    A pair is a claim on a metric for the datasets whose single-query numbers have
    ``better > worse`` (named in the claim's source), and no claim where none does.
    """
    numbers = paper_numbers()
    rows = numbers[(numbers["table"] == key) & (numbers["setting"] == "single_query")]
    if rows.empty:
        raise ConfigError(f"no paper numbers for table {key!r}, so none of its claims can be checked")
    found = []
    for better, worse in pairs:
        for metric in metrics:
            shown = claims.paper_support(rows, better, worse, metric)
            if shown:
                source = "paper: " + ", ".join(PAPER_DATASETS.get(d, d) for d in shown)
                found.append(claims.Claim(key, better, worse, metric, source))
    return found


def table_claims(key: str) -> list[claims.Claim]:
    """The claims checked for a table (`mmhpn.claims`): its paper claims where the paper's
    own numbers show them, metric by metric, and its `questions` (ours, not the paper's)."""
    if key == "figure5":
        return claims.stated_claims("figure5", FIGURE5_CLAIMS, FIGURE5_SOURCE)
    spec = get_table(key)
    found = paper_claims(key, spec.claims) if spec.claims else []
    return found + claims.stated_claims(key, spec.questions, OURS)


def check_table(key: str, results: pd.DataFrame, records_dir: str = "") -> pd.DataFrame:
    """`mmhpn.claims.check_claims` for every claim of table `key` (one line per claim and metric).

    With `records_dir`, the per-seed results and the checked claims are also saved there
    (`mmhpn.claims.write_records`; the book's results.csv and claims.csv are built from them).
    """
    checked = claims.check_claims(results, table_claims(key))
    if records_dir:
        claims.write_records(key, results, checked, records_dir)
    return checked


# ---------------------------------------------------------------------------------------
# small helpers that keep the notebooks thin


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
    from mmhpn.config import make_config

    config = make_config(profile, **common)
    return dataset_label(config.dataset, config.synthetic_preset if config.dataset == "synthetic" else None)


CONFIG_FIELDS = ("dataset", "synthetic_preset", "backbone", "pretrained", "height", "width", "batch_size",
                 "epochs", "lr", "lr_decay_epochs", "momentum", "weight_decay", "precision", "device")


def config_table(profile: str, **common: Any) -> pd.DataFrame:
    """The training settings every row shares (profile + notebook parameters), one per line."""
    from mmhpn.config import make_config

    config = make_config(profile, **common)
    values = {name: getattr(config, name) for name in CONFIG_FIELDS}
    if config.dataset != "synthetic":
        values.pop("synthetic_preset")
    return pd.DataFrame({"value": [str(v) for v in values.values()]}, index=list(values))


PSL_CONTROL_READINGS = {
    "supported": "the PSL beats the control: its gain is more than a re-weighting of the scales",
    "contradicted": "the control beats the PSL: re-weighting the scales explains the PSL's effect here",
    "inconclusive": "the interval contains 0 (or there is none, with one seed): the difference between the PSL "
                    "and the control is within the seed-to-seed noise here",
    "not run": "the comparison could not be made",
}


def psl_control_reading(checked: pd.DataFrame, metric: str = "mAP") -> str:
    """What Table 7's PSL-vs-control question (ours) says, from its checked line on `metric`."""
    line = checked[(checked["better"] == "MMHPN+PSL") & (checked["worse"] == PSL_CONTROL_LABEL)
                   & (checked["metric"] == metric)]
    if line.empty:
        raise ConfigError(f"no checked PSL-vs-control line on {metric}; check table7 with experiments.check_table")
    verdict = line["verdict"].iloc[0]
    return (f"PSL vs its re-weighting control ({claims.METRIC_LABELS.get(metric, metric)}): {verdict}; "
            f"{PSL_CONTROL_READINGS[verdict]}.")


def row_mean(results: pd.DataFrame, row: str, metric: str = "mAP") -> float:
    """Mean over seeds of one row's metric (percent)."""
    values = results.loc[results["row"] == row, metric]
    if values.empty:
        raise ConfigError(f"no results for row {row!r}")
    return float(values.mean())


# ---------------------------------------------------------------------------------------
# what the notebooks show: each a function the notebook calls once


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
    from mmhpn.config import make_config

    dataset = make_config(profile, **common).dataset
    return NotebookSetup(profile, seeds, common, dataset, measured_on, config_table(profile, **common).T)


def training_histories(results: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch histories of `results`' runs, one frame with a ``seed`` column.

    The final evaluation (metrics.json, the test score after the last epoch) is put on each
    run's last epoch, so the curves end at the numbers the tables show.
    """
    from mmhpn.runs import load_run

    histories = []
    for _, line in results.iterrows():
        run = load_run(line["run"])
        history = run.history.copy()
        history["seed"] = line["seed"]
        if "row" in line:
            history["row"] = line["row"]
        for column in ("rank1", "mAP"):
            if column not in history.columns:
                history[column] = np.nan
            history.loc[history.index[-1], column] = run.metrics[column]
        histories.append(history)
    return pd.concat(histories, ignore_index=True)


def pretraining_summary(params: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The pretraining run a notebook's rows fine-tune from (their ``init_from``): a one-line
    summary (data, epochs, seconds, scores on its own test split) and its per-epoch history;
    None when the profile trains from random weights or ImageNet.

    Trained or loaded through the run cache like any run (the rows' trainings have already
    trained it).
    """
    from mmhpn.training import pretraining_run

    rows, seeds = notebook_rows("02-training", params)
    config = row_config(rows[0], params["profile"], seeds[0] if seeds else 0, **notebook_common(params))
    if config.init_from is None:
        return None
    run = pretraining_run(config, params.get("runs_dir", "runs"), progress=False)
    source = run.config
    images = int(run.history["images"].iloc[-1])  # training images per epoch
    summary = pd.DataFrame([{
        "data": f"synthetic {source.synthetic_preset} ({images} training images)", "backbone": source.backbone,
        "epochs": source.epochs, "lr": source.lr, "train_s": round(run.metrics["train_seconds"], 1),
        "rank1 (its test split)": round(100 * run.metrics["rank1"], 1),
        "mAP (its test split)": round(100 * run.metrics["mAP"], 1), "run": run.path.name}])
    history = run.history.copy()
    history["seed"] = source.seed
    return summary, history


# Committed with the repository (next to the package), wherever a book is built.
REGIME_SELECTION = Path(__file__).resolve().parents[1] / "benchmarks" / "reference" / "regime-selection.json"


def regime_selection(path: str | Path = REGIME_SELECTION) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`benchmarks/select_regime.py`'s result: a summary (one line per regime and preset: the
    final validation mAP of each seed, mean, std, the training loss's relative change in the last
    epoch, training seconds per run) and a per-epoch frame
    (validation mAP mean over seeds, training loss) for `mmhpn.figures.validation_curves`."""
    import json

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no regime-selection result at {file}; expected the JSON that "
                          "benchmarks/select_regime.py writes (committed under benchmarks/reference/)")
    record = json.loads(file.read_text(encoding="utf-8"))
    lines, epochs = [], []
    for result in record["results"]:
        decay = ",".join(str(e) for e in result["lr_decay_epochs"]) or "none"
        regime = f"{result['backbone']}, {result['epochs']} epochs (decay after {decay})"
        lines.append({"regime": regime, "preset": result["preset"],
                      "val mAP per seed": ", ".join(f"{v:.1f}" for v in result["val_mAP"]),
                      "val mAP mean": round(result["val_mAP_mean"], 2), "val mAP std": round(result["val_mAP_std"], 2),
                      "loss change in the last epoch (%)": round(
                          100 * (result["loss_per_epoch"][-1] / result["loss_per_epoch"][-2] - 1), 1),
                      "train s per run": round(float(np.mean(result["train_seconds"])), 1)})
        for epoch, (value, loss) in enumerate(zip(result["val_mAP_per_epoch"], result["loss_per_epoch"]), start=1):
            epochs.append({"regime": regime, "preset": result["preset"], "epoch": epoch, "val_mAP": value,
                           "loss": loss})
    summary = pd.DataFrame(lines)
    summary.attrs["recorded"] = record.get("recorded", {})
    return summary, pd.DataFrame(epochs)


def aps_weights(results: pd.DataFrame, row: str = "MMHPN+APS") -> pd.DataFrame:
    """The learned APS weight a = sigmoid(theta) of each scale, one line per seed of `row`."""
    from mmhpn.runs import load_run

    lines = [{"seed": line["seed"], **load_run(line["run"]).load_model().aps_weights()}
             for _, line in results[results["row"] == row].iterrows()]
    if not lines:
        raise ConfigError(f"no run of row {row!r} in these results")
    return pd.DataFrame(lines).set_index("seed")


def multiple_query_results(results: pd.DataFrame) -> pd.DataFrame:
    """Per seed, the multiple-query Rank-1 and mAP (percent) the runs' evaluation recorded
    (columns seed, rank1, mAP; empty where the dataset has no multiple-query protocol)."""
    from mmhpn.runs import load_run

    lines = []
    for _, line in results.iterrows():
        metrics = load_run(line["run"]).metrics
        if "multi_query" in metrics:
            lines.append({"seed": line["seed"], "rank1": 100 * metrics["multi_query"]["rank1"],
                          "mAP": 100 * metrics["multi_query"]["mAP"]})
    return pd.DataFrame(lines, columns=["seed", "rank1", "mAP"])


def companion_summary(results: pd.DataFrame, multiple: pd.DataFrame, measured_on: str) -> pd.DataFrame:
    """Our MMHPN's single- (and, where measured, multiple-) query Rank-1 and mAP, mean ± std."""
    ours = {"single query Rank-1": mean_std(results["rank1"]), "single query mAP": mean_std(results["mAP"])}
    if not multiple.empty:
        ours.update({"multiple query Rank-1": mean_std(multiple["rank1"]),
                     "multiple query mAP": mean_std(multiple["mAP"])})
    return pd.DataFrame(ours, index=[f"MMHPN, this companion (measured on {measured_on})"])


def paper_notes(tables: Sequence[str]) -> pd.DataFrame:
    """The notes recorded beside the paper's numbers of `tables` (inconsistencies, sources)."""
    numbers = paper_numbers()
    notes = numbers[numbers["table"].isin(list(tables)) & numbers["note"].notna()]
    return notes[["table", "row", "dataset", "note"]]


COMPARISON_TABLES = (("table1", "Table 1: Market-1501"), ("table2", "Table 2: DukeMTMC-reID"),
                     ("table3", "Table 3: CUHK03 (detected, new protocol)"))


def comparison_tables(results: pd.DataFrame, multiple: pd.DataFrame, dataset: str,
                      measured_on: str) -> list[tuple[str, pd.DataFrame]]:
    """Tables 1-3 as (title, table): the paper's numbers, and our MMHPN row (mean ± std over
    seeds) joined to the one table measured on the same dataset as this build, never to another."""
    numbers = paper_numbers()
    seeds = results["seed"].nunique()
    tables = []
    for key, name in COMPARISON_TABLES:
        table = paper_table(key)
        table_dataset = numbers.loc[numbers["table"] == key, "dataset"].iloc[0]
        if dataset == table_dataset:
            # our row joins the table; the columns lose their "paper:" prefix since they hold both
            table = table.rename(columns=lambda c: c.removeprefix("paper: "), level=0).astype(object)
            single, multi = table.columns[0][0], table.columns[-1][0]
            row = {(single, "Rank-1"): mean_std(results["rank1"]), (single, "mAP"): mean_std(results["mAP"])}
            if not multiple.empty and multi != single:
                row[(multi, "Rank-1")] = mean_std(multiple["rank1"])
                row[(multi, "mAP")] = mean_std(multiple["mAP"])
            table = pd.concat([table, pd.DataFrame([row], index=[f"MMHPN (this companion, {seeds} seed(s))"])])
        else:
            name += f"  (the paper's numbers only: this build measured on {measured_on})"
        tables.append((name, table.astype(object).where(table.notna(), "-")))
    return tables


def first_image_per_identity(records: Sequence, count: int) -> list:
    """One image (the first by camera, then path) of each of the first `count` identities."""
    chosen, seen = [], set()
    for record in sorted(records, key=lambda r: (r.pid, r.camid, r.path)):
        if record.pid not in seen:
            chosen.append(record)
            seen.add(record.pid)
        if len(chosen) == count:
            break
    return chosen


def attention_figure(results: pd.DataFrame, num_people: int, stripes: int, device: str, path=None):
    """Figure 3 from `results`' two runs (the global model, then the `stripes`-stripe model):
    Grad-CAM maps on one training image of each of the first `num_people` identities (training
    images, so that each classifier's true class is defined)."""
    from mmhpn import figures
    from mmhpn.attribution import compare_attention
    from mmhpn.data import load_data
    from mmhpn.evaluation.images import load_inputs
    from mmhpn.runs import load_run

    global_run, part_run = (load_run(run) for run in results["run"])
    config = part_run.config
    chosen = first_image_per_identity(load_data(config).train, num_people)
    images = load_inputs([record.path for record in chosen], config.height, config.width)
    maps = compare_attention(global_run.load_model(device), part_run.load_model(device), images,
                             targets=[record.pid for record in chosen], stripes=stripes)
    return figures.attention_maps(figures.denormalize(images), maps.global_maps, maps.part_maps,
                                  global_scale=maps.global_scale, part_scale=maps.part_scale,
                                  labels=[f"id {r.pid}, cam {r.camid}" for r in chosen], path=path, vector=True)


def ranking_figure_of_run(run_dir: str, queries: str, top_k: int, device: str, path=None):
    """Figure 4 from one finished run: the run's descriptors of the query and gallery images,
    their ranking under the run's protocol for `queries` ("auto" or comma-separated query
    indices), each query's heatmap, drawn by `mmhpn.figures.ranking_figure`."""
    from mmhpn import figures
    from mmhpn.attribution import similarity_heatmaps
    from mmhpn.data import load_data
    from mmhpn.evaluation import extract_images, pairwise_distance
    from mmhpn.evaluation.images import run_descriptor_options
    from mmhpn.evaluation.ranking import ranking_table
    from mmhpn.runs import load_run

    run = load_run(run_dir)
    model, config = run.load_model(device), run.config
    data = load_data(config)
    query_paths, gallery_paths = [r.path for r in data.query], [r.path for r in data.gallery]
    query, gallery = (extract_images(model, paths, **run_descriptor_options(config), device=device,
                                     progress=False).features for paths in (query_paths, gallery_paths))
    picked = queries if queries == "auto" else [int(i) for i in queries.split(",") if i.strip()]
    table = ranking_table(pairwise_distance(query, gallery), [r.pid for r in data.query], [r.pid for r in data.gallery],
                          [r.camid for r in data.query], [r.camid for r in data.gallery], queries=picked,
                          top_k=top_k, protocol=config.eval_protocol)
    heatmaps = similarity_heatmaps(model, table, query_paths, gallery_paths, config.height, config.width)
    fig = figures.ranking_figure(table, query_paths, gallery_paths, heatmaps=heatmaps, path=path, vector=True)
    return fig, run


def layout_table(rows: Sequence[Row]) -> pd.DataFrame:
    """Which stripes each row pools at which tap (``conv5_1: 8, 4 | conv5_2: 2 | ...``)."""
    return pd.DataFrame({"stripes per tap": {
        row.label: " | ".join(f"{tap}: {', '.join(map(str, counts))}" for tap, counts in row_layout(row).items())
        for row in rows}})


def figure5_points(results: pd.DataFrame) -> pd.DataFrame:
    """`body_scale_results` of the runs behind `run_rows`' frame (Figure 5's input)."""
    from mmhpn.runs import load_run

    return body_scale_results([load_run(run) for run in results["run"]])
