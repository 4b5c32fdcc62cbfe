"""The Makefile: `make help` lists every target, a too-old Python is refused in one line,
.ci/run installs the system tools then runs `make test`, `make test` and `make book` install
the tools they need themselves (dry runs), and the nbstripout git filter that `make install`
configures strips a notebook's outputs on `git add`."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()
# The make commands below run as a user would type them: under `make test` the outer make would
# otherwise hand its command-line variables (e.g. STAMP=...) to them through MAKEFLAGS.
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def _targets() -> list[str]:
    return re.findall(r"^([a-z][a-z-]*):", MAKEFILE, flags=re.M)


def test_make_help_lists_every_target_with_one_line():
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    listed = [line.split()[1] for line in lines]
    assert sorted(listed) == sorted(_targets())
    assert {"test", "test-fast", "book", "book-archive", "lab", "system-deps", "help"} <= set(listed)
    for line in lines:
        assert len(line.split(maxsplit=2)) == 3, f"no description: {line!r}"
    phony = set(re.search(r"^\.PHONY: (.*)$", MAKEFILE, flags=re.M).group(1).split())
    assert phony == set(_targets())


def test_a_python_older_than_requires_python_is_refused_in_one_line(tmp_path):
    fake = tmp_path / "python-old"
    fake.write_text("#!/bin/sh\n[ \"$1\" = -V ] && { echo 'Python 3.9.2'; exit 0; }\nexit 1\n")
    fake.chmod(0o755)
    result = subprocess.run(["make", "-s", f"PYTHON={fake}", f"VENV={tmp_path / 'venv'}", "install"],
                            cwd=ROOT, capture_output=True, text=True, env=MAKE_ENV)
    assert result.returncode != 0
    assert "make: Python >= 3.10 is needed, but" in result.stderr and "Python 3.9.2" in result.stderr
    assert not (tmp_path / "venv").exists()
    requires = re.search(r'requires-python = ">=([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"MIN_PYTHON := {requires}" in MAKEFILE


def test_ci_installs_the_system_tools_then_runs_make_test():
    commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert commands.index(".ci/install-system-deps") < commands.index("make test")
    # --no-print-directory: under `make test` (as in CI) a nested make would add "Entering directory" lines
    dry = subprocess.run(["make", "--no-print-directory", "-n", "system-deps"], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert dry.stdout.strip() == ".ci/install-system-deps"


def _dry_run(tmp_path: Path, target: str, *variables: str) -> list[str]:
    # STAMP: a file newer than pyproject.toml, so the install steps are not part of what is checked
    stamp = tmp_path / "installed"
    stamp.touch()
    result = subprocess.run(["make", "--no-print-directory", "-n", target, f"STAMP={stamp}", *variables],
                            cwd=ROOT, capture_output=True, text=True, check=True, env=MAKE_ENV)
    return [line.rstrip() for line in result.stdout.splitlines()]


def test_make_test_installs_the_browser_and_npm_before_the_tests_when_missing(tmp_path):
    # a fresh machine (issue #21): the browser test needs Chromium, the smoke book npm until
    # MathJax is vendored; .ci/install-system-deps installs only what is missing
    vendored = tmp_path / "tex-svg.js"
    vendored.write_text("")
    fresh = _dry_run(tmp_path, "test", f"MATHJAX_JS={tmp_path / 'missing.js'}")
    assert fresh[0] == ".ci/install-system-deps chromium npm" and "-m pytest" in fresh[1]
    assert _dry_run(tmp_path, "test", f"MATHJAX_JS={vendored}")[0] == ".ci/install-system-deps chromium"
    assert _dry_run(tmp_path, "book", f"MATHJAX_JS={tmp_path / 'missing.js'}")[0] == ".ci/install-system-deps npm"
    assert "install-system-deps" not in " ".join(_dry_run(tmp_path, "book", f"MATHJAX_JS={vendored}"))
    # the fast loop needs no system tool; .venv is made only once python3-venv is there
    assert [line for line in _dry_run(tmp_path, "test-fast") if "pytest" in line][0].startswith(
        '.venv/bin/python -m pytest -m "not slow"')
    assert "install-system-deps" not in " ".join(_dry_run(tmp_path, "test-fast"))
    assert re.search(r"\.ci/install-system-deps venv && \$\(PYTHON\) -m venv", MAKEFILE)
    assert "MATHJAX_JS ?= book/_static/mathjax/es5/tex-svg.js" in MAKEFILE


def test_the_nbstripout_filter_strips_outputs_when_a_notebook_is_added(tmp_path):
    clean = re.search(r'git config filter\.nbstripout\.clean "(.*)"', MAKEFILE).group(1)
    clean = clean.replace("'$(abspath $(BIN))/python'", shlex.quote(sys.executable))
    repo = tmp_path / "clone"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / ".gitattributes").write_text((ROOT / ".gitattributes").read_text())
    subprocess.run([*git, "config", "filter.nbstripout.clean", clean], check=True)
    subprocess.run([*git, "config", "filter.nbstripout.smudge", "cat"], check=True)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)", id="cell-00")
    cell.metadata["tags"] = ["parameters"]
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    cell.execution_count = 3
    nb.cells = [cell]
    nbformat.write(nb, repo / "saved-in-lab.ipynb")
    subprocess.run([*git, "add", "."], check=True)
    staged = json.loads(subprocess.run([*git, "show", ":saved-in-lab.ipynb"], check=True,
                                       capture_output=True, text=True).stdout)
    (staged_cell,) = staged["cells"]
    assert staged_cell["outputs"] == [] and staged_cell["execution_count"] is None
    assert staged_cell["id"] == "cell-00" and staged_cell["metadata"]["tags"] == ["parameters"]
    # the working copy keeps its outputs; only what is committed is stripped
    assert nbformat.read(repo / "saved-in-lab.ipynb", as_version=4).cells[0].outputs


def test_the_committed_notebooks_are_unchanged_by_the_filter(tmp_path):
    # with the filter installed, a fresh clone must not show every notebook as modified
    # (one nbstripout process strips copies of them all in place: one interpreter, not one each)
    committed = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in committed:
        shutil.copy2(path, tmp_path / path.name)
    subprocess.run([sys.executable, "-m", "nbstripout", "--keep-id", *(str(tmp_path / p.name) for p in committed)],
                   capture_output=True, text=True, check=True)
    for path in committed:
        assert (tmp_path / path.name).read_text() == path.read_text(), f"{path.name} changes under nbstripout --keep-id"


def test_the_readme_shows_the_real_make_help_and_a_picture_that_exists():
    readme = (ROOT / "README.md").read_text()
    listing = re.search(r"```text\n(.*?)```", readme, flags=re.S).group(1)
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert listing == result.stdout
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert pictures and all((ROOT / picture).is_file() for picture in pictures)


def test_make_book_pdf_installs_the_browser_then_prints_the_executed_book(tmp_path):
    vendored = tmp_path / "tex-svg.js"
    vendored.write_text("")
    assert _dry_run(tmp_path, "book-pdf", f"MATHJAX_JS={tmp_path / 'missing.js'}") == [
        ".ci/install-system-deps chromium npm", ".venv/bin/mmhpn book --pdf _build/mmhpn-book.pdf"]
    assert _dry_run(tmp_path, "book-pdf", f"MATHJAX_JS={vendored}", "PDF=out/book.pdf") == [
        ".ci/install-system-deps chromium", ".venv/bin/mmhpn book --pdf out/book.pdf"]
