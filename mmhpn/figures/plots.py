"""Plots of what was measured and learned: Figure 5, the APS weights, tables, claims, training curves.

* `body_scale_curves` (Figure 5): mAP and Rank-1 against the number of stripes (its input
  from trained runs: `mmhpn.paper.views.body_scale_results`).
* `aps_weight_plot`: the learned Adaptive Pooling Strategy weight of every scale.
* `table_bars` and `claims_forest`: a table's rows, and every claim's interval.
* `training_curves`, `row_curves`, `validation_curves`: per-epoch histories.
"""
from __future__ import annotations

import itertools
import os
from typing import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mmhpn.errors import ConfigError
from mmhpn.figures.style import PALETTE, STYLE, check_frame, save_figure
from mmhpn.model import TAPS


def body_scale_curves(results: pd.DataFrame, *, metrics: Sequence[str] = ("mAP", "rank1"),
                      title: str | None = None, path: str | os.PathLike | None = None,
                      vector: bool = False) -> Figure:
    """Figure 5: mAP and Rank-1 (in %) against the number of stripes, mean ± s.d. over seeds.

    `results` is tidy: one row per trained run, columns ``stripes`` and the `metrics` as
    fractions in [0, 1] (as `mmhpn.evaluation` reports them; plotted as percentages), plus
    ``seed`` (optional). Each stripe count gives one point per metric; the runs themselves
    are drawn as small dots. The error bar is the sample standard deviation over seeds (none
    with a single seed).
    """
    frame = check_frame(results, ["stripes", *metrics], "results")
    values = frame[list(metrics)].to_numpy(dtype=float)
    if (values < 0).any() or (values > 1).any():
        raise ConfigError(f"metric values must be fractions in [0, 1] (as mmhpn.evaluation reports them); "
                          f"got values from {values.min():g} to {values.max():g} (divide percentages by 100)")
    stripe_counts = sorted(int(s) for s in frame["stripes"].unique())
    positions = {s: i for i, s in enumerate(stripe_counts)}
    names = {"mAP": "mAP", "rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10"}
    markers = ("o", "s", "^", "D")
    runs_per_point = frame.groupby("stripes").size()
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(5.2, 3.4), layout="constrained")
        ax = fig.subplots()
        offsets = np.linspace(-0.06, 0.06, len(metrics)) if len(metrics) > 1 else [0.0]
        for k, metric in enumerate(metrics):
            colour = PALETTE[k % len(PALETTE)]
            grouped = frame.groupby("stripes")[metric]
            mean = grouped.mean().reindex(stripe_counts) * 100
            spread = grouped.std(ddof=1).reindex(stripe_counts).fillna(0.0) * 100
            x = np.arange(len(stripe_counts)) + offsets[k]
            container = ax.errorbar(x, mean.to_numpy(), yerr=spread.to_numpy(), color=colour,
                                    marker=markers[k % len(markers)], markersize=6, linewidth=1.8, capsize=4,
                                    label=names.get(metric, metric))
            container.lines[0].set_gid(f"mean-{metric}")
            run_x = frame["stripes"].map(positions).to_numpy(dtype=float) + offsets[k]
            ax.scatter(run_x, frame[metric].to_numpy(dtype=float) * 100, s=12, color=colour, alpha=0.35,
                       linewidths=0, zorder=1, gid=f"runs-{metric}")
        ax.set_xticks(range(len(stripe_counts)), [str(s) for s in stripe_counts])
        ax.set_xlabel("number of stripes (body scale) at the final layer")
        ax.set_ylabel("score (%)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title=None, loc="best")
        if runs_per_point.nunique() == 1:
            count = int(runs_per_point.iloc[0])
            detail = f"mean ± s.d. over {count} runs" if count > 1 else "one run per point"
        else:
            detail = f"mean ± s.d. over {int(runs_per_point.min())}-{int(runs_per_point.max())} runs"
        ax.set_title(title or f"Body scales: accuracy vs. number of stripes ({detail})")
    if path is not None:
        save_figure(fig, path, vector=vector)
    return fig


def _aps_frame(weights) -> pd.DataFrame:
    """{run: {scale: a}} or a DataFrame (columns scale, weight[, run]) -> tidy (run, scale, weight)."""
    if isinstance(weights, pd.DataFrame):
        frame = check_frame(weights, ["scale", "weight"], "weights").copy()
        if "run" not in frame.columns:
            frame["run"] = [f"run {i}" for i in range(len(frame))]
    elif isinstance(weights, Mapping):
        rows = []
        for run, per_scale in weights.items():
            if not isinstance(per_scale, Mapping) or not per_scale:
                raise ConfigError(f"weights[{run!r}] must be a non-empty mapping {{scale: a}} "
                                  "(model.aps_weights()), got {per_scale!r}")
            rows += [{"run": str(run), "scale": str(scale), "weight": float(a)} for scale, a in per_scale.items()]
        if not rows:
            raise ConfigError("weights is empty; expected {run name: model.aps_weights()}")
        frame = pd.DataFrame(rows)
    else:
        raise ConfigError(f"weights must be {{run: model.aps_weights()}} or a DataFrame with columns scale, weight; "
                          f"got {type(weights).__name__}")
    values = frame["weight"].to_numpy(dtype=float)
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise ConfigError("APS weights must be in [0, 1] (a = weight of average pooling); got "
                          f"{values.min():g} to {values.max():g}")
    return frame


def _scale_sort_key(label: str):
    tap, _, stripes = label.partition("/")
    return (TAPS.index(tap) if tap in TAPS else len(TAPS), -int(stripes) if stripes.isdigit() else 0, label)


def aps_weight_plot(weights, *, initial: float = 0.5, title: str | None = None,
                    path: str | os.PathLike | None = None, vector: bool = False) -> Figure:
    """The learned APS weight `a` of every scale (1 = pure GAP, 0 = pure GMP), one dot per run.

    `weights`: ``{run name: model.aps_weights()}`` (e.g. one entry per seed), or a DataFrame
    with columns ``scale``, ``weight`` (and optionally ``run``). A bar marks the mean over
    runs; a dashed line the initial value (0.5: sigmoid(0), an equal mix).
    """
    frame = _aps_frame(weights)
    scales = sorted(frame["scale"].unique(), key=_scale_sort_key)
    runs = list(dict.fromkeys(frame["run"]))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(max(3.6, 1.0 * len(scales) + 1.8), 3.4), layout="constrained")
        ax = fig.subplots()
        ax.axhline(initial, color=PALETTE[6], linestyle="--", linewidth=1.2,
                   label=f"initial a = {initial:g}")
        # Spread the runs sideways so equal values stay visible (deterministic offsets).
        spread = np.linspace(-0.15, 0.15, len(runs)) if len(runs) > 1 else np.zeros(1)
        offset = dict(zip(runs, spread))
        x = frame["scale"].map({s: i for i, s in enumerate(scales)}).to_numpy(dtype=float)
        x = x + frame["run"].map(offset).to_numpy(dtype=float)
        ax.scatter(x, frame["weight"], s=28, color=PALETTE[0], alpha=0.8, zorder=3, gid="aps-runs",
                   label="learned a (one dot per run)")
        means = frame.groupby("scale")["weight"].mean().reindex(scales)
        ax.hlines(means.to_numpy(), np.arange(len(scales)) - 0.25, np.arange(len(scales)) + 0.25, linewidth=2.2,
                  color=PALETTE[1], zorder=4, gid="aps-means", label=f"mean over {len(runs)} run(s)")
        ax.set_xticks(range(len(scales)), scales)
        ax.set_xlim(-0.6, len(scales) - 0.4)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("scale (tap / stripes)")
        ax.set_ylabel("APS weight a\n(1 = average, 0 = max pooling)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="best")
        ax.set_title(title or "Adaptive Pooling Strategy: learned weight per scale")
    if path is not None:
        save_figure(fig, path, vector=vector)
    return fig


def table_bars(results: pd.DataFrame, row_order: Sequence[str], *, title: str, measured_on: str) -> Figure:
    """Mean mAP and Rank-1 per row (bars) with the seed-to-seed std (error bars).

    `results` is `mmhpn.paper.planner.run_rows`' frame (columns row, seed, mAP, rank1, percent).
    """
    check_frame(results, ("row", "seed", "mAP", "rank1"), "results")
    grouped = results.groupby("row", sort=False)[["mAP", "rank1"]]
    means = grouped.mean().reindex(list(row_order))
    stds = grouped.std().reindex(means.index).fillna(0)
    seeds = results["seed"].nunique()
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7, 0.5 * len(means) + 1.6), layout="constrained")
        ax = fig.subplots()
        y = np.arange(len(means))
        for offset, metric, label, color in ((-0.2, "mAP", "mAP", PALETTE[0]), (0.2, "rank1", "Rank-1", PALETTE[1])):
            ax.barh(y + offset, means[metric], height=0.38, xerr=stds[metric], color=color, label=label)
        ax.set_yticks(y, means.index)
        ax.invert_yaxis()
        ax.set_xlabel(f"percent, measured on {measured_on} (mean ± std over {seeds} seed{'s' if seeds != 1 else ''})")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="lower right")
    return fig


def claims_forest(checked: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Each claim's mean paired difference (pp) with its 95% interval; 0 marked; the paper's
    own difference as a cross where the claim has one (``paper_reference``).

    `checked` is `mmhpn.claims.check_claims`' frame. A claim is supported where its whole
    interval lies right of 0, contradicted where it lies left of it; claims without an
    interval (one seed) are drawn as a bare dot, claims not run (no mean) are listed without one.
    """
    check_frame(checked, ("better", "worse", "metric", "verdict"), "checked claims")
    missing = [column for column in ("mean", "ci_low", "ci_high") if column not in checked.columns]
    if missing:  # NaN is allowed there: one seed gives no interval, a claim not run no mean
        raise ConfigError(f"checked claims lack column(s) {missing}; expected mmhpn.claims.check_claims' frame")
    colors = {"supported": PALETTE[2], "contradicted": PALETTE[3], "inconclusive": PALETTE[6]}
    labels = [f"{b} > {w} ({'Rank-1' if m == 'rank1' else m})"
              for b, w, m in zip(checked["better"], checked["worse"], checked["metric"])]
    if "table" in checked and checked["table"].nunique() > 1:
        labels = [f"{t}: {label}" for t, label in zip(checked["table"], labels)]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7.5, 0.32 * len(checked) + 1.4), layout="constrained")
        ax = fig.subplots()
        y = np.arange(len(checked))
        for i, line in enumerate(checked.itertuples()):
            color = colors.get(line.verdict, PALETTE[6])
            if np.isfinite(line.ci_low):
                ax.hlines(i, line.ci_low, line.ci_high, color=color, linewidth=2.2)
            if np.isfinite(line.mean):
                ax.plot(line.mean, i, "o", color=color)
            reference = getattr(line, "paper_reference", np.nan)
            if reference is not None and np.isfinite(reference):  # the paper's own difference
                ax.plot(reference, i, "x", color="black", markersize=6)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel("better − worse, paired by seed (percentage points; mean and 95% interval)")
        handles = [Line2D([], [], color=c, marker="o", label=v) for v, c in colors.items()]
        if "paper_reference" in checked and checked["paper_reference"].notna().any():
            reference_label = "the paper's difference" + (
                f" ({checked['reference_dataset'].dropna().iloc[0]})" if "reference_dataset" in checked
                and checked["reference_dataset"].replace("", np.nan).notna().any() else "")
            handles.append(Line2D([], [], color="black", marker="x", linestyle="", label=reference_label))
        ax.legend(handles=handles, loc="best", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        if title:
            ax.set_title(title, fontsize=10)
    return fig


def training_curves(history: pd.DataFrame, *, loss_label: str = "training loss") -> Figure:
    """Per-epoch curves, one line per seed: the training loss, the training stripe accuracy
    and, where the history has them, the test mAP and Rank-1 (in %).

    `history` is `mmhpn.paper.views.training_histories`' frame (columns epoch, seed, loss,
    stripe_acc, and optionally mAP, rank1 as fractions).
    """
    check_frame(history, ("epoch", "seed", "loss", "stripe_acc"), "history")
    panels = [("loss", loss_label), ("stripe_acc", "stripe accuracy (train)")]
    panels += [(c, f"{c} (test, %)") for c in ("mAP", "rank1") if c in history.columns and history[c].notna().any()]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(3.2 * len(panels), 3), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (column, title) in zip(axes, panels):
            for (seed, group), color in zip(history.groupby("seed"), PALETTE):
                values = group[column] * (100 if column in ("mAP", "rank1") else 1)
                ax.plot(group["epoch"], values, marker="o", color=color, label=f"seed {seed}")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("epoch")
        axes[0].legend(fontsize=8)
    return fig


def row_curves(history: pd.DataFrame, *, metrics: Sequence[str] = ("loss", "mAP")) -> Figure:
    """Per-epoch curves of every row of a table, to show where training levelled off.

    One panel per metric (``loss``: the training loss; ``mAP``: the evaluations during
    training and the final one, in %), one colour per row, one thin line per seed.
    `history` is `mmhpn.paper.views.training_histories`' frame with its ``row`` column.
    """
    check_frame(history, ("row", "epoch", "seed", "loss"), "history")  # mAP: NaN between evaluations
    missing = [column for column in metrics if column not in history.columns]
    if missing:
        raise ConfigError(f"history lacks column(s) {missing}; expected training_histories' frame")
    titles = {"loss": "training loss", "mAP": "test mAP (%)", "rank1": "test Rank-1 (%)"}
    rows = list(dict.fromkeys(history["row"]))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.2 * len(metrics), 3.2), layout="constrained")
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        for ax, column in zip(axes, metrics):
            scale = 100 if column in ("mAP", "rank1") else 1
            for row, color in zip(rows, itertools.cycle(PALETTE)):
                for i, (_, group) in enumerate(history[history["row"] == row].groupby("seed")):
                    points = group[["epoch", column]].dropna()
                    ax.plot(points["epoch"], points[column] * scale, marker=".", color=color, linewidth=1,
                            alpha=0.8, label=row if i == 0 else None)
            ax.set_title(titles.get(column, column), fontsize=10)
            ax.set_xlabel("epoch")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    return fig


def validation_curves(selection: pd.DataFrame) -> Figure:
    """Validation mAP after each epoch (mean over seeds) of every regime the schedule was chosen from.

    `selection` is `mmhpn.paper.views.regime_selection`'s per-epoch frame (columns regime,
    preset, epoch, val_mAP in %, loss).
    """
    check_frame(selection, ("regime", "preset", "epoch", "val_mAP", "loss"), "regime selection")
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(8.4, 3.2), layout="constrained")
        axes = fig.subplots(1, 2)
        keys = list(dict.fromkeys(zip(selection["regime"], selection["preset"])))
        for (regime, preset), color in zip(keys, itertools.cycle(PALETTE)):
            group = selection[(selection["regime"] == regime) & (selection["preset"] == preset)]
            for ax, column in zip(axes, ("val_mAP", "loss")):
                ax.plot(group["epoch"], group[column], marker="o", color=color, label=f"{regime}, {preset}")
        axes[0].set_title("validation mAP (%), training identities held out", fontsize=10)
        axes[1].set_title("training loss", fontsize=10)
        for ax in axes:
            ax.set_xlabel("epoch")
        axes[0].legend(fontsize=7)
    return fig
