"""One page rebuilt with the reader's own parameters (`mmhpn book --only NOTEBOOK --param KEY=VALUE`):
VALUE read as YAML, checked against the notebook before anything runs (one line), the page
marked at its top and a banner on every page, the other executed pages untouched, and the
default page back once it is executed again without --param (tiny generated book)."""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from mmhpn.bookbuild.layout import EXECUTED, REPO_ROOT
from mmhpn.bookbuild.non_default import (banner_config, check_values, mark_page, marked_pages, parse_param,
                                         parse_params)
from mmhpn.bookbuild.pipeline import run_pipeline
from mmhpn.bookbuild.profiles import Profile
from mmhpn.cli import main
from mmhpn.errors import ConfigError

MARK = "Executed with non-default parameters"
BANNER = "Not the default build"


def _notebook(root: Path, name: str, title: str, *sources: str) -> None:
    """A notebook as the book's are: a title cell, the parameters cell, then code."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("x: int = 1  # a number\nscales: list[float] = [0.5, 1.0]  # some scales")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nWhat this page shows."), params,
                *(nbformat.v4.new_code_cell(source) for source in sources)]
    (root / "notebooks").mkdir(exist_ok=True)
    nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")


def _book(root: Path) -> Profile:
    """A two-page book (an introduction and two notebooks) with the repository's configuration."""
    shutil.copy2(REPO_ROOT / "_config.yml", root / "_config.yml")
    (root / "book" / "_static").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "book" / "_static" / "mmhpn.css", root / "book" / "_static" / "mmhpn.css")
    (root / "book" / "intro.md").write_text("# A tiny book\n\nTwo pages follow.\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                   "  - file: book/executed/first\n  - file: book/executed/second\n")
    _notebook(root, "first", "The first page", "print('first page, x is', x)")
    _notebook(root, "second", "The second page", "print('second page, x is', x, 'scales', scales)")
    (root / "data").mkdir()
    return Profile(name="smoke", dataset="synthetic", data_root="data", synthetic_preset=None)


def test_a_param_value_is_read_as_yaml():
    assert parse_param("gammas=[0.5, 1.0, 1.0, 2.0]") == ("gammas", [0.5, 1.0, 1.0, 2.0])
    assert parse_param("top_k=5") == ("top_k", 5)
    assert parse_param("queries=0,5,9") == ("queries", "0,5,9")
    assert parse_param("layouts={'1+2': {conv5_3: [1, 2]}}") == ("layouts", {"1+2": {"conv5_3": [1, 2]}})
    assert parse_params(["x=2", "scales=[1.5]"]) == {"x": 2, "scales": [1.5]}


@pytest.mark.parametrize("text, expected", [
    ("gammas", r"--param 'gammas': expected KEY=VALUE, KEY a notebook parameter and VALUE in YAML, e\.g\. "),
    ("=3", r"--param '=3': expected KEY=VALUE"),
    ("gammas=[0.5, 1.0", r"--param 'gammas=\[0\.5, 1\.0': VALUE is not valid YAML \(.+\); e\.g\. --param "),
])
def test_a_malformed_param_is_one_line(text, expected):
    with pytest.raises(ConfigError, match=expected) as failure:
        parse_param(text)
    assert "\n" not in str(failure.value)


def test_a_param_given_twice_is_refused():
    with pytest.raises(ConfigError, match=r"--param x is given twice \(1 and 2\)"):
        parse_params(["x=1", "x=2"])


def test_values_are_checked_against_the_notebook_before_it_runs(tmp_path):
    _book(tmp_path)
    check_values("second", {"x": 3, "scales": [1, 2.5]}, tmp_path)
    with pytest.raises(ConfigError) as failure:
        check_values("second", {"x": "three", "scale": [1.0]}, tmp_path)
    message = str(failure.value)
    assert "\n" not in message
    assert message == ("notebook second: parameter x: got 'three' (str), expected int, e.g. 1; "
                       "unknown parameter 'scale'; did you mean 'scales'?")


def test_the_command_line_refuses_wrong_params_in_one_line_before_executing(tmp_path, capsys):
    _book(tmp_path)
    root = ["--no-build", "--root", str(tmp_path)]
    assert main(["book", "--only", "second", "--param", "x=[1", *root]) == 2
    assert capsys.readouterr().err.strip().startswith("mmhpn book: error: --param 'x=[1': VALUE is not valid YAML")
    assert main(["book", "--only", "second", "--param", "x=abc", *root]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mmhpn book: error: notebook second: parameter x: got 'abc' (str), expected int, e.g. 1"
    assert main(["book", "--param", "x=2", *root]) == 2  # a full build is the default book
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "need the notebook(s) they are for (mmhpn book --only NOTEBOOK" in err
    assert not (tmp_path / EXECUTED).exists()  # nothing was executed


def test_a_marked_page_says_so_below_its_title_and_the_site_gets_a_banner(tmp_path):
    _book(tmp_path)
    executed = tmp_path / EXECUTED
    executed.mkdir(parents=True)
    for name in ("first", "second"):
        shutil.copy2(tmp_path / "notebooks" / f"{name}.ipynb", executed / f"{name}.ipynb")
    assert marked_pages(tmp_path) == {}
    mark_page(executed / "second.ipynb", "second", {"scales": [0.25, 4.0]})
    title = nbformat.read(executed / "second.ipynb", as_version=4).cells[0].source
    assert title.startswith("# The second page\n\n:::{admonition} " + MARK)
    assert "`scales = [0.25, 4.0]`" in title and "What this page shows." in title
    assert marked_pages(tmp_path) == {"second": {"scales": "[0.25, 4.0]"}}
    import yaml

    config = yaml.safe_load(banner_config(tmp_path, marked_pages(tmp_path)).read_text())
    banner = config["sphinx"]["config"]["html_theme_options"]["announcement"]
    assert banner.startswith(BANNER) and "second (scales = [0.25, 4.0])" in banner
    # everything else is the book's own configuration
    assert config["sphinx"]["config"]["mathjax_path"] == "mathjax/es5/tex-svg.js"


@pytest.mark.slow
def test_only_with_params_marks_that_page_and_leaves_the_others(tmp_path):
    profile = _book(tmp_path)
    executed, html = tmp_path / EXECUTED, tmp_path / "_build" / "html" / "book"
    run_pipeline(profile, build=False, root=tmp_path)  # the default book
    first = (executed / "first.ipynb").read_bytes()

    record = run_pipeline(profile, ("second",), root=tmp_path, parameters=parse_params(["x=5", "scales=[2.0]"]))
    assert record["parameters"] == {"x": "5", "scales": "[2.0]"} and not record["complete"]
    assert (executed / "first.ipynb").read_bytes() == first  # untouched
    second = (html / "executed" / "second.html").read_text()
    assert MARK in second and "second page, x is 5 scales [2.0]" in second
    assert MARK not in (html / "executed" / "first.html").read_text()
    # every page says that the book is not the default build (the introduction pastes numbers)
    for page in ("intro.html", "executed/first.html", "executed/second.html"):
        assert BANNER in (html / page).read_text(), page

    run_pipeline(profile, ("second",), root=tmp_path)  # --only second, without --param
    assert marked_pages(tmp_path) == {}
    second = (html / "executed" / "second.html").read_text()
    assert MARK not in second and "second page, x is 1 scales [0.5, 1.0]" in second
    assert not any(BANNER in page.read_text() for page in html.rglob("*.html"))
    assert (executed / "first.ipynb").read_bytes() == first
