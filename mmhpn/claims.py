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
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mmhpn.errors import ConfigError


METRICS = ("mAP", "rank1")
METRIC_LABELS = {"mAP": "mAP", "rank1": "Rank-1"}
VERDICTS = ("supported", "contradicted", "inconclusive")
CONFIDENCE = 0.95

RESULT_COLUMNS = ("table", "row", "seed", "rank1", "mAP", "train_seconds", "run_hash", "pretraining_run")
CLAIM_COLUMNS = ("table", "better", "worse", "metric", "source", "family", "per_seed", "n_seeds", "mean", "ci_low",
                 "ci_high", "verdict", "p_value", "paper_diff", "reference_dataset", "paper_reference",
                 "size_reading", "note")
# The columns `holm` adds for the paper's family (claims.csv has them after CLAIM_COLUMNS).
HOLM_COLUMNS = ("p_holm", "verdict_holm")
# The two readings of an interval against the paper's difference (`size_reading`).
AS_LARGE = "as large as the paper's"
SMALLER = "smaller than the paper's"


@dataclass(frozen=True)
class Claim:
    """`better` beats `worse` on `metric` in table `table`; `source` says who claims it.

    `paper_diffs` are the paper's own differences (better - worse, percentage points) on each
    dataset that makes the claim, the reference dataset first (Market-1501 in a synthetic
    build, the build's dataset in a real-data one); `family` marks the paper's claims, which
    are adjusted for multiplicity together (`holm`), as opposed to orderings the paper's
    numbers show but its text does not claim, and our own questions.
    """

    table: str
    better: str
    worse: str
    metric: str
    source: str
    paper_diffs: tuple[tuple[str, float], ...] = ()
    family: bool = False

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


def stated_claims(table: str, pairs: Iterable[tuple[str, str]], source: str, metrics: Sequence[str] = METRICS,
                  paper_diffs: dict | None = None, family: bool = False) -> list[Claim]:
    """Claims with a fixed source: the paper's text (e.g. Figure 5; `family` True, with the
    differences the text states, ``{(better, worse): {metric: ((dataset, diff), ...)}}``) or
    our own questions."""
    paper_diffs = paper_diffs or {}
    return [Claim(table, better, worse, metric, source, tuple(paper_diffs.get((better, worse), {}).get(metric, ())),
                  family)
            for better, worse in pairs for metric in metrics]


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
    """better - worse per seed (percentage points), over the seeds both rows were trained with.

    A per-seed value that is not a finite number is an error (a NaN would silently shrink
    the interval's n), one line naming the row and the seed.
    """
    a = results[results["row"] == better].set_index("seed")[metric]
    b = results[results["row"] == worse].set_index("seed")[metric]
    for label, values in ((better, a), (worse, b)):
        bad = [seed for seed, value in values.items() if not np.isfinite(float(value))]
        if bad:
            raise ConfigError(f"row {label!r} has a {metric} that is not a finite number for seed(s) {bad}; "
                              f"every seed's result must be a number to check a claim")
    common = a.index.intersection(b.index).sort_values()
    return (a[common] - b[common]).astype(float)


def p_value(values: Sequence[float]) -> float:
    """The two-sided p-value of the one-sample t-test of mean 0: below 1 - CONFIDENCE exactly
    when the `t_interval` excludes 0. NaN for n < 2 or zero variance (no test is possible)."""
    values = np.asarray(values, dtype=float)
    if values.size < 2 or float(values.std(ddof=1)) == 0.0:
        return math.nan
    return float(stats.ttest_1samp(values, 0.0).pvalue)


def size_reading(low: float, high: float, reference: float) -> str:
    """Our interval against the paper's difference `reference`: *as large as the paper's* when
    the paper's difference lies inside or below our interval, *smaller than the paper's* when
    our interval lies entirely below it."""
    if math.isnan(reference):
        return "no paper difference"
    if math.isnan(low) or math.isnan(high):
        return "no interval"
    return SMALLER if high < reference else AS_LARGE


def check_claims(results: pd.DataFrame, claims: Sequence[Claim], confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One line per claim: per-seed differences, their mean, the interval, the verdict, its
    p-value, and the paper's difference beside ours with the `size_reading`."""
    lines = []
    for claim in claims:
        diff = paired_differences(results, claim.better, claim.worse, claim.metric)
        mean, low, high = t_interval(diff.to_numpy(), confidence)
        reference_dataset, reference = claim.paper_diffs[0] if claim.paper_diffs else ("", math.nan)
        zero_variance = len(diff) > 1 and float(diff.std(ddof=1)) == 0.0
        lines.append({
            "table": claim.table, "better": claim.better, "worse": claim.worse, "metric": claim.metric,
            "source": claim.source, "family": claim.family,
            "per_seed": " ".join(f"{d:+.2f}" for d in diff), "n_seeds": len(diff),
            "mean": mean, "ci_low": low, "ci_high": high,
            "verdict": verdict(low, high) if len(diff) else "not run", "p_value": p_value(diff.to_numpy()),
            "paper_diff": "; ".join(f"{dataset} {value:+.1f}" for dataset, value in claim.paper_diffs),
            "reference_dataset": reference_dataset, "paper_reference": reference,
            "size_reading": size_reading(low, high, reference),
            # every seed gave the same difference: the interval has no width, which no real
            # re-run shows; usually two rows that are one run
            "note": "zero variance: every seed gave the same difference" if zero_variance else "",
        })
    return pd.DataFrame(lines, columns=list(CLAIM_COLUMNS))


def holm(checked: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """`checked` with Holm-adjusted p-values and verdicts for the paper's family of claims.

    The family is every line with ``family`` True, across all tables of the build. Holm's
    step-down method: sort the m p-values, multiply the k-th smallest by m - k + 1, make the
    sequence non-decreasing, cap at 1. A family claim is *supported* (or *contradicted*) after
    adjustment when its adjusted p-value is below 1 - `confidence` and its mean is above (or
    below) 0; this keeps the probability of any false verdict in the family at most 5%. A
    claim without a p-value (one seed, zero variance) counts as p = 1. Lines outside the
    family get no adjusted verdict.
    """
    out = checked.copy()
    out[HOLM_COLUMNS[0]] = math.nan
    out[HOLM_COLUMNS[1]] = ""
    family = out.index[out["family"].astype(bool) & (out["n_seeds"] > 0)]
    if len(family) == 0:
        return out
    p = out.loc[family, "p_value"].astype(float).fillna(1.0).to_numpy()
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    out.loc[family, "p_holm"] = adjusted
    alpha = 1 - confidence
    means = out.loc[family, "mean"].to_numpy()
    out.loc[family, "verdict_holm"] = np.where(adjusted < alpha, np.where(means > 0, "supported", "contradicted"),
                                               "inconclusive")
    return out


def interval_text(line: Mapping, digits: int = 1) -> str:
    """A checked line's mean difference with its interval, e.g. '+1.6 [+1.4, +1.8]' (or why there is none)."""
    if line["n_seeds"] == 0:
        return "not run"
    if math.isnan(line["ci_low"]):
        return f"{line['mean']:+.{digits}f} (no interval: {line['n_seeds']} seed)"
    return f"{line['mean']:+.{digits}f} [{line['ci_low']:+.{digits}f}, {line['ci_high']:+.{digits}f}]"


def claims_table(checked: pd.DataFrame) -> pd.DataFrame:
    """`check_claims`' output as a reader sees it: claim, source, Δ with its interval, verdict,
    the paper's difference and how ours compares with it (and, after `holm`, the adjusted verdict)."""
    return pd.DataFrame({
        "claim": [f"{b} > {w}" for b, w in zip(checked["better"], checked["worse"])],
        "metric": checked["metric"].map(METRIC_LABELS).fillna(checked["metric"]),
        "claimed by": checked["source"],
        "per seed (pp)": checked["per_seed"],
        f"mean Δ [{CONFIDENCE:.0%} CI] (pp)": [interval_text(line) for _, line in checked.iterrows()],
        "verdict": checked["verdict"],
        **({"verdict (Holm, the paper's claims)": checked["verdict_holm"].replace("", "-")}
           if "verdict_holm" in checked else {}),
        "paper's Δ (pp)": checked["paper_diff"].fillna("").replace("", "-"),
        "size": checked["size_reading"],
    })


def verdict_sentence(checked: pd.DataFrame) -> str:
    """One plain sentence counting the verdicts, for the book's prose."""
    counts = checked["verdict"].value_counts()
    total = len(checked)
    parts = [f"{counts[v]} of {total} {'is' if counts[v] == 1 else 'are'} {v}"
             for v in (*VERDICTS, "not run") if counts.get(v, 0)]
    return "; ".join(parts) if parts else "no claim could be checked"


def claim_groups(checked: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The checked lines split by who makes them: the paper's claims (its family), the
    orderings the paper's numbers show without a claim in its text, and our own questions."""
    family = checked["family"].astype(bool)
    ours = checked["source"].str.contains("(ours)", regex=False)
    return {"the paper's claims": checked[family], "orderings the paper's numbers show without claiming them":
            checked[~family & ~ours], "our own questions": checked[~family & ours]}


def verdict_summary(checked: pd.DataFrame) -> str:
    """The verdicts counted separately for the paper's claims (with the Holm-adjusted count and
    how many are as large as the paper's), for its numbers-only orderings and for our own
    questions: one sentence for the book's prose. `checked` has been through `holm`."""
    parts = []
    for name, lines in claim_groups(checked).items():
        if lines.empty:
            continue
        text = f"of {name} ({len(lines)}), {verdict_sentence(lines)}"
        if "verdict_holm" in lines and lines["verdict_holm"].ne("").any():
            held = int((lines["verdict_holm"] == "supported").sum())
            text += f" ({held} supported after Holm's adjustment for the family"
            sized = lines["size_reading"].isin([AS_LARGE, SMALLER])
            text += (f"; {int((lines['size_reading'] == AS_LARGE).sum())} of the {int(sized.sum())} with a "
                     f"paper difference are as large as the paper's)")
        parts.append(text)
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
        "pretraining_run": results["pretraining_run"] if "pretraining_run" in results else "",
    }, columns=list(RESULT_COLUMNS))


def write_records(table: str, results: pd.DataFrame, checked: pd.DataFrame, records_dir: str | Path) -> None:
    """Save one table's per-seed results and checked claims under `records_dir`."""
    from mmhpn.atomic import atomic_write_text

    records_dir = Path(records_dir)
    records_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(records_dir / f"{table}.results.csv", result_records(table, results).to_csv(index=False))
    atomic_write_text(records_dir / f"{table}.claims.csv", checked.to_csv(index=False))


LABEL_COLUMNS = ("table", "row", "better", "worse", "metric")  # names, even when they look like numbers


def read_csv(path: str | Path) -> pd.DataFrame:
    """A recorded CSV with its row and claim labels as text: read alone, Figure 5's rows ("1", "2",
    "4") would come back as numbers and no longer match the labels they were written from."""
    return pd.read_csv(path, dtype={column: str for column in LABEL_COLUMNS})


def read_records(records_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, claims) of every table recorded under `records_dir`, in file-name order."""
    records_dir = Path(records_dir)

    def gather(suffix: str, columns: Sequence[str]) -> pd.DataFrame:
        frames = [read_csv(path) for path in sorted(records_dir.glob(f"*.{suffix}.csv"))]
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True)[list(columns)] if frames else pd.DataFrame(columns=list(columns))

    return gather("results", RESULT_COLUMNS), gather("claims", CLAIM_COLUMNS)
