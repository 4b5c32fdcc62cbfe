"""What the notebooks show: each a function a notebook cell calls once on its results.

Summaries over seeds beside the paper's numbers (`summarize`, `mean_std`, `row_mean`), the
training curves' input (`training_histories`, `pretraining_summary`, `regime_selection`),
Table 6's APS weights, the multiple-query scores and Tables 1-3 (`comparison_tables`),
Figures 3-5's inputs (`attention_figure`, `ranking_figure_of_run`, `figure5_points`), the
layout table, and the sentences a page prints (`psl_control_reading`, `baseline_reading`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from mmhpn import claims, figures, versions
from mmhpn.attribution import compare_attention, similarity_heatmaps
from mmhpn.config import make_config
from mmhpn.data import load_data
from mmhpn.errors import ConfigError
from mmhpn.evaluation import pairwise_distance
from mmhpn.evaluation.images import load_inputs
from mmhpn.evaluation.ranking import ranking_table
from mmhpn.model import PRESETS, TAPS, feature_map_rows, parse_layout
from mmhpn.paper.compute_cost import TARGET_BASELINE_MAP
from mmhpn.paper import selection
from mmhpn.paper.numbers import paper_difference, paper_numbers, paper_table
from mmhpn.paper.planner import row_config
from mmhpn.paper.registry import RUNS_DIR, notebook_common, notebook_rows
from mmhpn.paper.tables import PSL_CONTROL_LABEL, Row, row_layout
from mmhpn.resources import read_text
from mmhpn.runs import load_run, pretraining_run


def mean_std(values: pd.Series) -> str:
    """`values` as "mean ± std" text (sample std over seeds; one seed: its value; none: n/a)."""
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


def psl_control_reading(checked: pd.DataFrame, metric: str = "mAP") -> str:
    """What Table 7's PSL-vs-control question (ours) says on `metric`, read together with the
    PSL-vs-softmax claim, with an equivalence margin.

    The margin is the paper's own Market-1501 gain of the PSL over softmax on `metric` (the
    effect the control is meant to explain): when the whole interval of PSL - control lies
    within +/- that margin, the two are *equivalent* for this purpose and the PSL acts as the
    constant re-weighting; otherwise the interval's verdict is read as usual. When the PSL
    does not beat softmax here, there is no gain to explain, and the page says so first.
    """
    def line(better: str, worse: str) -> pd.Series | None:
        found = checked[(checked["better"] == better) & (checked["worse"] == worse) & (checked["metric"] == metric)]
        return None if found.empty else found.iloc[0]

    control = line("MMHPN+PSL", PSL_CONTROL_LABEL)
    if control is None:
        raise ConfigError(f"no checked PSL-vs-control line on {metric}; "
                          "check table7 with mmhpn.paper.numbers.check_table")
    label = claims.METRIC_LABELS.get(metric, metric)
    margin = paper_difference("table7", "MMHPN+PSL", "MMHPN+softmax", metric, "market1501")
    versus_softmax = line("MMHPN+PSL", "MMHPN+softmax")
    if versus_softmax is None:
        first = f"the paper claims no {label} gain of the PSL over softmax, so there is no gain to explain; "
    elif versus_softmax["verdict"] != "supported":
        first = (f"the PSL does not beat softmax here ({versus_softmax['verdict']}), so there is no gain to explain; "
                 "the control only says whether the PSL and a constant re-weighting differ: ")
    else:
        first = "the PSL beats softmax here; "
    low, high, verdict = control["ci_low"], control["ci_high"], control["verdict"]
    if control["n_seeds"] < 2 or np.isnan(low):
        second = "with one seed there is no interval to read"
    elif -margin < low and high < margin:
        second = (f"PSL - control lies within +/-{margin:.1f} pp (the paper's Market-1501 PSL gain) over its whole "
                  f"interval [{low:+.2f}, {high:+.2f}]: equivalent, so the PSL acts here as the constant re-weighting")
    elif verdict == "supported":
        second = f"the PSL beats the control [{low:+.2f}, {high:+.2f}]: more than a re-weighting of the scales"
    elif verdict == "contradicted":
        second = f"the control beats the PSL [{low:+.2f}, {high:+.2f}]: the re-weighting does at least as well"
    else:
        second = (f"PSL - control [{low:+.2f}, {high:+.2f}] contains 0 but is wider than +/-{margin:.1f} pp: "
                  "neither a difference nor an equivalence is shown")
    return f"PSL vs its re-weighting control ({label}): {first}{second}."


def psl_factor_table(results: pd.DataFrame, row: str = "MMHPN+PSL") -> tuple[pd.DataFrame, str]:
    """The PSL's factor per scale and seed of `row`'s runs, beside its value when every stripe
    of a scale is equally confident, and a reading.

    Per scale: the stripe count n and gamma, the mean factor over the whole run (what the
    control uses, `mmhpn.paper.planner.psl_scale_weights`), the spread over images of each
    image's factor in the last epoch (``psl_factor_sd_<i>``), and (1 - 1/n)^gamma, the factor
    when Eq. 4's q is 1/n for every stripe (a single stripe under the "ce" rule: 1). If the
    means equal that constant, the PSL as read weighs each scale by a constant.
    """
    from mmhpn.paper.planner import psl_scale_weights

    lines = []
    for _, result in results[results["row"] == row].iterrows():
        run = load_run(result["run"])
        config = run.config
        layout = config.layout if config.layout is not None else PRESETS[config.preset]
        means = psl_scale_weights(run.history)
        last = run.history.iloc[-1]
        for index, (scale, gamma) in enumerate(zip(parse_layout(layout), config.gammas)):
            n = scale.stripes
            equal = 1.0 if n == 1 and config.single_stripe == "ce" else (1 - 1 / n) ** gamma
            lines.append({"seed": result["seed"], "stripes": n, "gamma": gamma, "mean factor (run)": means[index],
                          "(1 - 1/n)^gamma": equal,
                          "sd over images (last epoch)": last.get(f"psl_factor_sd_{index}", np.nan)})
    table = pd.DataFrame(lines)
    if table.empty:
        raise ConfigError(f"no runs of row {row!r} to read the PSL factors from")
    gap = float((table["mean factor (run)"] - table["(1 - 1/n)^gamma"]).abs().max())
    spread = float(table["sd over images (last epoch)"].max())
    reading = (f"The largest gap between a scale's mean factor and (1 - 1/n)^gamma, over every seed and scale, is "
               f"{gap:.4f}; the largest spread over images in the last epoch is {spread:.4f}. ")
    reading += ("So on this data the PSL as read acts as a constant weight per scale: Eq. 4's q is about 1/n for "
                "every stripe, because Eq. 4 normalizes the stripes' probabilities against each other, and stripes "
                "of one scale are about equally confident." if gap < 0.005 and spread < 0.05 else
                "So the factor varies between images and its mean departs from the equal-confidence value: the PSL "
                "weighs images and stripes differently here.")
    return table.round(4), reading


def map_resolution_reading(results: pd.DataFrame) -> str:
    """How fine the attention maps of `results`' runs are, beside the paper's: layer4's map
    size at this input size and at the paper's 384x128 (Sec. 4.2), from the model's geometry."""
    config = load_run(results["run"].iloc[0]).config
    paper = make_config("paper")
    ours = (feature_map_rows(config.height), feature_map_rows(config.width))
    theirs = (feature_map_rows(paper.height), feature_map_rows(paper.width))
    ratio = (theirs[0] * theirs[1]) / (ours[0] * ours[1])
    finer = "coarser than" if ratio > 1 else ("as fine as" if ratio == 1 else "finer than")
    return (f"The maps here are {ours[0]}x{ours[1]} cells ({config.height}x{config.width} inputs), the paper's "
            f"{theirs[0]}x{theirs[1]} ({paper.height}x{paper.width}): {finer} the paper's"
            + (f", each cell covering {ratio:.0f} times the share of the image." if ratio > 1 else "."))


def pretraining_people(config) -> tuple[pd.DataFrame, pd.DataFrame, str] | None:
    """The check that `config`'s pretraining set (its ``init_from``) shares no person with its
    test split, run here: a count of test identities by how many attributes their most alike
    pretraining person shares, the first lines of `mmhpn.data.synthetic.nearest_people`, and a
    reading. None when there is no synthetic pretraining set to check."""
    from mmhpn.config import pretraining_config
    from mmhpn.data.synthetic import make_plan, nearest_people, synthetic_config
    from mmhpn.data.synthetic.disjoint import ATTRIBUTES

    if config.init_from is None or config.dataset != "synthetic":
        return None
    source = pretraining_config(config.init_from)
    evaluation = make_plan(synthetic_config(config.synthetic_preset), seed=config.synthetic_seed)
    pretrain = make_plan(synthetic_config(source.synthetic_preset), seed=source.synthetic_seed)
    nearest = nearest_people(pretrain, evaluation)
    counts = nearest["attributes alike"].value_counts().sort_index().rename_axis(
        f"attributes alike (of {len(ATTRIBUTES)})").rename("test identities").to_frame()
    most = int(nearest["attributes alike"].max())
    reading = (f"Each of the {len(nearest)} test identities against the {len(pretrain.identities)} people of the "
               f"'{source.synthetic_preset}' set: the most alike pretraining person shares at most {most} of "
               f"{len(ATTRIBUTES)} attributes with any test identity, so "
               + ("no test person appears in the pretraining set." if most < len(ATTRIBUTES) else
                  "some test person has a pretraining twin: the check fails."))
    return counts, nearest.head(8), reading


def row_mean(results: pd.DataFrame, row: str, metric: str = "mAP") -> float:
    """Mean over seeds of one row's metric (percent)."""
    values = results.loc[results["row"] == row, metric]
    if values.empty:
        raise ConfigError(f"no results for row {row!r}")
    return float(values.mean())


def baseline_reading(baseline_map: float, measured_on: str) -> str:
    """What the baseline's mean mAP says about the benchmark, against the build's target range
    (`mmhpn.paper.compute_cost.TARGET_BASELINE_MAP`: trained, not saturated)."""
    low, high = TARGET_BASELINE_MAP
    if baseline_map > high:
        verdict = (f"above the {low:.0f}-{high:.0f}% the build targets: close to saturation, so differences "
                   "between rows are compressed.")
    elif baseline_map < low:
        verdict = (f"below the {low:.0f}-{high:.0f}% the build targets: hardly trained, so differences between "
                   "rows say little.")
    else:
        verdict = f"within the {low:.0f}-{high:.0f}% the build targets: trained, and far from saturation."
    return f"The baseline reaches {baseline_map:.1f}% mAP on {measured_on}: {verdict}"


def training_histories(results: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch histories of `results`' runs, one frame with a ``seed`` column.

    The final evaluation (metrics.json, the test score after the last epoch) is put on each
    run's last epoch, so the curves end at the numbers the tables show.
    """
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
    """The pretraining runs a notebook's rows fine-tune from (their ``init_from``), one per
    replicate seed: a summary line each (data, schedule, seconds, scores on its held-out
    *pretraining* identities) and their per-epoch histories (column ``seed``); None when the
    profile trains from random weights or ImageNet.

    Trained or loaded through the run cache like any run (the rows' trainings have already
    trained them).
    """
    rows, seeds = notebook_rows("training", params)
    lines, histories = [], []
    for seed in seeds or [0]:
        config = row_config(rows[0], params["profile"], seed, **notebook_common(params))
        if config.init_from is None:
            return None
        run = pretraining_run(config, params.get("runs_dir", RUNS_DIR), progress=False)
        source = run.config
        images = int(run.history["images"].iloc[-1])  # training images per epoch
        decay = ",".join(str(e) for e in source.lr_decay_epochs) or "none"
        scored_on = "held-out pretraining ids" if source.val_fraction > 0 else "its test split"
        lines.append({
            "seed": source.seed, "data": f"synthetic {source.synthetic_preset} ({images} training images)",
            "epochs": source.epochs, "lr decay after": decay, "train_s": round(run.metrics["train_seconds"], 1),
            f"rank1 ({scored_on})": round(100 * run.metrics["rank1"], 1),
            f"mAP ({scored_on})": round(100 * run.metrics["mAP"], 1), "run": run.path.name})
        history = run.history.copy()
        history["seed"] = source.seed
        histories.append(history)
    return pd.DataFrame(lines), pd.concat(histories, ignore_index=True)


REGIME_SELECTION = "regime-selection.json"  # benchmarks/select_regime.py's recorded result, in mmhpn/resources/
PRETRAINING_SELECTION = "pretraining-selection.json"  # benchmarks/select_pretraining.py's, likewise


def _recorded(name: str, path: str | Path | None, script: str) -> tuple[dict, str]:
    """A recorded selection result (the package's copy, or the file `path` after a new selection)
    and what its reading adds about the code it came from (`record_currency`)."""
    if path is None:
        record = json.loads(read_text(name))
    else:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"no selection result at {file}; expected the JSON that benchmarks/{script} writes")
        record = json.loads(file.read_text(encoding="utf-8"))
    return record, record_currency(record, script)


def record_currency(record: Mapping[str, Any], script: str) -> str:
    """What a page adds to a recorded selection's reading about the code it came from: nothing
    when it was recorded under this code's training-semantics version (`mmhpn.versions`), a
    STALE warning when under another (its candidates would train to other numbers now), and a
    caveat when the record does not say."""
    version = record.get("recorded", {}).get("training_semantics_version")
    if version == versions.TRAINING_SEMANTICS_VERSION:
        return ""
    if version is None:
        return (" The record does not name the training-semantics version it was measured under, so whether "
                "its candidates would train to the same numbers now cannot be checked.")
    return (f" STALE: recorded under training-semantics version {version}, and what a training computes has "
            f"changed since (version {versions.TRAINING_SEMANTICS_VERSION} now): re-run benchmarks/{script} "
            f"before relying on this choice.")


def _schedule(epochs: int, decay: Sequence[int]) -> str:
    return f"{epochs} epochs (decay after {','.join(str(e) for e in decay) or 'none'})"


def selection_reading(record: Mapping[str, Any], what: str, chosen: Mapping[str, Any]) -> str:
    """The sentence a page prints about a recorded selection: its rule and what the rule,
    re-applied here to the recorded candidates (`chosen`), picks. A record whose own choice
    differs from the rule's is an error, not a sentence."""
    if (chosen["epochs"], list(chosen["lr_decay_epochs"])) != (record["chosen"]["epochs"],
                                                               list(record["chosen"]["lr_decay_epochs"])):
        raise ConfigError(f"the recorded {what} choice {record['chosen']} is not what its rule picks from the "
                          f"recorded candidates ({dict(chosen)}): re-run the selection script")
    return (f"The rule for the {what}, fixed before its candidates trained: {record['rule']}. "
            f"Applied to the recorded candidates it chooses {_schedule(chosen['epochs'], chosen['lr_decay_epochs'])}.")


def pretraining_selection(path: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """`benchmarks/select_pretraining.py`'s recorded result: one line per candidate schedule
    (validation mAP on held-out *pretraining* identities per seed, mean, std, seconds), its
    per-epoch frame (for `mmhpn.figures.validation_curves`) and the rule's reading."""
    record, currency = _recorded(PRETRAINING_SELECTION, path, "select_pretraining.py")
    lines, epochs = [], []
    for candidate in record["candidates"]:
        regime = _schedule(candidate["epochs"], candidate["lr_decay_epochs"])
        lines.append({"schedule": regime, "val mAP per seed": ", ".join(f"{v:.1f}" for v in candidate["val_mAP"]),
                      "val mAP mean": round(candidate["val_mAP_mean"], 2),
                      "val mAP std": round(candidate["val_mAP_std"], 2),
                      "train s per run": round(float(np.mean(candidate["train_seconds"])), 1)})
        for epoch, (value, loss) in enumerate(zip(candidate["val_mAP_per_epoch"], candidate["loss_per_epoch"]),
                                              start=1):
            epochs.append({"regime": regime, "preset": "baseline (pretraining)", "epoch": epoch, "val_mAP": value,
                           "loss": loss})
    summary = pd.DataFrame(lines)
    summary.attrs["recorded"] = record.get("recorded", {})
    candidates = record["candidates"]
    final = selection.choose_pretraining(candidates, record["tolerance_pp"])
    reading = selection_reading(record, "pretraining schedule", final)
    if final["epochs"] == max(c["epochs"] for c in candidates):
        curve = next(c for c in candidates if c["epochs"] == final["epochs"]
                     and list(c["lr_decay_epochs"]) == final["lr_decay_epochs"])["val_mAP_per_epoch"]
        decay = final["lr_decay_epochs"][-1] if final["lr_decay_epochs"] else len(curve) - 1
        reading += (f" It is the longest candidate, so the rule cannot show that a longer schedule would not "
                    f"gain more: from the lr decay on, its validation mAP (mean over seeds) went "
                    f"{', '.join(f'{v:.1f}' for v in curve[decay - 1:])}, the last epoch adding "
                    f"{curve[-1] - curve[-2]:+.1f} pp.")
    # The candidates were trained in rounds (a longer schedule added when the rule chose the
    # longest one): say what the rule chose from each round's candidates, as it happened.
    shown = 0
    for number, added in enumerate(record.get("rounds", [])[:-1], start=1):
        shown += len(added)
        earlier = selection.choose_pretraining(candidates[:shown], record["tolerance_pp"])
        reading += (f" In round {number}, with the first {shown} candidates only, it chose "
                    f"{_schedule(earlier['epochs'], earlier['lr_decay_epochs'])}"
                    + (", the longest candidate, so no plateau was shown yet and longer schedules were added."
                       if earlier["epochs"] == max(c["epochs"] for c in candidates[:shown]) else "."))
    return summary, pd.DataFrame(epochs), reading + currency


def regime_selection(path: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """`benchmarks/select_regime.py`'s result: a summary (one line per regime and preset: the
    final validation mAP of each replicate, mean, std, the training loss's relative change in
    the last epoch, training seconds per run), a per-epoch frame (validation mAP mean over
    replicates, training loss) for `mmhpn.figures.validation_curves`, and the rule's reading.

    Reads the recorded result shipped with the package (`REGIME_SELECTION`), or the result
    file `path` (e.g. ``benchmarks/results/regime-selection.json`` after a new selection).
    """
    record, currency = _recorded(REGIME_SELECTION, path, "select_regime.py")
    lines, epochs = [], []
    for result in record["results"]:
        regime = f"{result['backbone']}, {_schedule(result['epochs'], result['lr_decay_epochs'])}"
        lines.append({"regime": regime, "preset": result["preset"],
                      "val mAP per replicate": ", ".join(f"{v:.1f}" for v in result["val_mAP"]),
                      "val mAP mean": round(result["val_mAP_mean"], 2), "val mAP std": round(result["val_mAP_std"], 2),
                      "loss change in the last epoch (%)": round(
                          100 * (result["loss_per_epoch"][-1] / result["loss_per_epoch"][-2] - 1), 1),
                      "train s per run": round(float(np.mean(result["train_seconds"])), 1)})
        for epoch, (value, loss) in enumerate(zip(result["val_mAP_per_epoch"], result["loss_per_epoch"]), start=1):
            epochs.append({"regime": regime, "preset": result["preset"], "epoch": epoch, "val_mAP": value,
                           "loss": loss})
    summary = pd.DataFrame(lines)
    summary.attrs["recorded"] = record.get("recorded", {})
    reading = selection_reading(record, "fine-tuning schedule",
                                selection.choose_regime(record["results"], record["tolerance_pp"]))
    return summary, pd.DataFrame(epochs), reading + currency


def aps_weights(results: pd.DataFrame, row: str = "MMHPN+APS") -> pd.DataFrame:
    """The learned APS weight a = sigmoid(theta) of each scale, one line per seed of `row`."""
    lines = [{"seed": line["seed"], **load_run(line["run"]).load_model().aps_weights()}
             for _, line in results[results["row"] == row].iterrows()]
    if not lines:
        raise ConfigError(f"no run of row {row!r} in these results")
    return pd.DataFrame(lines).set_index("seed")


def multiple_query_results(results: pd.DataFrame) -> pd.DataFrame:
    """Per seed, the multiple-query Rank-1 and mAP (percent) the runs' evaluation recorded
    (columns seed, rank1, mAP; empty where the dataset has no multiple-query protocol)."""
    lines = []
    for _, line in results.iterrows():
        metrics = load_run(line["run"]).metrics
        if "error" in metrics.get("multi_query", {}):  # the evaluation could not pool some query's images
            raise ConfigError(f"run {line['run']} has no multiple-query scores: {metrics['multi_query']['error']}")
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
    """Figure 4 from one finished run: the run's descriptors of the query and gallery images
    (the ones its metrics were computed from, `mmhpn.runs.Run.descriptors`), their ranking
    under the run's protocol for `queries` ("auto" or comma-separated query indices), each
    query's heatmap, drawn by `mmhpn.figures.ranking_figure`."""
    run = load_run(run_dir)
    model, config = run.load_model(device), run.config
    data = load_data(config)
    query_paths, gallery_paths = [r.path for r in data.query], [r.path for r in data.gallery]
    query, gallery = (run.descriptors(model, records, device) for records in (data.query, data.gallery))
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


def body_scale_results(runs: Sequence) -> pd.DataFrame:
    """Figure 5's input from trained runs (`mmhpn.runs.Run`): columns stripes, seed, rank1, mAP.

    Every run must pool a single scale at the final layer (``layout={"conv5_3": (P,)}`` or
    the ``baseline`` preset); anything else is an error rather than a mislabelled point.
    """
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


def figure5_points(results: pd.DataFrame) -> pd.DataFrame:
    """`body_scale_results` of the runs behind `run_rows`' frame (Figure 5's input)."""
    return body_scale_results([load_run(run) for run in results["run"]])


VARIANT_SELECTION = "variant-selection.json"  # benchmarks/select_variant.py's recorded result, in mmhpn/resources/


def variant_selection(path: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """`benchmarks/select_variant.py`'s result (issue #20, item 3): per preset, the default's and
    the variant's validation mAP (each replicate and the mean), and the rule's reading, re-applied
    here (`mmhpn.paper.selection.keeps_up`) to the recorded numbers."""
    record, currency = _recorded(VARIANT_SELECTION, path, "select_variant.py")
    name = record["variant"][0]["variant"]
    adopted = selection.keeps_up(record["default"], record["variant"], record["tolerance_pp"])
    reading = (f"The rule: {record['rule']}. Measured on {record['recorded']['utc']} ({record['recorded']['machine']}): "
               f"{name} {'keeps up with' if adopted else 'falls behind'} the default on validation identities, so "
               + ("it replaces the demo regime." if adopted else "the demo regime stays as it is.")
               + currency)
    return _validation_table((*record["default"], *record["variant"])), reading


def _validation_table(lines: Sequence[Mapping]) -> pd.DataFrame:
    """One line per (regime, preset) of a validation comparison: each replicate's mAP and the mean."""
    return pd.DataFrame([{"regime": line["variant"], "preset": line["preset"],
                          "val mAP per replicate": ", ".join(f"{v:.1f}" for v in line["val_mAP"]),
                          "val mAP mean": round(line["val_mAP_mean"], 2)} for line in lines])


PRETRAINING_INPUT_SELECTION = "pretraining-input-selection.json"  # select_pretraining_input.py's, in mmhpn/resources/


def pretraining_input_selection(path: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """`benchmarks/select_pretraining_input.py`'s result: per preset, the validation mAP fine-tuned
    from the default pretraining runs and from each cheaper candidate's (a smaller input for
    every epoch, or half size for the first epochs), with the minutes and pixel-epochs of a
    pretraining run, and the rule's reading, re-applied here
    (`mmhpn.paper.selection.choose_pretraining_input`) to the recorded numbers."""
    record, currency = _recorded(PRETRAINING_INPUT_SELECTION, path, "select_pretraining_input.py")
    minutes = {name: float(np.mean(values)) for name, values in record["pretraining_minutes"].items()}
    costs = record["pixel_epochs"]
    groups = {"default": record["default"], **record["candidates"]}
    table = pd.concat([_validation_table(lines).assign(**{"pretraining min a run": round(minutes[name], 1),
                                                          "pretraining pixel-epochs": costs[name]})
                       for name, lines in groups.items()], ignore_index=True)
    chosen = selection.choose_pretraining_input(record["default"], record["candidates"], record["tolerance_pp"],
                                                costs)
    if chosen != record["chosen"]:
        raise ConfigError(f"the recorded pretraining input choice {record['chosen']!r} is not what its rule picks "
                          f"from the recorded candidates ({chosen!r}): re-run the selection script")
    reading = (f"The rule: {record['rule']}. Measured on {record['recorded']['utc']} ({record['recorded']['machine']}): "
               + (f"pretraining at {chosen} keeps up with the default on validation identities, at "
                  f"{minutes[chosen]:.1f} min a pretraining run against {minutes['default']:.1f}." if chosen else
                  f"no cheaper input keeps up with the default on validation identities, so the trunk stays "
                  f"pretrained at the fine-tuning input ({minutes['default']:.1f} min a pretraining run; "
                  + ", ".join(f"{name}: {minutes[name]:.1f} min" for name in record["candidates"]) + ").")
               + currency)
    return table, reading
