"""A study's recorded CSV: what `make proxy-study` and `make sensitivity` write and the
book's pages read (`mmhpn.paper.proxy`, `mmhpn.paper.sensitivity`).

A study trains more than the book does, so the book reads its result from a CSV instead of
running it. The demo profile's CSV is committed under ``benchmarks/reference/`` (`Study.reference`);
any other profile's goes to ``benchmarks/results/`` (not committed), so a smoke study can never
pass for the real one. Each line carries the profile, the machine and the time it was recorded,
and names the runs it was computed from by their configuration hashes (`TrainConfig.hash`:
the fields, the pretraining run fine-tuned from, the code versions), so that the book can say
when a recorded study is stale: computed from runs this code would not train now
(`Study.currency`). A cached result must not outlive the code that produced it, and a study
is a cached result the run cache cannot see.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from mmhpn.claims import read_csv
from mmhpn.errors import ConfigError
from mmhpn.provenance import machine_description

RESULTS_DIR = Path("benchmarks/results")  # any profile but the reference's (not committed)
REFERENCE_PROFILE = "demo"
RECORD_COLUMNS = ("profile", "machine", "recorded_utc")  # the last columns of every study's CSV


def runs_digest(run_names: Iterable[str]) -> str:
    """16 hex digits of sha256 over the distinct run folder names (name-hash), sorted: one
    short name for the runs a study line was computed from. Each folder name ends in its
    configuration hash, so the digest changes whenever a run's fields, pretraining run or code
    version does."""
    return hashlib.sha256("\n".join(sorted(set(run_names))).encode("utf-8")).hexdigest()[:16]


def currency(stale: pd.Series, unchecked: pd.Series | None, command: str) -> str:
    """One clause on whether a record's lines come from the runs this code trains now: `stale`
    marks the lines whose recorded runs differ from the ones this code would train, `unchecked`
    the lines recorded before the record named its runs (nothing to compare); `command` records
    them again."""
    total = len(stale)
    unchecked = pd.Series(False, index=stale.index) if unchecked is None else unchecked
    if stale.any():
        return (f"STALE: {int(stale.sum())} of {total} lines come from runs this code would not train now "
                f"(another configuration, pretraining run or code version); re-run `{command}` before "
                f"reading them")
    if unchecked.any():
        return (f"{int(unchecked.sum())} of {total} lines were recorded before the record named its runs, so "
                f"whether they come from the runs this code trains cannot be checked (`{command}` "
                f"records them again)")
    return "every line comes from the runs this code trains now (checked by their configuration hashes)"


@dataclass(frozen=True)
class Study:
    """Where a study is recorded and what its CSV holds."""

    name: str  # file stem, e.g. "proxy-study"
    command: str  # what writes it, e.g. "make proxy-study"
    columns: tuple[str, ...]  # its columns, RECORD_COLUMNS last

    @property
    def reference(self) -> Path:
        return Path("benchmarks/reference") / f"{self.name}.csv"

    def path(self, profile: str) -> Path:
        """The reference CSV for the demo profile, ``benchmarks/results/<name>-<profile>.csv`` for any other."""
        return self.reference if profile == REFERENCE_PROFILE else RESULTS_DIR / f"{self.name}-{profile}.csv"

    def stamp(self, frame: pd.DataFrame, profile: str) -> pd.DataFrame:
        """`frame` with the profile, this machine and the time now, in `columns`' order."""
        frame = frame.copy()
        frame["profile"] = profile
        frame["machine"] = machine_description()
        frame["recorded_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return frame[list(self.columns)]

    def write(self, frame: pd.DataFrame, path: str | Path) -> Path:
        """Write `frame` to `path` (CSV, atomically). The reference CSV takes only the reference
        profile's study: a smoke study written there would pass for the real one."""
        from mmhpn.atomic import atomic_write_text

        path = Path(path)
        profiles = sorted(set(frame["profile"]))
        if path.resolve() == self.reference.resolve() and profiles != [REFERENCE_PROFILE]:
            raise ConfigError(f"{self.reference} holds the {REFERENCE_PROFILE} profile's {self.name}, not "
                              f"{profiles}; write it elsewhere (default {RESULTS_DIR}/{self.name}-<profile>.csv)")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, frame[list(self.columns)].to_csv(index=False))
        return path

    def read(self, path: str | Path) -> pd.DataFrame | None:
        """The study written at `path`, or None when there is no file yet (not yet measured)."""
        path = Path(path)
        if not path.is_file():
            return None
        frame = read_csv(path)
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ConfigError(f"{path} lacks the column(s) {missing}; expected a {self.name} written by "
                              f"`{self.command}` (columns {list(self.columns)})")
        return frame

    def not_measured(self, path: str | Path) -> str:
        return f"not yet measured: {path} does not exist; `{self.command}` writes it (every run through the run cache)"

    def currency(self, stale: pd.Series, unchecked: pd.Series | None = None) -> str:
        """`currency` of this study's lines, naming the command that records them again."""
        return currency(stale, unchecked, self.command)

    def measured(self, frame: pd.DataFrame) -> str:
        """When, on what machine and with which profile the study was measured."""
        return (f"measured {', '.join(sorted(set(frame['recorded_utc'])))} (UTC) on "
                f"{'; '.join(sorted(set(frame['machine'])))}; profile {', '.join(sorted(set(frame['profile'])))}")
