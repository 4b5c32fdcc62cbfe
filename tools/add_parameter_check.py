"""Insert (or refresh) the parameter-checking cell right after every notebook's parameters cell.

    python tools/add_parameter_check.py            # edit notebooks/*.ipynb in place
    python tools/add_parameter_check.py --check    # exit 1 naming notebooks without the cell

The cell's source is `mmhpn.notebook_params.CHECK_CELL_SOURCE`; it is tagged
``mmhpn-check-parameters`` (so a second run updates it instead of adding another) and
``remove-cell`` (it prints nothing when all is well; the book need not show it). papermill
injects its ``injected-parameters`` cell between the parameters cell and this one, which
is what `check_parameters` expects. Notebooks without a ``parameters`` cell are skipped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmhpn.notebook_params import CHECK_CELL_SOURCE, CHECK_TAG  # noqa: E402

TAGS = [CHECK_TAG, "remove-cell"]


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def add_check_cell(nb) -> bool:
    """Put the checking cell right after the parameters cell; return whether `nb` changed."""
    params = [i for i, cell in enumerate(nb.cells) if "parameters" in _tags(cell)]
    if not params:
        return False
    existing = [i for i, cell in enumerate(nb.cells) if CHECK_TAG in _tags(cell)]
    if existing == [params[0] + 1] and nb.cells[existing[0]].source == CHECK_CELL_SOURCE \
            and _tags(nb.cells[existing[0]]) == TAGS:
        return False
    for index in reversed(existing):  # a stale or misplaced copy: replaced by the one below
        del nb.cells[index]
    cell = nbformat.v4.new_code_cell(CHECK_CELL_SOURCE)
    cell.metadata["tags"] = list(TAGS)
    position = [i for i, c in enumerate(nb.cells) if "parameters" in _tags(c)][0] + 1
    nb.cells.insert(position, cell)
    return True


def has_check_cell(nb) -> bool:
    params = [i for i, cell in enumerate(nb.cells) if "parameters" in _tags(cell)]
    return not params or (params[0] + 1 < len(nb.cells) and CHECK_TAG in _tags(nb.cells[params[0] + 1])
                          and nb.cells[params[0] + 1].source == CHECK_CELL_SOURCE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="only report notebooks that lack the cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    missing = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            if not has_check_cell(nb):
                missing.append(str(path))
            continue
        if add_check_cell(nb):
            nbformat.validate(nb)
            tmp = path.with_suffix(".tmp.ipynb")
            nbformat.write(nb, tmp)
            tmp.replace(path)
            print(f"added the parameter check to {path}")
    if missing:
        print(f"notebooks without the parameter-check cell after their parameters cell: {', '.join(missing)}; "
              "run python tools/add_parameter_check.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
