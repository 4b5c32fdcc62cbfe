"""What the compute-cost page reports: this build's steps and time against its budget, the
default build's targets, the build history, the training throughput of the cached runs, and the
benchmark results with their provenance.

Everything is read from files the build and the benchmarks wrote (`mmhpn.bookbuild`'s
timings and build log, the table notebooks' records, the runs' histories, the benchmarks'
JSON), so the book states measured times, never typed ones.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from mmhpn.checkpoints import is_finished
from mmhpn.claims import read_records
from mmhpn.config import TrainConfig, pretrain_overrides
from mmhpn.paper import studies
from mmhpn.paper.planner import row_config
from mmhpn.paper.tables import get_table
from mmhpn.provenance import processor_in
from mmhpn.runs import load_run, run_dir_for

# The numbers of a benchmark result that the compute-cost page shows: those with a key (at
# any nesting level) ending so. Per-repeat lists and the configuration echo stay in the file.
BENCHMARK_HEADLINE_SUFFIXES = (
    "images_per_s", "images_per_s_median", "full_vs_bare", "model_vs_bare", "matmul_s", "evaluate_s",
    "ratio", "peak_rss_mib", "peak_gpu_memory_mib", "peak_gpu_memory_gib", "projected_schedule_minutes",
    "mAP", "rank1",
)


def build_steps(timings_path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """This build's steps and their wall seconds (from the timings `mmhpn book` passes the
    compute-cost notebook), and the build's record; both empty outside `make book`."""
    current = json.loads(Path(timings_path).read_text()) if Path(timings_path).is_file() else {}
    timings = current.get("notebooks_s", {})
    if not timings:
        return pd.DataFrame(columns=["seconds"]), current
    steps = {"prepare the data": current.get("data_s", 0.0), **{f"notebook {k}": v for k, v in timings.items()}}
    if "sphinx_s" in current:
        steps["Jupyter Book HTML build"] = current["sphinx_s"]
    table = pd.Series(steps, name="seconds").to_frame()
    current.setdefault("total_s", float(table["seconds"].sum()))
    return table, current


# The default build's targets (issues 11 and 19): minutes of a build that trains everything
# (every replicate's pretraining included) and of one that finds every run cached; seeds
# (replicates) per row; the largest 95% half-width of a Table 4-7 claim on mAP (pp), now that
# the interval includes the pretraining; the baseline's mean mAP range (%); the sd of the
# baseline's mAP across replicates, each fine-tuned from its own pretraining run (pp).
BUDGET_TRAINED_MIN, BUDGET_CACHED_MIN = 60, 3
TARGET_MIN_SEEDS, TARGET_HALF_WIDTH_PP, TARGET_BASELINE_MAP = 3, 1.5, (30.0, 90.0)
TARGET_BASELINE_SD_PP = 1.0


def budget_line(record: dict[str, Any]) -> str:
    """Whether a `demo` build stayed within its budget: `BUDGET_TRAINED_MIN` for a first build
    (no run cached at its start, every replicate's pretraining included), `BUDGET_CACHED_MIN`
    when every run came from the cache; a build between the two (e.g. the pretraining runs
    cached, the fine-tunings not) is held to neither, and says so. "" for other profiles."""
    if record.get("profile") != "demo":
        return ""
    trained, minutes = record.get("trainings", 0), record["total_s"] / 60
    cached = record.get("cached_at_start")
    if trained and cached:
        earlier = record.get("cached_training_s")
        first = (f"; the cached runs took {earlier / 60:.1f} min of training when they trained, so a first build "
                 f"would take about {minutes + earlier / 60:.0f} min" if earlier else "")
        return (f"{trained} training(s) ran in this build, {cached} of its {record.get('planned_runs', '?')} runs "
                f"were cached at its start; measured {minutes:.1f} min: neither budget applies (a first build "
                f"trains every run, {BUDGET_TRAINED_MIN} min; a rebuild none, {BUDGET_CACHED_MIN} min){first}")
    budget = BUDGET_TRAINED_MIN if trained else BUDGET_CACHED_MIN
    return (f"{trained} training(s) ran in this build; budget {budget} min; measured {minutes:.1f} min: "
            f"{'within' if minutes <= budget else 'OVER'} budget")


def build_summary(record: dict[str, Any]) -> dict[str, str]:
    """What the compute-cost page says about this build: ``text`` (its profile, dataset, start,
    total and budget lines; "" outside `make book`) and ``glue`` (the total, for the intro)."""
    if not record.get("notebooks_s"):
        return {"text": "", "glue": "not measured (executed outside make book)"}
    minutes = record["total_s"] / 60
    lines = [f"profile {record.get('profile')}, dataset {record.get('dataset')}, started {record.get('started_utc')}",
             f"total: {minutes:.1f} min on {record.get('machine')}"]
    lanes = record.get("lanes", 1)
    if lanes > 1:
        notebooks = sum(record["notebooks_s"].values()) / 60
        lines.append(f"every run was cached, so the notebooks ran {lanes} at a time: their times overlap "
                     f"(they add up to {notebooks:.1f} min)")
    budget = budget_line(record)
    return {"text": "\n".join(lines + ([budget] if budget else [])),
            "glue": f"{minutes:.1f} min (profile {record.get('profile')}, {record.get('machine')})"}


def target_checks(record: dict[str, Any], builds: pd.DataFrame, records_dir: Path) -> pd.DataFrame:
    """The default build's targets against what this build and the build log measured.

    One line per target: what is asked, what was measured, and whether it is met (``yes``,
    ``NO``, or ``not measured`` when the build or the log has no such measurement yet).
    `record` is this build's (`build_steps`), `builds` the build log (`build_history`),
    `records_dir` the table notebooks' per-seed results and checked claims.
    """
    results, checked = read_records(records_dir)
    lines = []

    def line(target: str, measured: str, met: bool | None) -> None:
        lines.append({"target": target, "measured": measured,
                      "met": "not measured" if met is None else ("yes" if met else "NO")})

    same = builds[builds["profile"] == record.get("profile")] if len(builds) else builds
    trainings = pd.to_numeric(same["trainings"], errors="coerce")  # "not recorded" in old logs
    this_build = bool(record.get("notebooks_s") and record.get("total_s"))

    def build_time(target: str, budget: float, logged: pd.DataFrame, this_kind: bool) -> None:
        """This build's total if it is of the kind, else the last logged build of the kind."""
        if this_build and this_kind:
            minutes, which = record["total_s"] / 60, "this build"
            count = record["trainings"]
        elif len(logged):
            minutes, which = float(logged["total (min)"].iloc[-1]), f"build of {logged['started (UTC)'].iloc[-1]}"
            count = logged["trainings"].iloc[-1]
        else:
            return line(target, "no such build logged yet", None)
        line(target, f"{minutes:.1f} min ({which}, {count} training(s))", minutes <= budget)

    # A first build finds none of its runs finished (every replicate's pretraining included);
    # a build that found some cached says nothing about the budget of a first one.
    cached_at_start = pd.to_numeric(same["cached at start"], errors="coerce")  # "not recorded" in old logs
    build_time(f"a first build, every run trained (pretraining included): <= {BUDGET_TRAINED_MIN} min",
               BUDGET_TRAINED_MIN, same[cached_at_start == 0], record.get("cached_at_start") == 0)
    build_time(f"a rebuild with every run cached: <= {BUDGET_CACHED_MIN} min", BUDGET_CACHED_MIN,
               same[trainings == 0], record.get("trainings") == 0)
    target = f"every table row trained with >= {TARGET_MIN_SEEDS} seeds"
    if len(results):
        seeds = results.groupby(["table", "row"])["seed"].nunique()
        line(target, f"{seeds.min()} to {seeds.max()} seeds over {len(seeds)} rows",
             bool(seeds.min() >= TARGET_MIN_SEEDS))
    else:
        line(target, "no table results recorded", None)
    target = f"every Table 4-7 claim's 95% interval on mAP: half-width <= {TARGET_HALF_WIDTH_PP} pp"
    paper = checked[checked["table"].isin(["table4", "table5", "table6", "table7"]) & (checked["metric"] == "mAP")]
    half = ((paper["ci_high"] - paper["ci_low"]) / 2).dropna() if len(paper) else pd.Series(dtype=float)
    if len(half):
        over = int((half > TARGET_HALF_WIDTH_PP).sum())
        line(target, f"largest {half.max():.2f} pp, median {half.median():.2f} pp; {over} of {len(half)} wider",
             over == 0 and len(half) == len(paper))
    else:
        line(target, "no interval (fewer than two seeds, or no table run)", None)
    low, high = TARGET_BASELINE_MAP
    target = f"the baseline's mean mAP between {low:.0f}% and {high:.0f}% (trained, not saturated)"
    baseline = results[(results["table"] == "table4") & (results["row"] == "Baseline")]["mAP"]
    if len(baseline):
        line(target, f"{baseline.mean():.1f}% (Table 4, {len(baseline)} seeds)", bool(low <= baseline.mean() <= high))
    else:
        line(target, "Table 4 not run", None)
    target = (f"the baseline's mAP across replicates (each with its own pretraining run): "
              f"sd <= {TARGET_BASELINE_SD_PP} pp")
    if len(baseline) > 1:
        sd = float(baseline.std(ddof=1))
        per_seed = ", ".join(f"{v:.2f}" for v in baseline)
        line(target, f"sd {sd:.2f} pp over {len(baseline)} replicates ({per_seed})", sd <= TARGET_BASELINE_SD_PP)
    else:
        line(target, "fewer than two replicates of Table 4's baseline", None)
    return pd.DataFrame(lines)


def last_build_minutes(builds: pd.DataFrame, profile: str) -> str:
    """The total of the last complete build of `profile` in `build_history`'s table, as text."""
    same = builds[builds["profile"] == profile]
    return f"{same['total (min)'].iloc[-1]:.1f} min" if len(same) else "not yet measured"


def build_history(log_path: Path) -> pd.DataFrame:
    """One line per complete build recorded in the build log (oldest first)."""
    log = json.loads(Path(log_path).read_text()) if Path(log_path).is_file() else []
    return pd.DataFrame([
        {
            "profile": entry["profile"],
            "dataset": entry["dataset"],
            "started (UTC)": entry["started_utc"],
            "trainings": entry.get("trainings", "not recorded"),
            "cached at start": entry.get("cached_at_start", "not recorded"),
            "notebooks (min)": round(sum(entry["notebooks_s"].values()) / 60, 1),
            "notebooks at a time": entry.get("lanes", 1),
            "HTML build (s)": entry.get("sphinx_s"),
            "total (min)": round(entry["total_s"] / 60, 1),
            "machine": entry["machine"],
        }
        for entry in log if entry.get("complete")
    ], columns=["profile", "dataset", "started (UTC)", "trainings", "cached at start", "notebooks (min)",
                "notebooks at a time", "HTML build (s)", "total (min)", "machine"])


def run_throughput(runs_dir: Path) -> pd.DataFrame:
    """Training throughput of every finished run in `runs_dir`, from its own history."""
    lines = []
    for folder in sorted(Path(runs_dir).glob("*/")) if Path(runs_dir).is_dir() else []:
        if not is_finished(folder):
            continue
        run = load_run(folder)
        history, config = run.history, run.config
        lines.append({
            "run": folder.name,
            "backbone": config.backbone,
            "input": f"{config.height}x{config.width}",
            "epochs": len(history),
            "train time (s)": round(float(history["seconds"].sum()), 1),
            "images/s": round(float(history["images"].sum() / history["seconds"].sum()), 1),
            "precision": run.metrics.get("precision", ""),
        })
    return pd.DataFrame(lines)


def benchmark_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The headline numbers of every benchmark result in `folder`, and where each was measured.

    Returns (headlines: benchmark, measurement, value; provenance: benchmark, recorded
    (UTC), machine, command), both empty when the folder holds no result.
    """
    headlines, provenance = [], []
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        recorded = data.pop("recorded", {})
        provenance.append({"benchmark": path.stem, "recorded (UTC)": recorded.get("utc", "not recorded"),
                           "machine": recorded.get("machine", "not recorded"),
                           "command": recorded.get("command", "not recorded")})
        flat = pd.json_normalize(data, sep=".").iloc[0]
        for key, value in flat.items():
            headline = any(part.endswith(BENCHMARK_HEADLINE_SUFFIXES) for part in key.split("."))
            if headline and isinstance(value, (int, float)) and not isinstance(value, bool):
                headlines.append({"benchmark": path.stem, "measurement": key, "value": round(float(value), 3)})
    return (pd.DataFrame(headlines, columns=["benchmark", "measurement", "value"]),
            pd.DataFrame(provenance, columns=["benchmark", "recorded (UTC)", "machine", "command"]))


def _mean_minutes(seconds: list[float] | None) -> float | None:
    return round(sum(seconds) / len(seconds) / 60, 1) if seconds else None


PRETRAINING_SEEDS_COMMAND = "python benchmarks/bench_pretraining_seeds.py"


def pretraining_seed_configs(epochs: int, decay: Sequence[int], seeds: Sequence[int]) -> list[TrainConfig]:
    """The runs of `benchmarks/bench_pretraining_seeds.py` for one pretraining schedule:
    replicate s fine-tunes the demo baseline (Table 4's first row) with seed s from a
    pretraining run with seed s. A schedule with a decay is a candidate of
    ``select_pretraining.py``, trained as the demo trains its own (a fifth of the pretraining
    identities held out, scored every epoch), so only the schedule differs; the earlier 2 epochs
    without decay as they were (no held-out identities)."""
    extra = {} if decay else {"val_fraction": 0.0, "eval_every": 0}
    baseline = get_table("table4").rows[0]
    return [row_config(baseline, "demo", seed, init_from=pretrain_overrides(
                "demo", epochs=epochs, lr_decay_epochs=list(decay), seed=seed, **extra))
            for seed in seeds]


def pretraining_seed_digest(epochs: int, decay: Sequence[int], seeds: Sequence[int]) -> str:
    """`studies.runs_digest` of one schedule's fine-tuned runs: what a line of the record keeps
    and the page compares (each run's hash covers its pretraining run's)."""
    return studies.runs_digest(run_dir_for(config, ".").name for config in pretraining_seed_configs(epochs, decay, seeds))


def pretraining_seed_spread(path: Path) -> tuple[pd.DataFrame, str]:
    """`benchmarks/bench_pretraining_seeds.py`'s record: the fine-tuned baseline's test mAP per
    replicate (its own pretraining seed) under each pretraining schedule, its mean and sd, the
    minutes one pretraining run took (where recorded), whether its runs are the ones this code
    trains now, and when and where it was measured (`pretraining_seed_records` reads every
    machine's)."""
    return _seed_spread(json.loads(Path(path).read_text()))


def _seed_spread(record: Mapping[str, Any]) -> tuple[pd.DataFrame, str]:
    schedules = sorted(record["schedules"], key=lambda line: line["pretraining_epochs"])
    digests = [line.get("runs_digest", "") for line in schedules]
    now = [pretraining_seed_digest(line["pretraining_epochs"], line["pretraining_lr_decay_epochs"],
                                   line.get("seeds", [0, 1, 2])) for line in schedules]
    unchecked = pd.Series([not digest for digest in digests], dtype=bool)
    stale = pd.Series([bool(digest) and digest != current for digest, current in zip(digests, now)], dtype=bool)
    lines = [{"pretraining": f"{line['pretraining_epochs']} epochs (decay after "
                             f"{','.join(map(str, line['pretraining_lr_decay_epochs'])) or 'none'})",
              "baseline test mAP per replicate": ", ".join(f"{v:.2f}" for v in line["baseline_test_mAP"]),
              "mean": round(line["mean_baseline_mAP"], 2), "sd (pp)": round(line["sd_of_baseline_mAP"], 2),
              "pretraining min a run": _mean_minutes(line.get("pretraining_train_seconds")),
              "runs": "STALE" if is_stale else ("unchecked" if is_unchecked else "current")}
             for line, is_stale, is_unchecked in zip(schedules, stale, unchecked)]
    recorded = record.get("recorded", {})
    return pd.DataFrame(lines), (f"recorded {recorded.get('utc', 'not recorded')} on {recorded.get('machine', 'not recorded')}; "
                                 + studies.currency(stale, unchecked, PRETRAINING_SEEDS_COMMAND))


PRETRAINING_SEEDS_RECORDS = "pretraining-seeds*.json"  # one record per machine kind, in benchmarks/reference/


def pretraining_seed_records(directory: Path) -> tuple[pd.DataFrame, str]:
    """Every machine's `pretraining_seed_spread` record in `directory` (``pretraining-seeds*.json``,
    oldest first), one table with a ``measured`` column (the record's date and processor) and
    one sentence per record. The same runs train to other numbers on another CPU (its bf16
    kernels differ), so a spread is a property of the machine too: the page shows each."""
    records = {path: json.loads(path.read_text()) for path in Path(directory).glob(PRETRAINING_SEEDS_RECORDS)}
    if not records:
        return pd.DataFrame(), f"not measured yet: {PRETRAINING_SEEDS_COMMAND} writes pretraining-seeds.json"
    tables, sentences = [], []
    for path, record in sorted(records.items(), key=lambda item: (item[1].get("recorded", {}).get("utc", ""),
                                                                  item[0].name)):
        table, sentence = _seed_spread(record)
        recorded = record.get("recorded", {})
        measured = f"{recorded.get('utc', 'not recorded')[:10]}, {processor_in(recorded.get('machine', 'not recorded'))}"
        tables.append(table.assign(measured=measured)[["measured", *table.columns]])
        sentences.append(f"{path.name}: {sentence}")
    return pd.concat(tables, ignore_index=True), "\n".join(sentences)
