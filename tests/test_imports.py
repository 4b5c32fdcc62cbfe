"""Module structure: every module imports on its own, and no import cycle exists, function-level imports included."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mmhpn"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py"))
IMPORTABLE = [m for m in MODULES if m != "mmhpn.__main__"]  # importing __main__ runs the command


def _imports(path: Path) -> set[str]:
    """The mmhpn modules `path` imports, at module level or inside functions (not those under
    ``if TYPE_CHECKING:``, which only annotations read and which never run)."""
    tree = ast.parse(path.read_text())
    annotation_only = {id(inner) for node in ast.walk(tree)
                       if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
                       for inner in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in annotation_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmhpn"):
            for alias in node.names:  # `from mmhpn import distributed` names a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mmhpn"))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or around a loop (Tarjan's
    strongly connected components of more than one module), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep == node or dep not in graph:
                continue
            if dep not in index:
                connect(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return groups


def test_no_import_cycle_function_level_imports_included():
    """A late import inside a function hides a cycle from Python, not from the design:
    `mmhpn.runs` uses `mmhpn.training`, never the other way round, and so for every pair."""
    graph = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    assert "mmhpn.runs" not in graph["mmhpn.training"] and "mmhpn.training" in graph["mmhpn.runs"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the finder finds
    cycles = _cycles(graph)
    assert not cycles, f"groups of modules importing each other (function-level imports included): {cycles}"


def test_every_module_imports_on_its_own():
    # One interpreter per module would cost ~2 s each; one interpreter that imports each module
    # after clearing every mmhpn module from sys.modules tests the same thing.
    script = (
        "import importlib, sys\n"
        f"for name in {IMPORTABLE!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'mmhpn' or m.startswith('mmhpn.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    # the timeout only guards against a hang: on a busy 2-core machine torch alone takes minutes to import
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_module_is_in_the_readmes_layout_table():
    # the README's layout table gives every module and subpackage its one job
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Layout"):readme.index("## Command line")]
    entries = {f"mmhpn/{p.name}/" if p.is_dir() else f"mmhpn/{p.name}"
               for p in PACKAGE.iterdir()
               if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()}
    missing = sorted(entry for entry in entries if f"`{entry}`" not in table)
    assert not missing, f"README.md's layout table has no row for {missing}"
