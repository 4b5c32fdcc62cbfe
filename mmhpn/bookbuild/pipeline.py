"""The book build's steps in order (`run_pipeline`, what `mmhpn book` runs): the data, every
notebook of the toc executed with papermill, results.csv and claims.csv, MathJax, the HTML,
and the build log the compute-cost page reads (see `mmhpn.bookbuild`).

A build that finds every run it plans already finished executes its notebooks two at a time
(`execute_in_lanes`; a page that reads earlier pages waits for them); one that trains
anything executes them one at a time.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from mmhpn.atomic import atomic_write_json, atomic_write_text
from mmhpn.bookbuild import BookBuildError
from mmhpn.bookbuild.execute import declared_parameters, execute_notebook
from mmhpn.bookbuild.layout import (BUILD_LOG, CLAIMS_CSV, EXECUTED, HTML, LOGS, NOTEBOOKS, RECORDS, REPO_ROOT,
                                    RESULTS_CSV, STATIC, log_path, notebook_order, notebook_path, shown)
from mmhpn.bookbuild.non_default import banner_config, check_values, marked_pages, shown_values
from mmhpn.bookbuild.offline import external_resources, vendor_mathjax
from mmhpn.bookbuild.profiles import Profile
from mmhpn.bookbuild.progress import (notebook_line, notebook_runs_key, planned_runs, time_left,
                                      training_seconds, trainings_since)
from mmhpn.checkpoints import is_finished
from mmhpn.claims import holm, read_records
from mmhpn.errors import ConfigError, DatasetError, MMHPNError
from mmhpn.provenance import machine_description

# A notebook that declares this parameter reads the build's own timings (the compute-cost
# page): it is executed again once the HTML is built, so that it states the whole build's time.
TIMINGS_PARAMETER = "build_timings_path"

# How many notebooks a build with nothing to train executes at a time. A cached notebook is a
# kernel that mostly imports, loads runs and draws, on one core; a training uses every core,
# so a build that trains anything executes its notebooks one at a time.
CACHED_LANES = 2


def reads_earlier_pages(name: str, root: Path = REPO_ROOT) -> bool:
    """Whether notebook `name` reads what the notebooks before it wrote: this build's timings
    (it declares `TIMINGS_PARAMETER`) or the table notebooks' per-seed records (it declares
    ``records_dir`` and trains nothing: the verdicts page). Executed in lanes, it starts once
    every notebook before it has finished."""
    path = notebook_path(name, root)
    declared = declared_parameters(path)
    return TIMINGS_PARAMETER in declared or ("records_dir" in declared and notebook_runs_key(path) is None)


def lanes_for(every_run: list[Path]) -> int:
    """`CACHED_LANES` (at most the machine's cores) when every planned run is finished, else 1."""
    if any(not is_finished(run) for run in every_run):
        return 1
    return max(1, min(CACHED_LANES, os.cpu_count() or 1))


def execute_in_lanes(names: tuple[str, ...], lanes: int, execute: Callable[[str], float],
                     root: Path = REPO_ROOT) -> Iterator[tuple[str, float]]:
    """Execute `names` (toc order), `lanes` at a time, yielding ``(name, seconds)`` in toc order.

    One lane calls `execute` here; more run it in that many fresh processes (spawned: each
    redirects its own console output to its notebook's log, `execute_notebook`). A notebook
    that `reads_earlier_pages` starts when every notebook before it has finished. The first
    failure stops the build: nothing new starts, the notebook still running finishes, and the
    failure is raised.
    """
    if lanes <= 1:
        for name in names:
            yield name, execute(name)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    waits = {name: reads_earlier_pages(name, root) for name in names}
    finished: dict[str, float] = {}
    to_start, running, shown_count = list(names), {}, 0
    with ProcessPoolExecutor(lanes, mp_context=multiprocessing.get_context("spawn")) as pool:
        while to_start or running:
            while to_start and len(running) < lanes and not (waits[to_start[0]] and running):
                name = to_start.pop(0)
                running[pool.submit(execute, name)] = name
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                finished[running.pop(future)] = future.result()  # a failure: raised once the pool is shut
            while shown_count < len(names) and names[shown_count] in finished:
                yield names[shown_count], finished[names[shown_count]]
                shown_count += 1


def ensure_dataset(profile: Profile, root: Path = REPO_ROOT) -> None:
    """Create the profile's synthetic dataset if missing; check a real one exists."""
    data_root = root / profile.data_root
    if profile.synthetic_preset is not None:
        from mmhpn.data.synthetic import ensure_synthetic

        ensure_synthetic(data_root, preset=profile.synthetic_preset, seed=0)
    elif not data_root.is_dir():
        raise DatasetError(
            f"dataset folder {data_root} does not exist; expected the extracted "
            f"{profile.dataset} dataset there (see the book's 'Datasets' page), or pass DATA_ROOT"
        )


def build_html(root: Path = REPO_ROOT, builder: str = "html") -> Path:
    """Run Jupyter Book on the repository (warnings are errors) with `builder` (``html``, or
    ``singlehtml`` for the PDF); return its output folder, ``_build/<builder>``.

    While a page is marked as executed with non-default parameters, every page carries a banner
    saying so (`non_default.banner_config`).
    """
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book",
               "build", str(root), "--builder", builder, "-W", "-n", "--keep-going"]
    marked = marked_pages(root)
    if marked:
        command += ["--config", str(banner_config(root, marked))]
    result = subprocess.run(command, cwd=root, text=True, capture_output=True)
    log_file = log_path("jupyter-book" if builder == "html" else f"jupyter-book-{builder}", root)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(f"$ {' '.join(command)}\n{result.stdout}\n--- stderr ---\n{result.stderr}", encoding="utf-8")
    if result.returncode != 0:
        problems = [line.strip() for line in result.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
        first = f"; first of {len(problems)} warning(s): {problems[0]}" if problems else ""
        raise BookBuildError(f"jupyter-book build failed (exit {result.returncode}){first}  "
                             f"(full log: {shown(log_file)})")
    html_dir = root / HTML.parent / builder
    external = external_resources(html_dir)
    if external:
        listing = "\n  ".join(external[:20])
        raise BookBuildError(f"the built book would load {len(external)} external resource(s):\n  {listing}")
    return html_dir


def _append_build_log(entry: dict[str, Any], path: Path) -> None:
    entries = json.loads(path.read_text()) if path.is_file() else []
    entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, entries)


def write_result_tables(root: Path = REPO_ROOT) -> None:
    """results.csv (one line per table row and seed) and claims.csv (one line per claim) from
    the records the table notebooks saved: the same numbers their pages show."""
    results, checked = read_records(root / RECORDS)
    atomic_write_text(root / RESULTS_CSV, results.to_csv(index=False))
    atomic_write_text(root / CLAIMS_CSV, holm(checked).to_csv(index=False))  # with the family's adjusted verdicts


def run_pipeline(profile: Profile, notebooks: tuple[str, ...] | None = None,
                 build: bool = True, root: Path = REPO_ROOT,
                 parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute `notebooks` (default: every notebook of the toc, `notebook_order`) in the toc's
    order and build the book; return the timing record it logged.

    `parameters` (`mmhpn book --only NOTEBOOK --param KEY=VALUE`) are the reader's own values for
    the named `notebooks`, over the profile's: checked against each notebook before anything runs,
    and each page executed with them is marked (`non_default`). Such an execution saves no
    per-seed records (the notebook's own `records_dir` default), so results.csv, claims.csv and
    the verdicts page stay the default build's.
    """
    order = notebook_order(root)
    parameters = dict(parameters or {})
    if parameters and notebooks is None:
        raise ConfigError(f"non-default parameters {sorted(parameters)} need the notebook(s) they are for "
                          f"(mmhpn book --only NOTEBOOK --param KEY=VALUE); a full build is the default book")
    notebooks = order if notebooks is None else tuple(notebooks)
    unknown = [name for name in notebooks if name not in order]
    if unknown:
        raise ConfigError(f"unknown notebook(s) {unknown}; expected names from {list(order)} ({root / '_toc.yml'})")
    started, started_epoch_s = time.perf_counter(), time.time()
    record: dict[str, Any] = {
        "profile": profile.name, "dataset": profile.dataset,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_description(), "notebooks_s": {}, "trainings": 0, "complete": False,
    }
    missing = [str(notebook_path(name, root)) for name in notebooks if not notebook_path(name, root).is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} notebook(s) missing, e.g. {missing[0]}; expected every notebook "
                          f"of the book under {root / NOTEBOOKS}")
    if parameters:
        for name in notebooks:
            check_values(name, parameters, root)
        record["parameters"] = shown_values(parameters)
    default_build = not parameters
    current = root / EXECUTED / "build-current.json"  # this build's timings so far, for the notebooks after

    def notebook_parameters() -> dict[str, Any]:
        """What every notebook is executed with: the profile's values, then the reader's."""
        params = {**profile.notebook_parameters(), **parameters}
        params.setdefault(TIMINGS_PARAMETER, str(current.relative_to(root)))
        if default_build:
            params.setdefault("records_dir", str(RECORDS))
        return params

    ensure_dataset(profile, root)
    record["data_s"] = round(time.perf_counter() - started, 1)
    say = functools.partial(print, flush=True)
    plans: dict[str, list[Path]] = {}
    for name in notebooks:
        try:
            plans[name] = planned_runs(name, notebook_parameters(), root)
        except MMHPNError as err:  # a plan is only for the console; the notebook will say what is wrong
            say(f"mmhpn.book: cannot tell which runs {name} needs ({err})")
            plans[name] = []
    every_run = sorted({run for plan in plans.values() for run in plan})
    cached = sum(is_finished(run) for run in every_run)
    # how many of its runs a build found finished: a first build (the budget's) finds none
    record["planned_runs"], record["cached_at_start"] = len(every_run), cached
    # what the cached runs cost when they trained: what a first build would add to this one
    record["cached_training_s"] = round(sum(training_seconds(run) or 0.0 for run in every_run if is_finished(run)), 1)
    record["lanes"] = lanes = min(lanes_for(every_run), len(notebooks))  # `--only` one page: no second process
    at_a_time = f"{lanes} notebooks at a time (nothing to train); " if lanes > 1 else ""
    say(f"mmhpn.book: profile {profile.name}, {len(notebooks)} notebook(s), {len(every_run)} distinct "
        f"training run(s), {cached} already in the run cache; {at_a_time}full logs in {shown(root / LOGS)}/")
    if notebooks == order and default_build:
        # A complete build starts its claim records afresh (they are derived, never user data).
        shutil.rmtree(root / RECORDS, ignore_errors=True)
    unfinished = {name: {run for run in plans[name] if not is_finished(run)} for name in notebooks}
    # This build's timings so far, for a page that reads them (it starts after every earlier page).
    current.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(current, record)
    execute = functools.partial(execute_notebook, params=notebook_parameters(), root=root, non_default=parameters)
    for index, (name, seconds) in enumerate(execute_in_lanes(notebooks, lanes, execute, root), start=1):
        record["notebooks_s"][name] = round(seconds, 1)
        record["trainings"] = trainings_since(every_run, started_epoch_s)
        atomic_write_json(current, record)
        trained = sum(is_finished(run) for run in unfinished[name])
        later = [run for later_name in notebooks[index:] for run in plans[later_name]]
        say(notebook_line(index, len(notebooks), name, plans[name], trained, seconds, time_left(later, every_run)))
    write_result_tables(root)
    if build:
        vendor_mathjax(root / STATIC)
        sphinx_start = time.perf_counter()
        build_html(root)
        record["sphinx_s"] = round(time.perf_counter() - sphinx_start, 1)
        say(f"mmhpn.book: HTML built by jupyter-book in {record['sphinx_s']:.1f} s "
            f"(log: {shown(log_path('jupyter-book', root))})")
        marked = marked_pages(root)
        if marked:
            say(f"mmhpn.book: {', '.join(marked)} executed with non-default parameters: marked at the top of "
                f"the page(s), and every page carries a banner; make book restores the default pages")
    record["total_s"] = round(time.perf_counter() - started, 1)
    record["complete"] = build and notebooks == order and default_build
    final = [name for name in notebooks
             if build and TIMINGS_PARAMETER in declared_parameters(notebook_path(name, root))]
    if final:
        # The compute-cost page states this build's own time: re-execute it with the
        # finished timings and let Sphinx re-render the pages that changed.
        atomic_write_json(current, record)
        finalize_start = time.perf_counter()
        for name in final:
            execute_notebook(name, notebook_parameters(), root, non_default=parameters)
        build_html(root)
        record["finalize_s"] = round(time.perf_counter() - finalize_start, 1)
        # The log keeps the whole build's time, this re-render included; the page states the
        # time before it (its prose says so).
        record["total_s"] = round(time.perf_counter() - started, 1)
        say(f"mmhpn.book: {', '.join(final)} re-executed with this build's timings and the HTML "
            f"rebuilt in {record['finalize_s']:.1f} s")
    _append_build_log(record, root / BUILD_LOG)
    return record
