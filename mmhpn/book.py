"""The book pipeline: execute every notebook with papermill, then build the HTML offline.

`mmhpn book --profile demo` (what `make book` runs; the command is declared in `mmhpn.cli`) does, in order:

1. creates the synthetic dataset of the profile if it is missing (`mmhpn.data.synthetic`);
2. executes each notebook of `notebooks/` with papermill into `book/executed/` with the
   profile's parameters (only the parameters a notebook declares are passed), hides the
   injected-parameters cell and writes a short note of the values it was executed with;
   a failing notebook stops the pipeline with the notebook's name and the cell's error;
   the console gets one line per notebook (runs needed, trained and cached, elapsed,
   training time left), papermill's full log goes to `book/executed/logs/NAME.log`;
3. vendors MathJax 3 from the npm registry's `mathjax` package into `book/_static/mathjax/`
   (once; the book then loads no script, font or stylesheet from the network);
4. builds the book with Jupyter Book 1.x (`-W -n --keep-going`) into `_build/html/` and
   fails if the HTML references any external resource that a browser would load.

`mmhpn book --archive PATH` (`make book-archive`) packs the built site into one
.tar.gz that opens from disk.

The wall time of each notebook and of the whole build is appended to
`book/executed/build-log.json`; the compute-cost notebook (executed last) reads it, so the
book states measured build times, never typed ones.

Profiles (`PROFILES`) are the training profiles of `mmhpn.config.PROFILES` plus what only
the book needs: `smoke` (minutes, for the test suite), `demo` (the default: synthetic data,
CPU, three seeds, fine-tuned from one pretraining run) and `paper` (the paper's schedule, for users with the real datasets and a GPU).
"""
from __future__ import annotations

import ast
import contextlib
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from mmhpn.atomic import atomic_path, atomic_write_json
from mmhpn.errors import ConfigError, MMHPNError
from mmhpn.provenance import machine_description

if TYPE_CHECKING:
    import pandas as pd

# The book's sources live at the repository root (`_config.yml`, `_toc.yml`, `book/`,
# `notebooks/`); every path below is relative to a root so that the tests can build a copy.
REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = Path("notebooks")
EXECUTED = Path("book") / "executed"
STATIC = Path("book") / "_static"
HTML = Path("_build") / "html"
BUILD_LOG = EXECUTED / "build-log.json"
# Each table notebook saves its per-seed results and checked claims here (`mmhpn.claims`);
# the build assembles them into RESULTS_CSV and CLAIMS_CSV, the verdicts page reads them.
RECORDS = EXECUTED / "records"
RESULTS_CSV = EXECUTED / "results.csv"
CLAIMS_CSV = EXECUTED / "claims.csv"
LOGS = EXECUTED / "logs"  # one full log per notebook (and jupyter-book's), named by every error
RUNS = Path("runs")  # the notebooks' default run cache (their `runs_dir` parameter)
MATHJAX_SPEC = "mathjax@3"
MATHJAX_ENTRY = Path("mathjax") / "es5" / "tex-svg.js"

# Execution order: the trainings shared between tables are created by the first notebook
# that asks for them (the run cache), and the compute-cost notebook reads the timings of
# all the others, so it runs last.
NOTEBOOK_ORDER = (
    "01-data",
    "02-training",
    "03-table-4-branches",
    "04-table-5-body-parts",
    "05-table-6-pooling",
    "06-table-7-psl",
    "07-layouts",
    "08-figure-5-body-scales",
    "09-figure-3-attention",
    "10-figure-4-ranking",
    "11-tables-1-3-comparison",
    "12-verdicts",
    "13-compute-cost",
)
COMPUTE_COST_NOTEBOOK = "13-compute-cost"


class NotebookExecutionError(MMHPNError, RuntimeError):
    """A notebook raised while papermill executed it."""


class BookBuildError(MMHPNError, RuntimeError):
    """Jupyter Book failed, or the built HTML would load something from the network."""


@dataclass(frozen=True)
class Profile:
    """A book profile: a training profile of `mmhpn.config.PROFILES` (same name; its dataset,
    data folder and synthetic preset are read from there, `_training_data`) plus what only the
    book needs: the notebooks' seeds and device (`parameters`, passed to every notebook that
    declares them) and per-notebook values (`per_notebook`, keyed by notebook name).
    """

    name: str
    dataset: str
    data_root: str
    synthetic_preset: str | None
    parameters: dict[str, Any] = field(default_factory=dict)
    per_notebook: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_notebook(self, notebook: str) -> dict[str, Any]:
        params = {
            "dataset": self.dataset,
            "data_root": self.data_root,
            "profile": self.name,
            **self.parameters,
        }
        params.update(self.per_notebook.get(notebook, {}))
        return params


def _training_data(name: str) -> dict[str, Any]:
    """The dataset, data folder and synthetic preset of training profile `name`
    (`mmhpn.config.PROFILES`): where a book profile's data comes from, written only there."""
    from mmhpn.config import make_config

    config = make_config(name)
    synthetic = config.dataset == "synthetic"
    return {"dataset": config.dataset, "data_root": config.data_root,
            "synthetic_preset": config.synthetic_preset if synthetic else None}


PROFILES: dict[str, Profile] = {
    # A few minutes on 2 CPU cores: the demo's code paths (pretraining, the shared trunk
    # cache, fine-tuning, intervals over seeds) on tiny settings; two seeds, the fewest an
    # interval can be computed from.
    "smoke": Profile(
        name="smoke",
        **_training_data("smoke"),
        parameters={"seeds": [0, 1], "device": "cpu", "overrides": {}},
        per_notebook={"08-figure-5-body-scales": {"stripe_counts": [1, 2, 4, 8, 12]},
                      "02-training": {"eval_every": 0}},
    ),
    # `make book`'s default on 2 CPU cores: every row over three seeds, fine-tuned from one
    # pretraining run (the demo training profile); the measured time is on the compute-cost page.
    "demo": Profile(
        name="demo",
        **_training_data("demo"),
        parameters={"seeds": [0, 1, 2], "device": "cpu", "overrides": {}},
        per_notebook={"08-figure-5-body-scales": {"stripe_counts": [1, 2, 4, 8, 12]},
                      "02-training": {"eval_every": 1}},
    ),
    # The paper's schedule on a real dataset (a GPU and hours per training).
    "paper": Profile(
        name="paper",
        **_training_data("paper"),
        parameters={"seeds": [0, 1, 2], "device": "cuda"},
        per_notebook={"08-figure-5-body-scales": {"stripe_counts": [1, 2, 4, 8, 12]}},
    ),
}


def get_profile(name: str, dataset: str | None = None, data_root: str | None = None,
                device: str | None = None, seeds: list[int] | None = None) -> Profile:
    """The named profile with the command line's overrides applied."""
    if name not in PROFILES:
        raise ConfigError(f"unknown book profile {name!r}; expected one of {sorted(PROFILES)}")
    profile = PROFILES[name]
    params = dict(profile.parameters)
    if device is not None:
        params["device"] = device
    if seeds is not None:
        if not seeds:
            raise ConfigError("seeds must name at least one seed")
        params["seeds"] = list(seeds)
    changes: dict[str, Any] = {"parameters": params}
    if dataset is not None:
        changes["dataset"] = dataset
        if dataset != "synthetic":
            changes["synthetic_preset"] = None
            if data_root is None:
                changes["data_root"] = f"data/{dataset}"
    if data_root is not None:
        changes["data_root"] = data_root
    return replace(profile, **changes)


# ---------------------------------------------------------------------------------------
# step 1: data


def ensure_dataset(profile: Profile, root: Path = REPO_ROOT) -> None:
    """Create the profile's synthetic dataset if missing; check a real one exists."""
    data_root = root / profile.data_root
    if profile.synthetic_preset is not None:
        from mmhpn.data.synthetic import ensure_synthetic

        ensure_synthetic(data_root, preset=profile.synthetic_preset, seed=0)
    elif not data_root.is_dir():
        from mmhpn.errors import DatasetError

        raise DatasetError(
            f"dataset folder {data_root} does not exist; expected the extracted "
            f"{profile.dataset} dataset there (see the book's 'Datasets' page), or pass DATA_ROOT"
        )


# ---------------------------------------------------------------------------------------
# step 2: notebooks


def notebook_path(name: str, root: Path = REPO_ROOT) -> Path:
    return root / NOTEBOOKS / f"{name}.ipynb"


def declared_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell (what papermill can inject)."""
    import papermill

    return set(papermill.inspect_notebook(str(path)).keys())


def _hide_injected_cell(path: Path, params: dict[str, Any]) -> None:
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
            lines = ["**Executed with** (values injected by `mmhpn.book`, overriding the defaults above):", ""]
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


def log_path(name: str, root: Path = REPO_ROOT) -> Path:
    """Where the full papermill log of notebook `name` (or of `jupyter-book`) is written."""
    return root / LOGS / f"{name}.log"


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


def execute_notebook(name: str, params: dict[str, Any], root: Path = REPO_ROOT) -> float:
    """Execute one notebook with papermill (cwd = root); return its wall time in seconds.

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
                log_output=True, progress_bar=False, cwd=str(root),
            )
    except PapermillExecutionError as err:
        traceback_text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback or []))  # no colour codes
        with open(log_file, "a", encoding="utf-8") as stream:
            stream.write(f"\nnotebook {name} failed in cell [{err.exec_count}] (cell {err.cell_index}):\n"
                         f"{err.ename}: {err.evalue}\n{traceback_text}\n")
        raise NotebookExecutionError(
            f"notebook {name} failed in cell [{err.exec_count}] (cell {err.cell_index}): "
            f"{err.ename}: {_first_line(err.evalue)}  (full log: {_shown(log_file)}; "
            f"executed copy with the traceback: {_shown(partial)})"
        ) from None
    except Exception as err:  # the kernel died, papermill could not start it, ...
        raise NotebookExecutionError(
            f"notebook {name} could not be executed: {type(err).__name__}: {_first_line(err)}  "
            f"(full log: {_shown(log_file)})"
        ) from err
    seconds = time.perf_counter() - start
    _hide_injected_cell(partial, passed)
    os.replace(partial, target)
    return seconds


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it (shorter messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------
# step 3: MathJax


def _tar_has_data_filter() -> bool:
    """Whether `tarfile` has extraction filters (Python >= 3.11.4, 3.10.12; PEP 706)."""
    return hasattr(tarfile, "data_filter")


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    """What PEP 706's "data" filter refuses, for Pythons without it: absolute names,
    names or links leading outside `dest`, devices and FIFOs."""
    def inside(path: Path) -> bool:
        return path == dest or dest in path.parents

    name = member.name
    if name.startswith(("/", "\\")) or Path(name).is_absolute():
        raise BookBuildError(f"refusing to extract {name!r}: absolute path")
    if not inside((dest / name).resolve()):
        raise BookBuildError(f"refusing to extract {name!r}: it would land outside {dest}")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise BookBuildError(f"refusing to extract {name!r}: device or FIFO")
    if member.issym() or member.islnk():
        base = dest if member.islnk() else (dest / name).parent
        if Path(member.linkname).is_absolute() or not inside((base / member.linkname).resolve()):
            raise BookBuildError(f"refusing to extract {name!r}: link to {member.linkname!r} outside {dest}")


def extract_safely(tar: tarfile.TarFile, dest: Path, members: list[tarfile.TarInfo] | None = None) -> None:
    """Extract `members` (default: all) under `dest`, refusing anything that escapes it.

    Uses tarfile's "data" filter where Python has it; on older 3.10/3.11 patch releases
    (Debian 12's 3.11.2) every member is checked the same way first, and permission bits
    beyond rwx are dropped, as the filter does.
    """
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    members = tar.getmembers() if members is None else members
    if _tar_has_data_filter():
        try:
            tar.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as err:
            raise BookBuildError(f"refusing to extract {err.tarinfo.name!r}: {err}") from None
        return
    for member in members:
        _check_member(member, dest)
        member.mode &= 0o777
    tar.extractall(dest, members=members)


def vendor_mathjax(static_dir: Path = REPO_ROOT / STATIC, spec: str = MATHJAX_SPEC,
                   cache: Path | None = REPO_ROOT / STATIC) -> Path:
    """Copy MathJax 3's es5/ build from the npm package into the book's static files.

    Done once (the folder is the cache, gitignored); needs `npm` and the npm registry at
    build time, never at view time. A copy of the book (the tests) reuses the repository's
    vendored copy (`cache`) when there is one.
    """
    entry = static_dir / MATHJAX_ENTRY
    if entry.is_file():
        return entry
    if cache is not None and (cache / MATHJAX_ENTRY).is_file() and cache.resolve() != static_dir.resolve():
        shutil.copytree(cache / "mathjax", static_dir / "mathjax", dirs_exist_ok=True)
        return entry
    npm = shutil.which("npm")
    if npm is None:
        raise BookBuildError("npm is needed once to vendor MathJax 3 (npm pack mathjax@3); install npm")
    target = static_dir / "mathjax"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", spec, "--pack-destination", tmp, "--silent"],
                       check=True, cwd=tmp, stdout=subprocess.DEVNULL)
        tarballs = list(Path(tmp).glob("mathjax-*.tgz"))
        if len(tarballs) != 1:
            raise BookBuildError(f"npm pack {spec} produced {tarballs}, expected one mathjax-*.tgz")
        extracted = Path(tmp) / "extracted"
        with tarfile.open(tarballs[0]) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith("package/es5/") and (m.isfile() or m.isdir())]
            extract_safely(tar, extracted, members)
        staged = Path(tmp) / "mathjax"
        staged.mkdir()
        shutil.move(str(extracted / "package" / "es5"), staged / "es5")
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), target)
    if not entry.is_file():
        raise BookBuildError(f"{spec} has no {MATHJAX_ENTRY.relative_to('mathjax')}")
    return entry


# ---------------------------------------------------------------------------------------
# step 4: the HTML


class _ResourceParser(HTMLParser):
    """Collect the URLs of the resources a browser fetches when it renders a page.

    Links a reader may click (<a href>) are not fetched and are allowed to point outside.
    """

    FETCHED = {
        ("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src"),
        ("video", "src"), ("audio", "src"), ("embed", "src"), ("track", "src"),
        ("input", "src"), ("object", "data"), ("link", "href"), ("video", "poster"),
        ("img", "srcset"), ("source", "srcset"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (tag, name) in self.FETCHED:
                candidates = [part.strip().split(" ")[0] for part in value.split(",")] if name == "srcset" else [value]
                for url in candidates:
                    self.urls.append((tag, name, url))
            if name == "style" and value and "url(" in value:
                self.urls.extend(("style", "url", url) for url in _css_urls(value))


def _css_urls(text: str) -> list[str]:
    urls = re.findall(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)", text)
    urls += re.findall(r"@import\s+['\"]([^'\"]+)['\"]", text)
    return urls


def _is_external(url: str) -> bool:
    parsed = urlparse(url.strip())
    if url.strip().startswith("//"):
        return True
    return parsed.scheme not in ("", "file", "data", "blob", "about", "javascript", "mailto")


def external_resources(html_dir: Path) -> list[str]:
    """Every external URL that a browser would load from the built book (HTML and CSS)."""
    found: list[str] = []
    for page in sorted(html_dir.rglob("*.html")):
        parser = _ResourceParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        found += [f"{page.relative_to(html_dir)}: <{tag} {attr}={url}>"
                  for tag, attr, url in parser.urls if _is_external(url)]
    for sheet in sorted(html_dir.rglob("*.css")):
        found += [f"{sheet.relative_to(html_dir)}: url({url})"
                  for url in _css_urls(sheet.read_text(encoding="utf-8", errors="replace"))
                  if _is_external(url)]
    return found


def build_html(root: Path = REPO_ROOT) -> Path:
    """Run Jupyter Book on the repository (warnings are errors); return the HTML folder."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book",
               "build", str(root), "--builder", "html", "-W", "-n", "--keep-going"]
    result = subprocess.run(command, cwd=root, text=True, capture_output=True)
    log_file = log_path("jupyter-book", root)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(f"$ {' '.join(command)}\n{result.stdout}\n--- stderr ---\n{result.stderr}", encoding="utf-8")
    if result.returncode != 0:
        problems = [line.strip() for line in result.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
        first = f"; first of {len(problems)} warning(s): {problems[0]}" if problems else ""
        raise BookBuildError(f"jupyter-book build failed (exit {result.returncode}){first}  "
                             f"(full log: {_shown(log_file)})")
    html_dir = root / HTML
    external = external_resources(html_dir)
    if external:
        listing = "\n  ".join(external[:20])
        raise BookBuildError(f"the built book would load {len(external)} external resource(s):\n  {listing}")
    return html_dir


# ---------------------------------------------------------------------------------------
# the archive: the site in one file, for readers without a server

ARCHIVE_FOLDER = "mmhpn-book"  # the archive's single top-level folder


class _LinkParser(HTMLParser):
    """Every URL a page links to or loads (href, src, srcset, poster, data)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if not value:
                continue
            if name in ("href", "src", "poster", "data"):
                self.urls.append(value.strip())
            elif name == "srcset":
                self.urls += [part.strip().split(" ")[0] for part in value.split(",") if part.strip()]


def links_broken_from_disk(html_dir: Path) -> list[str]:
    """Links that would not work when the site is opened from disk (file://): URLs from the
    server's root (`/...`, which from disk means the file system's root) and relative links
    to files that are not in the site."""
    found = []
    for page in sorted(html_dir.rglob("*.html")):
        if page.relative_to(html_dir).parts[0] == "_static":
            continue  # the themes' template fragments (Jinja macros), never opened as pages
        parser = _LinkParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        for url in parser.urls:
            parsed = urlparse(url)
            if parsed.scheme or url.startswith(("//", "#")) or not parsed.path:
                continue  # another site, a data: URL or an anchor of this page
            if url.startswith("/"):
                found.append(f"{page.relative_to(html_dir)}: {url} (from the server's root)")
            else:
                target = page.parent / unquote(parsed.path)
                if not target.exists():
                    found.append(f"{page.relative_to(html_dir)}: {url} (missing)")
                elif target.is_dir():
                    found.append(f"{page.relative_to(html_dir)}: {url} (a folder: from disk a browser lists it)")
    return found


def write_archive(out: Path, root: Path = REPO_ROOT) -> Path:
    """Pack `_build/html/` into one .tar.gz (folder `mmhpn-book/`) that opens from disk.

    Refuses a site that is not built, that loads anything from the network or that has
    links which break from file://. Written to a temporary name and renamed, so a
    half-written archive never carries the final name.
    """
    html_dir = root / HTML
    if not (html_dir / "index.html").is_file():
        raise BookBuildError(f"no built book in {html_dir} (no index.html); run `make book` first")
    problems = [f"loads {item}" for item in external_resources(html_dir)] + links_broken_from_disk(html_dir)
    if problems:
        listing = "; ".join(problems[:5])
        raise BookBuildError(f"the built book would not work from disk ({len(problems)} problem(s)): {listing}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(html_dir, arcname=ARCHIVE_FOLDER, recursive=False)
        for path in sorted(html_dir.rglob("*")):
            tar.add(path, arcname=f"{ARCHIVE_FOLDER}/{path.relative_to(html_dir)}", recursive=False)
    os.replace(partial, out)
    return out


# ---------------------------------------------------------------------------------------
# the whole pipeline


# The numbers of a benchmark result that the compute-cost page shows: those with a key (at
# any nesting level) ending so. Per-repeat lists and the configuration echo stay in the file.
BENCHMARK_HEADLINE_SUFFIXES = (
    "images_per_s", "images_per_s_median", "full_vs_bare", "model_vs_bare", "matmul_s", "evaluate_s",
    "ratio", "peak_rss_mib", "peak_gpu_memory_mib", "peak_gpu_memory_gib", "projected_schedule_minutes",
    "mAP", "rank1",
)


def build_steps(timings_path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """This build's steps and their wall seconds (from the timings `mmhpn.book` passes the
    compute-cost notebook), and the build's record; both empty outside `make book`."""
    import pandas as pd

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


# The default build's targets (issue 11): minutes of a build that trains everything
# (pretraining included) and of one that finds every run cached; seeds per row; the largest
# 95% half-width of a Table 4-7 claim on mAP (pp); the baseline's mean mAP range (%).
BUDGET_TRAINED_MIN, BUDGET_CACHED_MIN = 40, 3
TARGET_MIN_SEEDS, TARGET_HALF_WIDTH_PP, TARGET_BASELINE_MAP = 3, 2.0, (30.0, 90.0)


def budget_line(record: dict[str, Any]) -> str:
    """Whether a `demo` build stayed within its budget: 40 min when it trained, 3 min when
    every run came from the cache ("" for other profiles)."""
    if record.get("profile") != "demo":
        return ""
    trained, minutes = record.get("trainings", 0), record["total_s"] / 60
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
    import pandas as pd

    from mmhpn.claims import read_records

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

    build_time(f"a build that trains, pretraining included: <= {BUDGET_TRAINED_MIN} min", BUDGET_TRAINED_MIN,
               same[trainings > 0], bool(record.get("trainings")))
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
    return pd.DataFrame(lines)


def last_build_minutes(builds: pd.DataFrame, profile: str) -> str:
    """The total of the last complete build of `profile` in `build_history`'s table, as text."""
    same = builds[builds["profile"] == profile]
    return f"{same['total (min)'].iloc[-1]:.1f} min" if len(same) else "not yet measured"


def build_history(log_path: Path) -> pd.DataFrame:
    """One line per complete build recorded in the build log (oldest first)."""
    import pandas as pd

    log = json.loads(Path(log_path).read_text()) if Path(log_path).is_file() else []
    return pd.DataFrame([
        {
            "profile": entry["profile"],
            "dataset": entry["dataset"],
            "started (UTC)": entry["started_utc"],
            "trainings": entry.get("trainings", "not recorded"),
            "notebooks (min)": round(sum(entry["notebooks_s"].values()) / 60, 1),
            "HTML build (s)": entry.get("sphinx_s"),
            "total (min)": round(entry["total_s"] / 60, 1),
            "machine": entry["machine"],
        }
        for entry in log if entry.get("complete")
    ], columns=["profile", "dataset", "started (UTC)", "trainings", "notebooks (min)", "HTML build (s)",
                "total (min)", "machine"])


def run_throughput(runs_dir: Path) -> pd.DataFrame:
    """Training throughput of every finished run in `runs_dir`, from its own history."""
    import pandas as pd

    from mmhpn.checkpoints import is_finished
    from mmhpn.runs import load_run

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
    import pandas as pd

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


def trainings_since(runs_dir: Path, since_epoch_s: float) -> int:
    """How many runs in `runs_dir` finished at or after `since_epoch_s` (trained, not loaded)."""
    from mmhpn.checkpoints import FINISHED_FILE

    if not runs_dir.is_dir():
        return 0
    return sum(marker.stat().st_mtime >= since_epoch_s for marker in runs_dir.glob(f"*/{FINISHED_FILE}"))


# ---------------------------------------------------------------------------------------
# progress: what each notebook trains, and how long the rest should take

def _effective_parameters(name: str, params: dict[str, Any], root: Path) -> dict[str, Any]:
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


def planned_runs(name: str, params: dict[str, Any], root: Path = REPO_ROOT) -> list[Path]:
    """The run folders notebook `name` needs with these parameters (finished ones are cached).

    What a notebook trains is declared once, in `mmhpn.experiments.NOTEBOOK_RUNS`, which the
    notebook's own cell runs. A row whose configuration comes from another run (Table 7's
    control takes its scale weights from the PSL run of its seed) has no hash until that run
    has finished: it is planned as a placeholder folder named after that run, which counts
    as one run to train. The pretraining run the rows fine-tune from (``init_from``) is
    planned first.
    """
    from mmhpn import experiments as ex
    import pandas as pd

    from mmhpn.checkpoints import HISTORY_FILE, is_finished
    from mmhpn.config import pretraining_config
    from mmhpn.runs import run_dir_for

    p = _effective_parameters(name, params, root)
    rows, seeds = ex.notebook_rows(name, p)
    if not rows:
        return []
    common = ex.notebook_common(p)
    runs_dir = root / p.get("runs_dir", str(RUNS))
    planned: dict[tuple[str, int], Path] = {}
    pretrainings: dict[str, Path] = {}
    for row in rows:
        for seed in seeds:
            weights = None
            if row.scale_weights_from is not None:
                source = planned[(row.scale_weights_from, seed)]
                if not is_finished(source):
                    planned[(row.label, seed)] = source.with_name(f"{source.name}.then-{ex.slug(row.label)}")
                    continue
                weights = ex.psl_scale_weights(pd.read_csv(source / HISTORY_FILE))
            config = ex.row_config(row, p["profile"], seed, scale_weights=weights, **common)
            if config.init_from is not None:  # its pretraining run comes first (one for all rows)
                pretraining = run_dir_for(pretraining_config(config.init_from), runs_dir)
                pretrainings.setdefault(pretraining.name, pretraining)
            planned[(row.label, seed)] = run_dir_for(config, runs_dir)
    return [*pretrainings.values(), *planned.values()]


def training_seconds(run_dir: Path) -> float | None:
    """Wall seconds the finished run in `run_dir` spent training (its history), or None."""
    from mmhpn.checkpoints import is_finished
    from mmhpn.checkpoints import HISTORY_FILE

    history = run_dir / HISTORY_FILE
    if not (is_finished(run_dir) and history.is_file()):
        return None
    import pandas as pd

    frame = pd.read_csv(history)
    return float(frame["seconds"].sum()) if "seconds" in frame and len(frame) else None


def time_left(runs_to_go: list[Path], finished: list[Path]) -> str:
    """"~N min of training left (K runs x S s)": the runs still to train times the mean
    training time of the finished runs of this build's plan (cached or trained now)."""
    from mmhpn.checkpoints import is_finished

    todo = sorted({run for run in runs_to_go if not is_finished(run)})
    if not todo:
        return "no training left"
    seconds = [t for t in (training_seconds(run) for run in set(finished)) if t is not None]
    if not seconds:
        return f"{len(todo)} run(s) to train; time left unknown until one has finished"
    mean = sum(seconds) / len(seconds)
    return f"~{len(todo) * mean / 60:.1f} min of training left ({len(todo)} run(s) x {mean:.0f} s mean)"


def notebook_line(index: int, total: int, name: str, needed: list[Path], trained: int,
                  seconds: float, left: str) -> str:
    """The console's one line per notebook: name, what it trained, elapsed, time left."""
    if needed:
        distinct = len(set(needed))
        work = f"{distinct} run(s): {trained} trained, {distinct - trained} from runs/"
    else:
        work = "no training"
    return f"[{index:>2}/{total}] {name:<28} {work:<34} {seconds:7.1f} s   {left}"


def _append_build_log(entry: dict[str, Any], log_path: Path) -> None:
    entries = json.loads(log_path.read_text()) if log_path.is_file() else []
    entries.append(entry)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(log_path, entries)


def write_result_tables(root: Path = REPO_ROOT) -> None:
    """results.csv (one line per table row and seed) and claims.csv (one line per claim) from
    the records the table notebooks saved: the same numbers their pages show."""
    from mmhpn.claims import read_records
    from mmhpn.atomic import atomic_write_text

    results, checked = read_records(root / RECORDS)
    atomic_write_text(root / RESULTS_CSV, results.to_csv(index=False))
    atomic_write_text(root / CLAIMS_CSV, checked.to_csv(index=False))


def run_pipeline(profile: Profile, notebooks: tuple[str, ...] = NOTEBOOK_ORDER,
                 build: bool = True, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Execute the notebooks and build the book; return the timing record it logged."""
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
    ensure_dataset(profile, root)
    record["data_s"] = round(time.perf_counter() - started, 1)
    say = functools.partial(print, flush=True)
    from mmhpn.checkpoints import is_finished

    plans: dict[str, list[Path]] = {}
    for name in notebooks:
        try:
            plans[name] = planned_runs(name, profile.for_notebook(name), root)
        except MMHPNError as err:  # a plan is only for the console; the notebook will say what is wrong
            say(f"mmhpn.book: cannot tell which runs {name} needs ({err})")
            plans[name] = []
    every_run = sorted({run for plan in plans.values() for run in plan})
    cached = sum(is_finished(run) for run in every_run)
    say(f"mmhpn.book: profile {profile.name}, {len(notebooks)} notebook(s), {len(every_run)} distinct "
        f"training run(s), {cached} already in the run cache; full logs in {_shown(root / LOGS)}/")
    # The timings of this build so far are visible to the notebooks that come later.
    current = root / EXECUTED / "build-current.json"
    if list(notebooks) == list(NOTEBOOK_ORDER):
        # A complete build starts its claim records afresh (they are derived, never user data).
        shutil.rmtree(root / RECORDS, ignore_errors=True)
    for index, name in enumerate(notebooks, start=1):
        current.parent.mkdir(parents=True, exist_ok=True)
        current.write_text(json.dumps(record, indent=2))
        params = profile.for_notebook(name)
        params.setdefault("build_timings_path", str(current.relative_to(root)))
        params.setdefault("records_dir", str(RECORDS))
        needed = plans[name]
        unfinished = {run for run in needed if not is_finished(run)}
        seconds = execute_notebook(name, params, root)
        record["notebooks_s"][name] = round(seconds, 1)
        record["trainings"] = trainings_since(root / RUNS, started_epoch_s)
        trained = sum(is_finished(run) for run in unfinished)
        later = [run for later_name in notebooks[index:] for run in plans[later_name]]
        say(notebook_line(index, len(notebooks), name, needed, trained, seconds, time_left(later, every_run)))
    write_result_tables(root)
    if build:
        vendor_mathjax(root / STATIC)
        sphinx_start = time.perf_counter()
        build_html(root)
        record["sphinx_s"] = round(time.perf_counter() - sphinx_start, 1)
        say(f"mmhpn.book: HTML built by jupyter-book in {record['sphinx_s']:.1f} s "
            f"(log: {_shown(log_path('jupyter-book', root))})")
    record["total_s"] = round(time.perf_counter() - started, 1)
    record["complete"] = build and list(notebooks) == list(NOTEBOOK_ORDER)
    if build and COMPUTE_COST_NOTEBOOK in notebooks:
        # The compute-cost page states this build's own time: re-execute it with the
        # finished timings and let Sphinx re-render the pages that changed.
        current.write_text(json.dumps(record, indent=2))
        finalize_start = time.perf_counter()
        params = profile.for_notebook(COMPUTE_COST_NOTEBOOK)
        params.setdefault("build_timings_path", str(current.relative_to(root)))
        execute_notebook(COMPUTE_COST_NOTEBOOK, params, root)
        build_html(root)
        record["finalize_s"] = round(time.perf_counter() - finalize_start, 1)
        say(f"mmhpn.book: {COMPUTE_COST_NOTEBOOK} re-executed with this build's timings and the HTML "
            f"rebuilt in {record['finalize_s']:.1f} s")
    _append_build_log(record, root / BUILD_LOG)
    return record
