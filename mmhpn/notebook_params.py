"""Notebook parameters checked against their declarations: one line per wrong parameter.

Every notebook declares its parameters in the cell tagged ``parameters``, one annotated
assignment each (``seeds: list[int] = [0, 1]  # ...``). papermill injects the values it is
given in a cell tagged ``injected-parameters`` right after it, as plain assignments, and
only *warns* about a name the notebook does not declare. The cell after that calls::

    from mmhpn.notebook_params import check_parameters
    check_parameters(globals())

which raises one `ConfigError` naming every parameter whose value does not fit its declared
type (``parameter seeds: got 0 (int), expected list[int], e.g. [0, 1]``) and every injected
name the parameters cell does not declare (``unknown parameter 'seed'; did you mean
'seeds'?``). Under `mmhpn book` the error surfaces as that one line.

How the cells are found, in papermill and in JupyterLab alike: the kernel's input history
(IPython's ``In`` list, in the namespace as ``In``/``_ih``) holds the source of every cell
run so far, in order. The parameters cell is the latest one made only of assignments with
at least one annotated; the injected cell is a later one whose first line is papermill's
``# Parameters`` comment. No notebook path is needed (a kernel does not know it under
papermill). Annotations understood: ``str``, ``int`` (not bool), ``float`` (int accepted),
``bool``, ``list``/``tuple``/``set``/``dict`` with or without element types, ``X | None``,
``Optional[X]``, ``Any``; any other annotation is not checked.
"""
from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from typing import Any

from mmhpn.errors import ConfigError

INJECTED_COMMENT = "# Parameters"  # the first line of papermill's injected cell (its default comment)
CHECK_TAG = "mmhpn-check-parameters"  # tag of the checking cell (tools/add_parameter_check.py)
CHECK_CELL_SOURCE = (
    "# Refuse wrong or unknown parameters with one line each (see mmhpn.notebook_params).\n"
    "from mmhpn.notebook_params import check_parameters\n"
    "\n"
    "check_parameters(globals())"
)


@dataclass(frozen=True)
class Declared:
    """One declared parameter: its annotation and default as written in the parameters cell."""

    name: str
    annotation: ast.expr
    default: str | None

    @property
    def type_text(self) -> str:
        return ast.unparse(self.annotation)


def declared_parameters(source: str) -> dict[str, Declared]:
    """The annotated assignments of a parameters cell, by name (in order)."""
    declared = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            default = ast.unparse(node.value) if node.value is not None else None
            declared[node.target.id] = Declared(node.target.id, node.annotation, default)
    return declared


def assigned_names(source: str) -> list[str]:
    """Names assigned at the top level of a cell (papermill's injected cell: ``name = value``)."""
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _is_parameters_cell(source: str) -> bool:
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    only_assignments = all(isinstance(n, (ast.Assign, ast.AnnAssign)) or
                           (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)
    return only_assignments and any(isinstance(n, ast.AnnAssign) for n in body)


def _is_injected_cell(source: str) -> bool:
    return source.lstrip().splitlines()[:1] == [INJECTED_COMMENT]


def cells_from_history(history: list[str]) -> tuple[str, str | None]:
    """(parameters cell source, injected cell source or None) from a kernel's input history."""
    for index in range(len(history) - 1, -1, -1):
        if _is_parameters_cell(history[index]) and not _is_injected_cell(history[index]):
            later = [s for s in history[index + 1:] if _is_injected_cell(s)]
            return history[index], (later[-1] if later else None)
    raise ConfigError("check_parameters found no parameters cell among the cells run in this kernel; "
                      "run the notebook from its first cell")


# ------------------------------------------------------------------------------------------
# Type checks against an annotation's syntax tree.

_SIMPLE = {"str": str, "bool": bool, "dict": dict, "list": list, "tuple": tuple, "set": set}


def fits(value: Any, annotation: ast.expr) -> bool:
    """Whether `value` fits the annotation (unknown annotations: True, nothing to check)."""
    if isinstance(annotation, ast.Constant) and annotation.value is None:
        return value is None
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return fits(value, annotation.left) or fits(value, annotation.right)
    if isinstance(annotation, ast.Name):
        name = annotation.id
        if name == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if name == "float":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if name == "None":
            return value is None
        if name in _SIMPLE:
            return isinstance(value, _SIMPLE[name])
        return True  # Any, Path, ...: not checked
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        base, args = annotation.value.id, annotation.slice
        items = list(args.elts) if isinstance(args, ast.Tuple) else [args]
        if base == "Optional":
            return value is None or fits(value, items[0])
        if base == "Union":
            return any(fits(value, item) for item in items)
        if base in ("list", "set"):
            return isinstance(value, _SIMPLE[base]) and all(fits(v, items[0]) for v in value)
        if base == "tuple":
            if not isinstance(value, tuple):
                return False
            if len(items) == 2 and isinstance(items[1], ast.Constant) and items[1].value is Ellipsis:
                return all(fits(v, items[0]) for v in value)
            return len(value) == len(items) and all(fits(v, t) for v, t in zip(value, items))
        if base == "dict":
            return isinstance(value, dict) and (len(items) != 2 or all(
                fits(k, items[0]) and fits(v, items[1]) for k, v in value.items()))
    return True


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _unknown_problem(name: str, declared: dict[str, Declared]) -> str:
    close = difflib.get_close_matches(name, list(declared), n=1)
    return (f"unknown parameter {name!r}; did you mean {close[0]!r}?" if close else
            f"unknown parameter {name!r}; the declared parameters are {', '.join(declared)}")


def _type_problem(name: str, value: Any, spec: Declared, papermill_hint: bool = True) -> str | None:
    if fits(value, spec.annotation):
        return None
    line = f"parameter {name}: got {_short_repr(value)} ({type(value).__name__}), expected {spec.type_text}"
    if spec.default is not None:
        line += f", e.g. {spec.default}"
    if papermill_hint and isinstance(value, str) and not fits("", spec.annotation):
        line += f" (papermill's -p passes text: give it as YAML with -y '{name}: {spec.default}')"
    return line


def parameter_problems(namespace: dict, parameters_source: str, injected_source: str | None = None) -> list[str]:
    """One line per wrong, missing or unknown parameter (empty when all is well)."""
    declared = declared_parameters(parameters_source)
    problems = [_unknown_problem(name, declared)
                for name in assigned_names(injected_source or "") if name not in declared]
    for name, spec in declared.items():
        if name not in namespace:
            problems.append(f"parameter {name} is not defined; run the parameters cell first")
            continue
        problem = _type_problem(name, namespace[name], spec)
        if problem:
            problems.append(problem)
    return problems


def value_problems(values: dict[str, Any], parameters_source: str) -> list[str]:
    """One line per value in `values` that the parameters cell does not declare or whose type
    does not fit its declaration: the check of values before a notebook is executed with them
    (`mmhpn book --param`)."""
    declared = declared_parameters(parameters_source)
    problems = []
    for name, value in values.items():
        problem = (_unknown_problem(name, declared) if name not in declared
                   else _type_problem(name, value, declared[name], papermill_hint=False))
        if problem:
            problems.append(problem)
    return problems


def check_parameters(namespace: dict, *, parameters_source: str | None = None,
                     injected_source: str | None = None) -> None:
    """Raise one ConfigError (one line) listing every wrong or unknown parameter of this notebook.

    `namespace` is the notebook's ``globals()``. The parameters and injected cells are read
    from the kernel's input history unless given as source text.
    """
    if parameters_source is None:
        history = namespace.get("In") or namespace.get("_ih")
        if not history:
            raise ConfigError("check_parameters needs the IPython input history (In); outside a notebook "
                              "pass parameters_source=")
        # The last entry is the cell calling us; it declares nothing.
        parameters_source, found_injected = cells_from_history([str(s) for s in history[:-1]])
        injected_source = injected_source if injected_source is not None else found_injected
    problems = parameter_problems(namespace, parameters_source, injected_source)
    if problems:
        raise ConfigError("; ".join(problems))
