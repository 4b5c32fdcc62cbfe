"""The build's progress on the console: which run folders each notebook needs (planned with the
notebooks' own planner before anything trains), how many trainings ran, the training time
left, and the one line per notebook.
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from mmhpn.bookbuild.execute import effective_parameters
from mmhpn.bookbuild.layout import REPO_ROOT, notebook_path
from mmhpn.checkpoints import FINISHED_FILE, HISTORY_FILE, is_finished
from mmhpn.errors import ConfigError
from mmhpn.paper.registry import notebook_run_dirs

RUN_CALL = "run_notebook"  # `mmhpn.paper.registry.run_notebook`: the call that names a notebook's rows


def notebook_runs_key(path: Path) -> str | None:
    """The key of `mmhpn.paper.registry.NOTEBOOK_RUNS` that notebook `path` trains: the literal
    first argument of its ``run_notebook("table4", globals())`` call (None: it trains nothing).

    Read from the notebook's code, so the build plans exactly what the notebook runs; the
    notebook's file name appears nowhere but in ``_toc.yml``.
    """
    import nbformat
    from IPython.core.inputtransformer2 import TransformerManager

    to_python = TransformerManager().transform_cell  # `%matplotlib inline` and other magics
    keys = set()
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(to_python(cell.source))
        except SyntaxError as err:
            raise ConfigError(f"{path} cell {index} is not valid Python ({err.msg}, line {err.lineno})") from None
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)) != RUN_CALL:
                continue
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                raise ConfigError(f"{path} cell {index} calls {RUN_CALL} without a literal key; expected e.g. "
                                  f'registry.{RUN_CALL}("table4", globals())')
            keys.add(first.value)
    if len(keys) > 1:
        raise ConfigError(f"{path} calls {RUN_CALL} with {sorted(keys)}; expected one key per notebook")
    return keys.pop() if keys else None


def planned_runs(name: str, params: dict[str, Any], root: Path = REPO_ROOT) -> list[Path]:
    """The run folders notebook `name` needs with these parameters (finished ones are cached).

    The rows come from the key its own training cell passes to ``run_notebook``
    (`notebook_runs_key`), walked by the planner the notebook trains with
    (`mmhpn.paper.registry.notebook_run_dirs`): the pretraining run first, and a placeholder
    for a row that waits for another run (Table 7's control), counted as one run to train.
    """
    key = notebook_runs_key(notebook_path(name, root))
    if key is None:
        return []
    return notebook_run_dirs(key, effective_parameters(name, params, root), root)


def training_seconds(run_dir: Path) -> float | None:
    """Wall seconds the finished run in `run_dir` spent training (its history), or None."""
    history = run_dir / HISTORY_FILE
    if not (is_finished(run_dir) and history.is_file()):
        return None
    frame = pd.read_csv(history)
    return float(frame["seconds"].sum()) if "seconds" in frame and len(frame) else None


def time_left(runs_to_go: list[Path], finished: list[Path]) -> str:
    """"~N min of training left (K runs x S s mean)": the runs still to train times the mean
    training time of the finished runs of this build's plan (cached or trained now) in the
    same folder. A folder holds one kind of run (the per-user folder the pretraining runs, a
    runs folder the fine-tunings), so a cached pretraining run's 20 minutes do not stand for a
    fine-tuning's seconds; runs of a folder with none finished yet are counted as unknown."""
    todo = sorted({run for run in runs_to_go if not is_finished(run)})
    if not todo:
        return "no training left"
    seconds: dict[Path, list[float]] = {}
    for run in set(finished):
        if (measured := training_seconds(run)) is not None:
            seconds.setdefault(Path(run).parent, []).append(measured)
    total, parts, unknown = 0.0, [], 0
    for folder, count in sorted(Counter(Path(run).parent for run in todo).items()):
        if folder not in seconds:
            unknown += count
            continue
        mean = sum(seconds[folder]) / len(seconds[folder])
        total += count * mean
        parts.append(f"{count} run(s) x {mean:.0f} s mean")
    if not parts:
        return f"{len(todo)} run(s) to train; time left unknown until one has finished"
    more = f"; {unknown} more run(s) of unknown time" if unknown else ""
    return f"~{total / 60:.1f} min of training left ({' + '.join(parts)}{more})"


def notebook_line(index: int, total: int, name: str, needed: list[Path], trained: int,
                  seconds: float, left: str) -> str:
    """The console's one line per notebook: name, what it trained, elapsed, time left."""
    if needed:
        distinct = len(set(needed))
        work = f"{distinct} run(s): {trained} trained, {distinct - trained} from runs/"
    else:
        work = "no training"
    return f"[{index:>2}/{total}] {name:<28} {work:<34} {seconds:7.1f} s   {left}"


def trainings_since(runs: Iterable[Path], since_epoch_s: float) -> int:
    """How many of the build's planned `runs` (pretraining runs in the per-user folder included)
    finished at or after `since_epoch_s`: trained by this build, not loaded. Runs that other
    processes finish meanwhile in the same runs folder are not the build's, and not counted."""
    markers = (Path(run) / FINISHED_FILE for run in runs)
    return sum(marker.is_file() and marker.stat().st_mtime >= since_epoch_s for marker in markers)
