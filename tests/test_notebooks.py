"""The committed notebooks: no outputs, one typed and commented parameters cell each.

Also the pieces of the book pipeline that need no execution: profiles, the hiding of the
injected-parameters cell, the external-resource scan of built HTML, and the table specs
that let shared trainings hit the run cache.
"""
from __future__ import annotations

import ast

import nbformat
import papermill
import pytest

from mmhpn.bookbuild.execute import hide_injected_cell
from mmhpn.bookbuild.layout import REPO_ROOT, notebook_order
from mmhpn.bookbuild.offline import MATHJAX_ENTRY, external_resources
from mmhpn.bookbuild.pipeline import TIMINGS_PARAMETER
from mmhpn.bookbuild.profiles import PROFILES, get_profile
from mmhpn.errors import ConfigError
from mmhpn.paper import numbers, planner, tables, views

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_the_toc_lists_every_notebook_once_in_execution_order():
    order = notebook_order()
    assert {path.stem for path in NOTEBOOKS} == set(order)
    assert list(order) == sorted(order)  # numbered in the order the build executes them
    # the compute-cost page reads every other notebook's timings: it comes last
    readers = [name for name in order
               if TIMINGS_PARAMETER in papermill.inspect_notebook(str(REPO_ROOT / "notebooks" / f"{name}.ipynb"))]
    assert readers == [order[-1]]


def test_the_notebook_order_is_read_from_the_toc(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: c\n    chapters:\n"
        "      - file: book/executed/b\n      - file: book/method\n"
        "      - file: book/executed/a\n        sections:\n          - file: book/executed/c\n")
    assert notebook_order(tmp_path) == ("b", "a", "c")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    with pytest.raises(ConfigError, match="lists no page under book/executed/"):
        notebook_order(tmp_path)
    with pytest.raises(ConfigError, match="no _toc.yml"):
        notebook_order(tmp_path / "elsewhere")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} carries outputs"
            assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_with_typed_commented_parameters(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} has {len(tagged)} cells tagged 'parameters'"
    params = papermill.inspect_notebook(str(path))
    assert params, f"{path.name} declares no parameter"
    for name, info in params.items():
        assert info["inferred_type_name"] not in ("None", None, ""), f"{path.name}: {name} has no type annotation"
        assert info["help"].strip(), f"{path.name}: {name} has no comment saying what it means"
    # every assignment in the cell is a parameter papermill sees (nothing untyped hides there)
    code_lines = [line for line in tagged[0].source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(code_lines) == len(params), f"{path.name}: the parameters cell has lines papermill does not parse"


def test_profiles_only_pass_parameters_the_notebooks_declare():
    declared = {path.stem: set(papermill.inspect_notebook(str(path))) for path in NOTEBOOKS}
    every = set().union(*declared.values())
    for profile in PROFILES.values():
        assert set(profile.notebook_parameters()) <= every, profile.name
    # the parameters every training notebook takes
    for name in ("02-training", "03-table-4-branches", "08-figure-5-body-scales"):
        assert {"dataset", "data_root", "profile", "seeds", "device", "runs_dir", "overrides"} <= declared[name]


def test_get_profile_overrides_and_errors():
    profile = get_profile("demo", dataset="market1501", device="cuda", seeds=[3, 4])
    params = profile.notebook_parameters()
    assert params["dataset"] == "market1501" and params["data_root"] == "data/market1501"
    assert params["seeds"] == [3, 4] and params["device"] == "cuda"
    assert profile.synthetic_preset is None
    assert len(get_profile("demo").parameters["seeds"]) >= 2
    with pytest.raises(ConfigError, match="unknown book profile"):
        get_profile("fast")
    with pytest.raises(ConfigError, match="at least one seed"):
        get_profile("demo", seeds=[])


def test_injected_parameters_cell_is_removed_and_values_stated(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x: int = 1  # a number"),
                nbformat.v4.new_code_cell("x = 2"), nbformat.v4.new_code_cell("print(x)")]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells[1].metadata["tags"] = ["injected-parameters"]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    hide_injected_cell(path, {"x": 2})
    out = nbformat.read(path, as_version=4)
    assert "remove-cell" in out.cells[1].metadata["tags"]
    assert out.cells[2].cell_type == "markdown" and "`x = 2`" in out.cells[2].source
    assert "hide-input" in out.cells[0].metadata["tags"]


def test_external_resource_scan_finds_what_a_browser_would_load(tmp_path):
    (tmp_path / "ok.html").write_text(
        '<html><head><link rel="stylesheet" href="_static/a.css"><script src="_static/b.js"></script></head>'
        '<body><a href="https://example.org/paper">a link is not loaded</a><img src="data:image/png;base64,AA">'
        '</body></html>')
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "a.css").write_text('body { background: url("data:image/svg+xml;utf8,<svg/>"); }')
    assert external_resources(tmp_path) == []
    (tmp_path / "bad.html").write_text(
        '<script src="https://cdn.example.org/x.js"></script><link href="//fonts.example.org/f.css" rel="stylesheet">'
        '<img srcset="local.png 1x, https://img.example.org/y.png 2x">')
    (tmp_path / "_static" / "c.css").write_text('@import "https://fonts.example.org/css";')
    found = external_resources(tmp_path)
    assert len(found) == 4, found
    assert any("cdn.example.org" in f for f in found) and any("fonts.example.org/css" in f for f in found)


def test_shared_rows_hash_identically_across_tables():
    """Table 4's last row = Table 5's last = Table 6's first; Table 6's APS = Table 7's softmax;
    Figure 5's one-stripe point = the baseline: one training each through the run cache."""
    from mmhpn.config import config_hash

    def h(row):
        weights = (0.9, 0.8, 0.5, 1.0) if row.scale_weights_from else None  # the PSL control's, made up
        return config_hash(planner.row_config(row, "smoke", 0, scale_weights=weights, dataset="synthetic",
                                                  data_root="d"))

    t = tables.TABLES
    assert h(t["table4"].rows[-1]) == h(t["table5"].rows[-1]) == h(t["table6"].rows[0])
    assert h(t["table4"].rows[0]) == h(t["table5"].rows[0]) == h(tables.figure5_rows([1])[0])
    assert h(t["table6"].rows[2]) == h(t["table7"].rows[0]) == h(t["layouts"].rows[0])
    unique = {h(r) for spec in t.values() for r in spec.rows} | {h(r) for r in tables.figure5_rows()}
    assert len(unique) == 18  # 15 table rows, Figure 5's 2, 4 and 8 stripes
    # a preset row keeps its preset's layout even when the profile sets another layout
    config = planner.row_config(t["table4"].rows[1], "unit", 0)
    assert config.layout is None and config.preset == "msm"


def test_paper_numbers_are_complete_and_sourced():
    transcribed = numbers.paper_numbers()
    assert set(transcribed["table"]) == {f"table{i}" for i in range(1, 8)}
    assert transcribed["source"].str.startswith("MMHPN paper Table").all()
    for key, spec in tables.TABLES.items():
        if not spec.in_paper:
            continue
        paper_rows = list(numbers.paper_table(key).index)
        assert paper_rows == [r.label for r in spec.rows if r.label in paper_rows]
    t1 = numbers.paper_table("table1")
    assert t1.loc["MMHPN", ("paper: Market-1501", "mAP")] == pytest.approx(83.4)
    assert t1.loc["MMHPN", ("paper: Market-1501 (multiple query)", "mAP")] == pytest.approx(88.2)


def test_summary_labels_measured_columns_with_their_dataset():
    import pandas as pd

    results = pd.DataFrame([{"row": r, "seed": s, "rank1": 40.0 + i + s, "mAP": 20.0 + i - 3 * s}
                            for i, r in enumerate(["Baseline", "Baseline+MSM", "Baseline+MHPM", "Baseline+MMHPN"])
                            for s in (0, 1)])
    summary = views.summarize(results, "table4", "synthetic (demo)")
    top = summary.columns.get_level_values(0)
    assert "measured on synthetic (demo) (2 seeds)" in top
    assert all(c.startswith("paper: ") for c in top if not c.startswith("measured on"))
    assert summary.loc["Baseline", ("measured on synthetic (demo) (2 seeds)", "mAP")] == "18.5 ± 2.1"
    checked = numbers.check_table("table4", results)
    # every Table 4 pair is shown by the paper on all three datasets, in both metrics: three
    # claims of the text, and the full model over MHPM as the paper's numbers only
    assert len(checked) == 8 and set(checked["source"]) == {
        "paper: Market-1501, DukeMTMC-reID, CUHK03",
        "paper's numbers only (the text claims no order): Market-1501, DukeMTMC-reID, CUHK03"}
    # +1 pp or +2 pp every seed in both metrics: a zero-width interval above 0 (flagged)
    assert set(checked["verdict"]) == {"supported"} and checked["note"].str.startswith("zero variance").all()
    flipped = results.assign(mAP=-results["mAP"], rank1=-results["rank1"])
    assert set(numbers.check_table("table4", flipped)["verdict"]) == {"contradicted"}


def test_book_config_is_offline_and_scoped():
    import yaml

    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())
    assert config["only_build_toc_files"] is True
    assert {".venv", "data", "runs"} <= set(config["exclude_patterns"])
    assert config["execute"]["execute_notebooks"] == "off"
    sphinx = config["sphinx"]["config"]
    assert not sphinx["mathjax_path"].startswith(("http", "//"))
    assert sphinx["mathjax_path"] == str(MATHJAX_ENTRY)


def test_figure5s_stripe_counts_default_is_the_tables_one_source():
    declared = papermill.inspect_notebook(str(REPO_ROOT / "notebooks" / "08-figure-5-body-scales.ipynb"))
    assert tuple(ast.literal_eval(declared["stripe_counts"]["default"])) == tables.FIGURE5_STRIPES
