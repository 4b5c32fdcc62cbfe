"""Pages executed with the reader's own parameters (`mmhpn book --only NOTEBOOK --param KEY=VALUE`).

The values come from the command line as ``KEY=VALUE`` with VALUE in YAML (`parse_params`)
and are checked against the notebook's parameters cell before anything is executed
(`check_values`, the same check as the notebook's own, `mmhpn.notebook_params`). The page is
marked at its top as executed with non-default parameters, and the values are kept in the
notebook's metadata (`mark_page`, before the page is published); while any page is marked
(`marked_pages`), the book is built with a banner on every page (`banner_config`), since other
pages paste numbers from the executed notebooks (the introduction's glue). Executing the page
again without ``--param`` (a full `make book`, or ``--only NOTEBOOK``) writes it unmarked, and
the banner goes with the last mark.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mmhpn.atomic import atomic_path, atomic_write_text
from mmhpn.bookbuild.layout import EXECUTED, REPO_ROOT, notebook_order, notebook_path
from mmhpn.errors import ConfigError
from mmhpn.notebook_params import value_problems

EXAMPLE = "--param 'gammas=[0.5, 1.0, 1.0, 2.0]'"
METADATA_KEY = "mmhpn"  # nb.metadata["mmhpn"]["non_default_parameters"]: {name: repr(value)}
MARKED = "non_default_parameters"
BANNER_CONFIG = Path("_build") / "non-default-config.yml"  # _config.yml plus the banner


def parse_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (KEY, VALUE parsed as YAML): ``gammas=[0.5, 1.0]`` -> ("gammas", [0.5, 1.0])."""
    import yaml

    key, separator, value = text.partition("=")
    key = key.strip()
    if not separator or not key.isidentifier():
        raise ConfigError(f"--param {text!r}: expected KEY=VALUE, KEY a notebook parameter and VALUE in YAML, "
                          f"e.g. {EXAMPLE}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as err:
        reason = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ConfigError(f"--param {text!r}: VALUE is not valid YAML ({reason}); e.g. {EXAMPLE}") from None


def parse_params(texts: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Every ``--param KEY=VALUE`` of a command line, by KEY (a KEY given twice is an error)."""
    values: dict[str, Any] = {}
    for text in texts:
        key, value = parse_param(text)
        if key in values:
            raise ConfigError(f"--param {key} is given twice ({values[key]!r} and {value!r}); give each parameter once")
        values[key] = value
    return values


def parameters_cell(path: Path) -> str:
    """The source of the notebook's cell tagged ``parameters`` (what its values are checked against)."""
    import nbformat

    for cell in nbformat.read(path, as_version=4).cells:
        if "parameters" in cell.metadata.get("tags", []):
            return cell.source
    raise ConfigError(f"{path} has no cell tagged 'parameters'; it takes no parameters")


def check_values(name: str, values: dict[str, Any], root: Path = REPO_ROOT) -> None:
    """Raise one ConfigError line naming every value that notebook `name` does not declare or
    whose type does not fit its declaration."""
    problems = value_problems(values, parameters_cell(notebook_path(name, root)))
    if problems:
        raise ConfigError(f"notebook {name}: {'; '.join(problems)}")


def shown_values(values: dict[str, Any]) -> dict[str, str]:
    """The values as the page and the build log show them (text: YAML can give what JSON cannot hold)."""
    return {key: repr(value) for key, value in values.items()}


def mark_page(path: Path, name: str, values: dict[str, Any]) -> None:
    """Mark executed notebook `path` at its top (below its title) as executed with `values`,
    and keep them in its metadata (`marked_pages`)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    listed = ", ".join(f"`{key} = {text}`" for key, text in shown_values(values).items())
    note = (f":::{{admonition}} Executed with non-default parameters\n:class: warning\n"
            f"This page was executed with {listed} (`mmhpn book --only {name} --param ...`), not with the "
            f"book's defaults. `make book`, or `mmhpn book --only {name}` without `--param`, restores the "
            f"default page.\n:::\n")
    nb.metadata.setdefault(METADATA_KEY, {})[MARKED] = shown_values(values)
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown" and first.source.lstrip().startswith("# "):
        title, _, rest = first.source.lstrip().partition("\n")
        first.source = f"{title}\n\n{note}\n{rest.lstrip(chr(10))}"
    else:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(note))
    with atomic_path(path) as tmp:
        nbformat.write(nb, str(tmp))


def marked_pages(root: Path = REPO_ROOT) -> dict[str, dict[str, str]]:
    """The executed pages of the toc marked by `mark_page`, with their values, in the toc's order."""
    import nbformat

    marked = {}
    for name in notebook_order(root):
        page = Path(root) / EXECUTED / f"{name}.ipynb"
        if page.is_file():
            values = nbformat.read(page, as_version=4).metadata.get(METADATA_KEY, {}).get(MARKED)
            if values:
                marked[name] = values
    return marked


def banner_text(marked: dict[str, dict[str, str]]) -> str:
    """The banner's words (HTML-escaped: the theme inserts them as they are)."""
    import html

    pages = "; ".join(f"{name} ({', '.join(f'{key} = {text}' for key, text in values.items())})"
                      for name, values in marked.items())
    return html.escape(f"Not the default build: {pages} executed with non-default parameters; numbers "
                       f"other pages paste from them are theirs. make book restores the default pages.")


def banner_config(root: Path, marked: dict[str, dict[str, str]]) -> Path:
    """Write the book's ``_config.yml`` with a banner naming the marked pages on every page
    (the theme's announcement) to `BANNER_CONFIG`; return its path for ``jupyter-book --config``."""
    import yaml

    root = Path(root)
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config.setdefault("html_theme_options", {})["announcement"] = banner_text(marked)
    path = root / BANNER_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path
