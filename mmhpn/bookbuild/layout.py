"""Where the book's files are: its sources, the executed notebooks, the logs and records, and
which notebooks the build executes, in what order (``_toc.yml``).

The book's sources live at a root (`_config.yml`, `_toc.yml`, `book/`, `notebooks/`; the
repository by default); every path below is relative to it so that the tests can build a copy.
"""
from __future__ import annotations

from pathlib import Path

from mmhpn.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
TOC = Path("_toc.yml")
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


def toc_pages(root: Path = REPO_ROOT) -> tuple[str, ...]:
    """Every page ``_toc.yml`` lists (its root first, then in the toc's order), as the toc names
    them (``book/intro``, ``book/executed/01-data``): the book's chapters."""
    import yaml

    path = Path(root) / TOC
    if not path.is_file():
        raise ConfigError(f"no {TOC} in {root}; expected the book's table of contents there")
    pages: list[str] = []

    def visit(node) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                page = node.get(key)
                if isinstance(page, str):
                    pages.append(page)
            for value in node.values():
                if isinstance(value, (dict, list)):
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(yaml.safe_load(path.read_text(encoding="utf-8")))
    return tuple(pages)


def notebook_order(root: Path = REPO_ROOT) -> tuple[str, ...]:
    """The notebooks the book executes, in execution order: the toc's pages under
    ``book/executed/``, in the order ``_toc.yml`` lists them (its one source).

    The order matters: a training shared between tables is made by the first notebook that asks
    for it (the run cache), and the compute-cost page, listed last, reads the others' timings.
    """
    path = Path(root) / TOC
    prefix = EXECUTED.as_posix() + "/"
    names = [page[len(prefix):] for page in toc_pages(root) if page.startswith(prefix)]
    if not names:
        raise ConfigError(f"{path} lists no page under {prefix}; expected the executed notebooks there")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{path} lists {repeated} more than once; expected each executed notebook once")
    return tuple(names)


def notebook_path(name: str, root: Path = REPO_ROOT) -> Path:
    """The source of notebook `name` (``notebooks/NAME.ipynb``)."""
    return Path(root) / NOTEBOOKS / f"{name}.ipynb"


def log_path(name: str, root: Path = REPO_ROOT) -> Path:
    """Where the full papermill log of notebook `name` (or of `jupyter-book`) is written."""
    return Path(root) / LOGS / f"{name}.log"


def shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it (shorter messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
