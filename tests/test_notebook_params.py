"""Notebook parameters (`mmhpn.notebook_params`): a wrong or unknown parameter is one line,
from the checking cell that `tools/add_parameter_check.py` puts after every parameters cell,
in papermill and in `make book` (which then publishes nothing)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from mmhpn import notebook_params
from mmhpn.bookbuild import NotebookExecutionError
from mmhpn.bookbuild.execute import execute_notebook
from mmhpn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import add_parameter_check  # noqa: E402

PARAMETERS_CELL = (
    "# Parameters: `make book` injects its profile's values after this cell.\n"
    'profile: str = "smoke"  # training profile\n'
    "seeds: list[int] = [0, 1]  # training seeds\n"
    "epochs: int = 0  # 0 keeps the profile's value\n"
    "overrides: dict = {}  # further TrainConfig fields\n"
    "device: str | None = None  # torch device\n"
)


@pytest.mark.parametrize("injected, message", [
    ({"seeds": 0}, "parameter seeds: got 0 (int), expected list[int], e.g. [0, 1]"),
    ({"seeds": [0, "1"]}, "parameter seeds: got [0, '1'] (list), expected list[int], e.g. [0, 1]"),
    ({"seed": 3}, "unknown parameter 'seed'; did you mean 'seeds'?"),
    ({"colour": 3}, "unknown parameter 'colour'; the declared parameters are profile, seeds, epochs, overrides, device"),
    ({"epochs": True}, "parameter epochs: got True (bool), expected int, e.g. 0"),
    ({"seeds": "[0, 1]"}, "parameter seeds: got '[0, 1]' (str), expected list[int], e.g. [0, 1] "
                          "(papermill's -p passes text: give it as YAML with -y 'seeds: [0, 1]')"),
])
def test_wrong_parameter_gives_one_line(injected, message):
    namespace = {"profile": "smoke", "seeds": [0, 1], "epochs": 0, "overrides": {}, "device": None, **injected}
    injected_source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in injected.items())
    with pytest.raises(ConfigError) as caught:
        notebook_params.check_parameters(namespace, parameters_source=PARAMETERS_CELL, injected_source=injected_source)
    assert str(caught.value) == message


def test_right_parameters_pass_and_every_problem_is_listed_on_one_line():
    fine = {"profile": "demo", "seeds": [3], "epochs": 2, "overrides": {"lr": 0.1}, "device": "cpu"}
    notebook_params.check_parameters(fine, parameters_source=PARAMETERS_CELL, injected_source="# Parameters\nseeds = [3]\n")
    history = ["", PARAMETERS_CELL, "# Parameters\nseed = 3\nseeds = 0\n", "check_parameters(globals())"]
    with pytest.raises(ConfigError) as caught:
        notebook_params.check_parameters({**fine, "seeds": 0, "seed": 3, "In": history})
    assert str(caught.value) == ("unknown parameter 'seed'; did you mean 'seeds'?; "
                                 "parameter seeds: got 0 (int), expected list[int], e.g. [0, 1]")


def _parameter_notebook(path: Path) -> Path:
    """A notebook like ours: parameters cell, the checking cell (added by the tool), a cell using them."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMETERS_CELL)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A table"), params,
                nbformat.v4.new_code_cell("print('seeds used:', sum(seeds))")]
    assert add_parameter_check.add_check_cell(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def kernel_env(monkeypatch, child_env):
    """Kernels started here import this checkout's mmhpn."""
    monkeypatch.setenv("PYTHONPATH", child_env["PYTHONPATH"])


@pytest.mark.slow
def test_papermill_with_a_typo_or_a_right_value(tmp_path, kernel_env):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = _parameter_notebook(tmp_path / "table.ipynb")
    with pytest.raises(PapermillExecutionError) as caught:  # papermill ... -p seed 3
        papermill.execute_notebook(str(source), str(tmp_path / "typo.ipynb"), parameters={"seed": 3},
                                   kernel_name="python3", progress_bar=False)
    assert (caught.value.ename, caught.value.evalue) == ("ConfigError", "unknown parameter 'seed'; did you mean 'seeds'?")
    out = papermill.execute_notebook(str(source), str(tmp_path / "right.ipynb"), parameters={"seeds": [2, 5]},
                                     kernel_name="python3", progress_bar=False)
    assert out.cells[-1].outputs[0]["text"] == "seeds used: 7\n"


@pytest.mark.slow
def test_make_book_reports_a_wrong_parameter_in_one_line(tmp_path, kernel_env):
    _parameter_notebook(tmp_path / "notebooks" / "table.ipynb")
    with pytest.raises(NotebookExecutionError) as caught:  # what make book prints after "error:"
        execute_notebook("table", {"seeds": 0}, root=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "ConfigError: parameter seeds: got 0 (int), expected list[int], e.g. [0, 1]" in message
    assert not (tmp_path / "book" / "executed" / "table.ipynb").exists()  # no half-executed page published


def test_tool_adds_the_check_cell_after_every_parameters_cell(tmp_path):
    copies = []
    for source in sorted((REPO / "notebooks").glob("*.ipynb")):
        shutil.copy(source, tmp_path / source.name)
        copies.append(tmp_path / source.name)
    assert copies and add_parameter_check.main([str(p) for p in copies]) == 0
    assert add_parameter_check.main(["--check", *map(str, copies)]) == 0
    for copy in copies:
        before, after = nbformat.read(REPO / "notebooks" / copy.name, 4), nbformat.read(copy, 4)
        index = [i for i, c in enumerate(after.cells) if "parameters" in c.metadata.get("tags", [])][0]
        check = after.cells[index + 1]
        assert check.source == notebook_params.CHECK_CELL_SOURCE
        assert check.metadata["tags"] == ["mmhpn-check-parameters", "remove-cell"]
        # everything else unchanged (the committed notebooks carry the cell already), and a
        # second run changes nothing
        others = [c.source for c in before.cells if notebook_params.CHECK_TAG not in c.metadata.get("tags", [])]
        assert [c.source for c in after.cells[:index + 1] + after.cells[index + 2:]] == others
        assert not add_parameter_check.add_check_cell(after)


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_notebooks_defaults_pass_its_own_check(path):
    """No false alarm: each committed notebook's parameters cell is found and its defaults fit their types."""
    nb = nbformat.read(path, as_version=4)
    source = [c.source for c in nb.cells if "parameters" in c.metadata.get("tags", [])][0]
    namespace: dict = {}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - the notebook's own parameters cell
    declared = notebook_params.declared_parameters(source)
    assert declared and set(declared) <= set(namespace)
    namespace["In"] = ["", source, notebook_params.CHECK_CELL_SOURCE]
    notebook_params.check_parameters(namespace)
