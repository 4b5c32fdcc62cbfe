"""Set-up files agree with each other: pyproject.toml and environment.yml list the same dependencies."""
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the dev extras install tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["dev"]]


def _environment():
    pip_section = False
    found = []
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.strip()
        if stripped == "- pip:":
            pip_section = True
            continue
        if pip_section and stripped.startswith("- ") and not stripped.startswith("- -e"):
            found.append(stripped[2:].strip())
    return found


def test_environment_yml_lists_exactly_the_pyproject_dependencies():
    assert sorted(_environment()) == sorted(_pyproject())


def test_dev_extras_include_the_export_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["export"]) <= set(extras["dev"])  # so `make test` runs the ONNX export tests


def test_torch_ranges_admit_the_installed_2_14_line():
    reqs = {_name(r): r for r in _pyproject()}
    assert reqs["torch"].replace(" ", "") == "torch>=2.3"
    assert "<" not in reqs["torchvision"]
    assert "<2" in reqs["jupyter-book"].replace(" ", "")


@pytest.mark.parametrize("path", ["book", "mmhpn", "notebooks", "data", "tests", "environment.yml",
                                  "_config.yml", "README.md", "pyproject.toml", "Makefile", ".ci/run",
                                  ".ci/install-system-deps", ".gitattributes",
                                  ".github/workflows/book.yml", "docs/synthetic-pedestrians.png"])
def test_top_level_layout(path):
    assert (ROOT / path).exists(), f"{path} is part of the documented layout"
