"""Claims and verdicts: does what we measured support an ordering the paper claims?

A *claim* says that one row of a table beats another on one metric ("Baseline+MSM beats
Baseline in mAP"). We check it on paired trainings: both rows trained with the same seeds,
and for every seed s the difference ``d_s = better_s - worse_s`` (percentage points). Seeds
are the unit of replication, so the interval below includes seed-to-seed variation (weight
initialisation, batch order, flips), which is what makes two runs of one configuration
disagree.

Interval: the 95% Student-t interval of the mean paired difference over the n seeds,

    mean(d) +/- t_{0.975, n-1} * sd(d) / sqrt(n),

and the verdict is read off it: **supported** when the whole interval is above 0,
**contradicted** when it is below 0, **inconclusive** when it contains 0. With fewer than
two seeds there is no interval, and the verdict is *inconclusive*. (A t-interval over 3
seeds is wide - t_{0.975, 2} = 4.30 - which is the honest price of few seeds.)

Which claims the paper makes. A table's `claims` pairs (`mmhpn.paper.tables.TableSpec`)
are checked, metric by metric, only where the paper's own numbers show them: a pair is a
claim on a metric for the datasets whose paper numbers have ``better > worse``
(`paper_support`), and not a claim on that metric if no dataset shows it (the paper's
Table 6 has GMP above APS in CUHK03 mAP and Duke Rank-1, so "APS beats GMP" is claimed on
the other datasets only). Claims from the paper's text (Figure 5) name the section; and
comparisons that are ours, not the paper's (controls, the layout table), say so.
(`mmhpn.paper.numbers.table_claims` assembles a table's claims from these pieces.)

`write_records` / `read_records` keep each table's per-seed results and checked claims as
CSV files, from which the book build (`mmhpn.bookbuild.pipeline`) assembles ``results.csv``
and ``claims.csv``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats


METRICS = ("mAP", "rank1")
METRIC_LABELS = {"mAP": "mAP", "rank1": "Rank-1"}
VERDICTS = ("supported", "contradicted", "inconclusive")
CONFIDENCE = 0.95

RESULT_COLUMNS = ("table", "row", "seed", "rank1", "mAP", "train_seconds", "run_hash")
CLAIM_COLUMNS = ("table", "better", "worse", "metric", "source", "per_seed", "n_seeds", "mean", "ci_low",
                 "ci_high", "verdict")


@dataclass(frozen=True)
class Claim:
    """`better` beats `worse` on `metric` in table `table`; `source` says who claims it."""

    table: str
    better: str
    worse: str
    metric: str
    source: str

    @property
    def text(self) -> str:
        return f"{self.better} > {self.worse} ({METRIC_LABELS.get(self.metric, self.metric)})"


# ---------------------------------------------------------------------------------------
# which claims


def paper_support(paper_rows: pd.DataFrame, better: str, worse: str, metric: str) -> list[str]:
    """The datasets (in file order) whose paper numbers show ``better > worse`` for `metric`.

    `paper_rows` holds one table's single-query numbers (columns row, dataset, rank1, mAP).
    """
    shown = []
    for dataset in dict.fromkeys(paper_rows["dataset"]):
        rows = paper_rows[paper_rows["dataset"] == dataset].set_index("row")[metric]
        if better in rows.index and worse in rows.index and rows[better] > rows[worse]:
            shown.append(dataset)
    return shown


def stated_claims(table: str, pairs: Iterable[tuple[str, str]], source: str,
                  metrics: Sequence[str] = METRICS) -> list[Claim]:
    """Claims with a fixed source: the paper's text (e.g. Figure 5) or our own questions."""
    return [Claim(table, better, worse, metric, source) for better, worse in pairs for metric in metrics]


# ---------------------------------------------------------------------------------------
# intervals and verdicts


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean; low/high are NaN for n < 2."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def verdict(low: float, high: float) -> str:
    """supported (interval above 0), contradicted (below 0), inconclusive (contains 0 or undefined)."""
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def paired_differences(results: pd.DataFrame, better: str, worse: str, metric: str) -> pd.Series:
    """better - worse per seed (percentage points), over the seeds both rows were trained with."""
    a = results[results["row"] == better].set_index("seed")[metric]
    b = results[results["row"] == worse].set_index("seed")[metric]
    common = a.index.intersection(b.index).sort_values()
    return (a[common] - b[common]).astype(float)


def check_claims(results: pd.DataFrame, claims: Sequence[Claim], confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One line per claim: per-seed differences, their mean, the interval and the verdict."""
    lines = []
    for claim in claims:
        diff = paired_differences(results, claim.better, claim.worse, claim.metric)
        mean, low, high = t_interval(diff.to_numpy(), confidence)
        lines.append({
            "table": claim.table, "better": claim.better, "worse": claim.worse, "metric": claim.metric,
            "source": claim.source, "per_seed": " ".join(f"{d:+.2f}" for d in diff), "n_seeds": len(diff),
            "mean": mean, "ci_low": low, "ci_high": high,
            "verdict": verdict(low, high) if len(diff) else "not run",
        })
    return pd.DataFrame(lines, columns=list(CLAIM_COLUMNS))


def claims_table(checked: pd.DataFrame) -> pd.DataFrame:
    """`check_claims`' output as a reader sees it: claim, source, Δ with its interval, verdict."""
    def interval(line) -> str:
        if line["n_seeds"] == 0:
            return "not run"
        if math.isnan(line["ci_low"]):
            return f"{line['mean']:+.1f} (no interval: {line['n_seeds']} seed)"
        return f"{line['mean']:+.1f} [{line['ci_low']:+.1f}, {line['ci_high']:+.1f}]"

    return pd.DataFrame({
        "claim": [f"{b} > {w}" for b, w in zip(checked["better"], checked["worse"])],
        "metric": checked["metric"].map(METRIC_LABELS).fillna(checked["metric"]),
        "claimed by": checked["source"],
        "per seed (pp)": checked["per_seed"],
        f"mean Δ [{CONFIDENCE:.0%} CI] (pp)": [interval(line) for _, line in checked.iterrows()],
        "verdict": checked["verdict"],
    })


def verdict_sentence(checked: pd.DataFrame) -> str:
    """One plain sentence counting the verdicts, for the book's prose."""
    counts = checked["verdict"].value_counts()
    total = len(checked)
    parts = [f"{counts[v]} of {total} {'is' if counts[v] == 1 else 'are'} {v}"
             for v in (*VERDICTS, "not run") if counts.get(v, 0)]
    return "; ".join(parts) if parts else "no claim could be checked"


# ---------------------------------------------------------------------------------------
# records for the book's CSV files


def result_records(table: str, results: pd.DataFrame) -> pd.DataFrame:
    """`mmhpn.paper.planner.run_rows` output as results.csv lines (table, row, seed, ...)."""
    return pd.DataFrame({
        "table": table,
        "row": results["row"],
        "seed": results["seed"].astype(int),
        "rank1": results["rank1"],
        "mAP": results["mAP"],
        "train_seconds": results["train_s"],
        "run_hash": results["run_hash"],
    }, columns=list(RESULT_COLUMNS))


def write_records(table: str, results: pd.DataFrame, checked: pd.DataFrame, records_dir: str | Path) -> None:
    """Save one table's per-seed results and checked claims under `records_dir`."""
    from mmhpn.atomic import atomic_write_text

    records_dir = Path(records_dir)
    records_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(records_dir / f"{table}.results.csv", result_records(table, results).to_csv(index=False))
    atomic_write_text(records_dir / f"{table}.claims.csv", checked.to_csv(index=False))


def read_records(records_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, claims) of every table recorded under `records_dir`, in file-name order."""
    records_dir = Path(records_dir)

    def gather(suffix: str, columns: Sequence[str]) -> pd.DataFrame:
        frames = [pd.read_csv(path) for path in sorted(records_dir.glob(f"*.{suffix}.csv"))]
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True)[list(columns)] if frames else pd.DataFrame(columns=list(columns))

    return gather("results", RESULT_COLUMNS), gather("claims", CLAIM_COLUMNS)
