"""Schedule sensitivity (issue #19): the verdicts under the regime selection's other schedules.

The demo profile fine-tunes 5 epochs with the lr decay after 3, the schedule the regime
selection's rule chose on validation identities (`mmhpn.paper.selection.choose_regime`,
``mmhpn/resources/regime-selection.json``). Would another candidate have given other verdicts?
`run_sensitivity` trains every row a claim needs (Tables 4-7, the layouts page, Figure 5;
`CLAIM_KEYS`) under each of `SCHEDULES`, two of the candidates that selection measured, with
the book's seeds (whole replicates, each from its own pretraining run), and checks the very
claims the book checks with the same machinery (`mmhpn.paper.numbers.check_table`, Holm's
adjustment per schedule). It selects nothing: the default stays the rule's choice, and these
verdicts are shown beside it, labelled, on the verdicts page (`comparison`).

``make sensitivity`` (``benchmarks/schedule_sensitivity.py``) runs it and writes
``benchmarks/reference/schedule-sensitivity.csv`` for the demo profile (`STUDY`), keeping the
recorded lines of any schedule it did not run (`merge_recorded`). Each line names its seeds
and the runs it came from (``runs_digest``: `key_digest`), so the verdicts page can say when a
recorded schedule is stale (`stale_lines`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from mmhpn import claims
from mmhpn.config import make_config
from mmhpn.errors import ConfigError
from mmhpn.paper import numbers, registry, studies
from mmhpn.paper.planner import planned_names, run_rows
from mmhpn.paper.selection import parse_schedule, schedule_label
from mmhpn.paper.tables import FIGURE5_STRIPES

SCHEDULES = ("6:4", "10:7")  # epochs:decay epoch; candidates of the recorded regime selection (a test checks)
CLAIM_KEYS = ("table4", "table5", "table6", "table7", "layouts", "figure5")  # every notebook that checks claims
COLUMNS = ("schedule", *claims.CLAIM_COLUMNS, *claims.HOLM_COLUMNS, "seeds", "runs_digest", "trained_now",
           "wall_minutes", *studies.RECORD_COLUMNS)
STUDY = studies.Study("schedule-sensitivity", "make sensitivity", COLUMNS)
DEFAULT_LABEL = "default"  # the build's own verdicts, in `comparison`


def profile_schedule(profile: str) -> str:
    """The fine-tuning schedule `profile` trains by default, e.g. '5:3'."""
    config = make_config(profile)
    return schedule_label(config.epochs, config.lr_decay_epochs)


def key_rows(key: str, seeds: Sequence[int]):
    """The rows and seeds notebook `key` trains with its default parameters (the book's)."""
    return registry.notebook_rows(key, {"seeds": list(seeds), "stripe_counts": list(FIGURE5_STRIPES)})


def key_digest(profile: str, key: str, seeds: Sequence[int], schedule: str, **fields) -> str:
    """The runs notebook `key`'s claims come from under `schedule` ('epochs:decay'), as
    `studies.runs_digest` of their folder names: what a line records and `stale_lines` compares."""
    epochs, decay = parse_schedule(schedule)
    rows, key_seeds = key_rows(key, seeds)
    return studies.runs_digest(planned_names(rows, profile, key_seeds, epochs=epochs, lr_decay_epochs=list(decay),
                                             **fields))


def run_sensitivity(profile: str, seeds: Sequence[int], schedules: Sequence[str] = SCHEDULES,
                    keys: Sequence[str] = CLAIM_KEYS, runs_dir: str = "runs", dataset: str = "synthetic",
                    say: Callable[[str], None] = print, **fields) -> pd.DataFrame:
    """Train or load the rows of `keys` under each schedule ('epochs:decay') and check their
    claims; one line per schedule, claim and metric (`COLUMNS`). `fields` are TrainConfig
    fields every run gets (the device)."""
    unknown = [key for key in keys if key not in CLAIM_KEYS]
    if unknown or not keys:
        raise ConfigError(f"sensitivity keys must be some of {list(CLAIM_KEYS)}; got {list(keys)}")
    try:
        parsed = [(text, *parse_schedule(text)) for text in schedules]
    except ValueError:
        raise ConfigError(f"schedules must be epochs:decay, e.g. 6:4 or 10:7; got {list(schedules)}") from None
    if not parsed:
        raise ConfigError("schedules must name at least one, e.g. 6:4")
    frames = []
    for text, epochs, decay in parsed:
        checked_all = []
        for key in keys:
            rows, key_seeds = key_rows(key, seeds)
            started = time.perf_counter()
            results = run_rows(rows, profile, key_seeds, runs_dir=runs_dir, epochs=epochs,
                               lr_decay_epochs=list(decay), **fields)
            minutes = (time.perf_counter() - started) / 60
            checked = numbers.check_table(key, results, dataset=dataset)
            checked["seeds"] = " ".join(str(int(seed)) for seed in seeds)
            checked["runs_digest"] = key_digest(profile, key, seeds, text, **fields)
            checked["trained_now"] = int(results["trained_now"].sum())
            checked["wall_minutes"] = minutes
            checked_all.append(checked)
            say(f"schedule sensitivity: {text} | {key}: {int(results['trained_now'].sum())} of {len(results)} runs "
                f"trained, {minutes:.1f} min; {claims.verdict_sentence(checked)}")
        schedule = claims.holm(pd.concat(checked_all, ignore_index=True))
        schedule.insert(0, "schedule", schedule_label(epochs, decay))
        frames.append(schedule)
    return STUDY.stamp(pd.concat(frames, ignore_index=True), profile)


def merge_recorded(recorded: pd.DataFrame | None, measured: pd.DataFrame) -> pd.DataFrame:
    """`measured` with the lines of `recorded` (the CSV written before, or None) for the
    schedules `measured` did not run, so that ``make sensitivity SCHEDULES=10:7`` adds a schedule
    to the record instead of dropping the others. A schedule is replaced whole (Holm's
    adjustment is per schedule); both frames must come from one profile."""
    if recorded is None or recorded.empty:
        return measured
    profiles = sorted(set(recorded["profile"].astype(str)) | set(measured["profile"].astype(str)))
    if len(profiles) > 1:
        raise ConfigError(f"the recorded sensitivity and this one come from the profiles {profiles}; one study "
                          f"holds one profile (write this one elsewhere with --out)")
    kept = recorded[~recorded["schedule"].astype(str).isin(set(measured["schedule"].astype(str)))]
    order = {text: i for i, text in enumerate(SCHEDULES)}  # SCHEDULES' order, any other schedule last
    return (pd.concat([kept, measured], ignore_index=True)
            .sort_values("schedule", kind="stable", key=lambda col: col.astype(str).map(lambda s: order.get(s, len(order))))
            .reset_index(drop=True))


def stale_lines(sensitivity: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(stale, unchecked): the lines whose recorded runs are not the ones this code would train
    for their profile, notebook, seeds and schedule (`key_digest`; a profile or notebook no
    longer defined counts as stale), and the lines recorded before the study named its runs."""
    digests = sensitivity["runs_digest"].map(lambda value: "" if pd.isna(value) else str(value))
    unchecked = digests.eq("")
    stale = pd.Series(False, index=sensitivity.index)
    expected: dict[tuple[str, ...], str] = {}
    for index, line in sensitivity[~unchecked].iterrows():
        what = tuple(str(line[name]) for name in ("profile", "table", "seeds", "schedule"))
        if what not in expected:
            profile, key, seeds, schedule = what
            try:
                expected[what] = (key_digest(profile, key, [int(s) for s in seeds.split()], schedule)
                                  if key in CLAIM_KEYS else "")
            except (ConfigError, ValueError):
                expected[what] = ""
        stale[index] = expected[what] != digests[index]
    return stale, unchecked


def _cell(line) -> str:
    text = claims.interval_text(line, digits=2)
    return text if line["n_seeds"] == 0 else f"{text} {line['verdict']}"


CLAIM_KEY = ["table", "better", "worse", "metric"]


def comparison(checked: pd.DataFrame, sensitivity: pd.DataFrame, default_schedule: str) -> pd.DataFrame:
    """One line per claim and metric: the build's own verdict (its schedule `default_schedule`)
    and the verdict under each schedule of `sensitivity`, each as 'mean [95% CI] verdict', and
    how many of the schedules give the default's verdict. A schedule's header is marked
    "(stale)" or "(unchecked)" when some of its lines are (`stale_lines`)."""
    schedules = list(dict.fromkeys(sensitivity["schedule"].astype(str)))
    stale, unchecked = stale_lines(sensitivity)
    marks = {}  # a schedule's header says when its lines cannot be read as this code's
    for s in schedules:
        lines = sensitivity["schedule"].astype(str) == s
        marks[s] = " (stale)" if stale[lines].any() else " (unchecked)" if unchecked[lines].any() else ""
    columns = {DEFAULT_LABEL: checked, **{s: sensitivity[sensitivity["schedule"].astype(str) == s]
                                          for s in schedules}}
    lines = []
    for _, line in checked.iterrows():
        out = {"table": line["table"], "claim": f"{line['better']} > {line['worse']}",
               "metric": claims.METRIC_LABELS.get(line["metric"], line["metric"])}
        verdicts = []
        for label, frame in columns.items():
            match = frame[(frame[CLAIM_KEY] == line[CLAIM_KEY]).all(axis=1)]
            header = f"{default_schedule} ({DEFAULT_LABEL})" if label == DEFAULT_LABEL else label + marks[label]
            if match.empty:
                out[header] = "not measured"
                continue
            out[header] = _cell(match.iloc[0])
            verdicts.append(match.iloc[0]["verdict"])
        out["same verdict"] = (f"{sum(v == verdicts[0] for v in verdicts[1:])} of {len(verdicts) - 1}"
                               if len(verdicts) > 1 else "-")
        lines.append(out)
    return pd.DataFrame(lines)


def changed_sentence(checked: pd.DataFrame, sensitivity: pd.DataFrame | None, path: str | Path,
                     processor: str | None = None) -> str:
    """How many of the build's verdicts each other schedule keeps and whether the recorded lines
    come from the runs this code trains (`studies.Study.currency`), or that the sensitivity run
    has not been measured yet. With `processor` (the build's CPU model), it
    names the schedules measured on another CPU: the same configuration trains to other
    numbers there (bf16 kernels differ), so their column differs by the machine as well."""
    if sensitivity is None:
        return STUDY.not_measured(path)
    parts, elsewhere = [], []
    for schedule, frame in sensitivity.groupby(sensitivity["schedule"].astype(str), sort=False):
        if processor and not frame["machine"].astype(str).str.contains(processor, regex=False).all():
            elsewhere.append(schedule)
        merged = checked.merge(frame, on=CLAIM_KEY, suffixes=("", "_other"))
        kept = int((merged["verdict"] == merged["verdict_other"]).sum())
        decided = {"supported", "contradicted"}
        reversed_ = int((merged["verdict"].isin(decided) & merged["verdict_other"].isin(decided)
                         & (merged["verdict"] != merged["verdict_other"])).sum())
        parts.append(f"under {schedule} {kept} of {len(merged)} verdicts are the default's and {reversed_} "
                     f"{'is' if reversed_ == 1 else 'are'} reversed (supported against contradicted); the others "
                     f"move between a decided verdict and inconclusive")
    currency = STUDY.currency(*stale_lines(sensitivity))
    sentence = f"{STUDY.measured(sensitivity)}: " + "; ".join(parts) + f". {currency[0].upper()}{currency[1:]}."
    if elsewhere:
        sentence += (f" {', '.join(elsewhere)} {'was' if len(elsewhere) == 1 else 'were'} measured on another CPU "
                     f"than this build's ({processor}): the same configuration can train to other numbers on another "
                     f"CPU, so that column differs from the default's by the machine as well as the schedule.")
    return sentence
