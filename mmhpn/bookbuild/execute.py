"""Executing one notebook with papermill: only the parameters it declares, its log in a file,
one line naming the cell on failure, and the injected-parameters cell hidden from the page.
"""
from __future__ import annotations

import ast
import contextlib
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from mmhpn.atomic import atomic_path
from mmhpn.bookbuild import NotebookExecutionError
from mmhpn.bookbuild.layout import EXECUTED, REPO_ROOT, log_path, notebook_path, shown
from mmhpn.bookbuild.non_default import mark_page
from mmhpn.errors import ConfigError

# papermill waits 60 s for a kernel to start; on two busy cores (two notebooks at a time, a
# training beside them) a start has taken longer than that, failing a build that was fine.
KERNEL_START_TIMEOUT_S = 300


def declared_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell (what papermill can inject)."""
    import papermill

    return set(papermill.inspect_notebook(str(path)).keys())


def effective_parameters(name: str, params: dict[str, Any], root: Path) -> dict[str, Any]:
    """The notebook's declared defaults with `params` applied (what the notebook will see)."""
    import papermill

    source = notebook_path(name, root)
    if not source.is_file():
        raise ConfigError(f"notebook {source} does not exist")
    values: dict[str, Any] = {}
    for key, info in papermill.inspect_notebook(str(source)).items():
        try:
            values[key] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            pass
    values.update({key: value for key, value in params.items() if key in values})
    return values


def hide_injected_cell(path: Path, params: dict[str, Any]) -> None:
    """Remove the injected-parameters cell from the rendered page and say what was injected.

    The values stay visible to readers as a short generated note, so a page always states
    the profile, dataset and seeds it was executed with.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags:
            if "remove-cell" not in tags:
                tags.append("remove-cell")
            lines = ["**Executed with** (values injected by `mmhpn book`, overriding the defaults above):", ""]
            lines += [f"- `{key} = {value!r}`" for key, value in params.items()]
            note = nbformat.v4.new_markdown_cell("\n".join(lines))
            note.metadata["tags"] = ["mmhpn-executed-with"]
            nb.cells.insert(index + 1, note)
            break
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags and "hide-input" not in tags and "remove-cell" not in tags:
            tags.append("hide-input")
    with atomic_path(path) as tmp:
        nbformat.write(nb, str(tmp))


@contextlib.contextmanager
def _output_to(log_file: Path):
    """Send everything printed during the block to `log_file`, not to the console.

    That is papermill's per-cell log lines (logger "papermill", with the cells' outputs) and
    whatever the kernel process writes to the inherited stdout/stderr (e.g. jupyter_client's
    warning about the kernel's TCP ports): both file descriptors are redirected, so output
    of child processes lands in the file too.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    papermill_log = logging.getLogger("papermill")
    saved_level, saved_propagate = papermill_log.level, papermill_log.propagate
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    with open(log_file, "w", encoding="utf-8") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        papermill_log.addHandler(handler)
        papermill_log.setLevel(logging.INFO)
        papermill_log.propagate = False
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always")  # every warning once in the log, none on the console
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            stream.flush()
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
            papermill_log.removeHandler(handler)
            papermill_log.setLevel(saved_level)
            papermill_log.propagate = saved_propagate


def _first_line(text: Any) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] + (" ..." if len(lines) > 1 else "") if lines else ""


def execute_notebook(name: str, params: dict[str, Any], root: Path = REPO_ROOT,
                     non_default: dict[str, Any] | None = None) -> float:
    """Execute one notebook with papermill (cwd = root); return its wall time in seconds.

    With `non_default` (the reader's own values, among `params`), the page is marked as executed
    with them before it is published (`non_default.mark_page`), never after.

    The console stays quiet: papermill's log (every cell and its output) and the kernel's
    messages go to `log_path(name)`. A failure raises one line naming the notebook, the
    cell, the error and that log.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = notebook_path(name, root)
    output_dir = root / EXECUTED
    if not source.is_file():
        raise ConfigError(f"notebook {source} does not exist")
    declared = declared_parameters(source)
    passed = {key: value for key, value in params.items() if key in declared}
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{name}.ipynb"
    partial = output_dir / f"{name}.partial.ipynb"
    log_file = log_path(name, root)
    # Plain-text progress bars in notebooks; never the widget front end (CDN scripts).
    os.environ.setdefault("TQDM_DISABLE", "1")
    start = time.perf_counter()
    try:
        with _output_to(log_file):
            papermill.execute_notebook(
                str(source), str(partial), parameters=passed, kernel_name="python3",
                start_timeout=KERNEL_START_TIMEOUT_S, log_output=True, progress_bar=False, cwd=str(root),
            )
    except PapermillExecutionError as err:
        traceback_text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback or []))  # no colour codes
        with open(log_file, "a", encoding="utf-8") as stream:
            stream.write(f"\nnotebook {name} failed in cell [{err.exec_count}] (cell {err.cell_index}):\n"
                         f"{err.ename}: {err.evalue}\n{traceback_text}\n")
        raise NotebookExecutionError(
            f"notebook {name} failed in cell [{err.exec_count}] (cell {err.cell_index}): "
            f"{err.ename}: {_first_line(err.evalue)}  (full log: {shown(log_file)}; "
            f"executed copy with the traceback: {shown(partial)})"
        ) from None
    except Exception as err:  # the kernel died, papermill could not start it, ...
        raise NotebookExecutionError(
            f"notebook {name} could not be executed: {type(err).__name__}: {_first_line(err)}  "
            f"(full log: {shown(log_file)})"
        ) from err
    seconds = time.perf_counter() - start
    hide_injected_cell(partial, passed)
    if non_default:
        mark_page(partial, name, non_default)
    os.replace(partial, target)
    return seconds
