"""The paper's own numbers and the claims they make, and checking those claims on our results.

`paper_numbers` are Tables 1-7 as transcribed in ``mmhpn/resources/paper_tables.csv`` (with
their source); `paper_table` shows one of them. `table_claims` assembles what is checked for a
table: the paper's ordering claims where its own numbers show them (`paper_claims`, metric by
metric), Figure 5's claims from the paper's text, and our own questions; `check_table` checks
them on per-seed results with a confidence interval and a verdict (`mmhpn.claims`).
"""
from __future__ import annotations

import io
from typing import Iterable, Sequence

import pandas as pd

from mmhpn import claims
from mmhpn.errors import ConfigError
from mmhpn.paper.tables import FIGURE5_CLAIMS, FIGURE5_DIFFS, FIGURE5_SOURCE, OURS, get_table
from mmhpn.resources import read_text

PAPER_DATASETS = {"market1501": "Market-1501", "dukemtmc-reid": "DukeMTMC-reID", "cuhk03-np": "CUHK03"}


def paper_numbers() -> pd.DataFrame:
    """All numbers transcribed from the paper's Tables 1-7 (with their source)."""
    return pd.read_csv(io.StringIO(read_text("paper_tables.csv")), comment="#")


def paper_difference(key: str, better: str, worse: str, metric: str, dataset: str = "market1501",
                     numbers: pd.DataFrame | None = None) -> float:
    """The paper's own single-query difference ``better - worse`` (pp) in table `key` on `dataset`.

    `numbers`: `paper_numbers()` already read, when many differences are looked up at once.
    """
    numbers = paper_numbers() if numbers is None else numbers
    rows = numbers[(numbers["table"] == key) & (numbers["dataset"] == dataset)
                   & (numbers["setting"] == "single_query")].set_index("row")[metric]
    missing = [row for row in (better, worse) if row not in rows.index]
    if missing:
        raise ConfigError(f"no paper numbers for {missing} in {key} on {dataset}")
    return round(float(rows[better] - rows[worse]), 2)


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


def paper_claims(key: str, pairs: Iterable[tuple], metrics: Sequence[str] = claims.METRICS,
                 dataset: str = "synthetic", numbers_only: bool = False) -> list[claims.Claim]:
    """The `pairs` of paper table `key` that the paper's own numbers show, metric by metric.

    A pair ``(better, worse[, metrics])`` is a claim on a metric for the datasets whose
    single-query numbers have ``better > worse`` (named in the claim's source, with the
    paper's difference on each), and no claim where none does. In a build on one of the
    paper's datasets only that dataset's numbers count (a CUHK03 build does not check what
    only Market-1501's numbers show); in a synthetic build all three do, and the reference
    for the size reading is Market-1501's difference where it shows the claim.
    `numbers_only` pairs are orderings the text does not claim: outside the paper's family.
    """
    numbers = paper_numbers()
    rows = numbers[(numbers["table"] == key) & (numbers["setting"] == "single_query")]
    if dataset in PAPER_DATASETS:
        rows = rows[rows["dataset"] == dataset]
    if rows.empty:
        raise ConfigError(f"no paper numbers for table {key!r}, so none of its claims can be checked")
    found = []
    for pair in pairs:
        better, worse = pair[0], pair[1]
        for metric in (pair[2] if len(pair) > 2 else metrics):
            shown = claims.paper_support(rows, better, worse, metric)
            if shown:
                diffs = tuple((PAPER_DATASETS.get(d, d), paper_difference(key, better, worse, metric, d, numbers))
                              for d in shown)
                source = "paper: " + ", ".join(PAPER_DATASETS.get(d, d) for d in shown)
                if numbers_only:
                    source = "paper's numbers only (the text claims no order): " + ", ".join(
                        PAPER_DATASETS.get(d, d) for d in shown)
                found.append(claims.Claim(key, better, worse, metric, source, diffs, family=not numbers_only))
    return found


def table_claims(key: str, dataset: str = "synthetic") -> list[claims.Claim]:
    """The claims checked for a table (`mmhpn.claims`) in a build on `dataset`: its paper claims
    where the paper's own numbers show them, metric by metric, the orderings its numbers show
    without a claim in the text, and its `questions` (ours, not the paper's)."""
    if key == "figure5":
        if dataset in PAPER_DATASETS and dataset != "market1501":  # the text's numbers are Market-1501's
            return []
        return claims.stated_claims("figure5", FIGURE5_CLAIMS, FIGURE5_SOURCE, paper_diffs=FIGURE5_DIFFS,
                                    family=True)
    spec = get_table(key)
    found = paper_claims(key, spec.claims, dataset=dataset) if spec.claims else []
    if spec.numbers_only:
        found += paper_claims(key, spec.numbers_only, dataset=dataset, numbers_only=True)
    return found + claims.stated_claims(key, spec.questions, OURS)


def check_table(key: str, results: pd.DataFrame, records_dir: str = "", dataset: str = "synthetic") -> pd.DataFrame:
    """`mmhpn.claims.check_claims` for every claim of table `key` in a build on `dataset` (one
    line per claim and metric).

    With `records_dir`, the per-seed results and the checked claims are also saved there
    (`mmhpn.claims.write_records`; the book's results.csv and claims.csv are built from them).
    """
    checked = claims.check_claims(results, table_claims(key, dataset))
    if records_dir:
        claims.write_records(key, results, checked, records_dir)
    return checked


def paper_notes(tables: Sequence[str]) -> pd.DataFrame:
    """The notes recorded beside the paper's numbers of `tables` (inconsistencies, sources)."""
    numbers = paper_numbers()
    notes = numbers[numbers["table"].isin(list(tables)) & numbers["note"].notna()]
    return notes[["table", "row", "dataset", "note"]]
