"""The package's layering, checked by walking the import statements of every module (tests/test_layers.py).

Layers, lowest first: the foundations (``cvlib/*.py``: parameters, io, i18n, report, plots, ...), the models
(``cvlib/models/``), the analysis stages (``cvlib/analysis/``), the run (``cvlib/run/``) and the command line
(``cvlib/cli.py``). A module imports only from its own layer or lower ones; cvlib's modules import each other at
the top of the file (never inside a function, which would hide a cycle), and the imports form no cycle. Inside a
function only heavy third-party libraries a stage may not need are imported.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

LAYERS = ("foundation", "models", "analysis", "run", "cli")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ("models", "analysis", "run"):
        return LAYERS.index(parts[1])
    if module in ("cvlib.cli", "cvlib.__main__"):
        return LAYERS.index("cli")
    return 0


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(tree: ast.Module, name: str, modules: set[str], is_package: bool) -> list[tuple[str, int, str]]:
    """(imported cvlib module, line, where: 'top' | 'function' | 'typing') for every cvlib import of a module."""
    found: list[tuple[str, int, str]] = []

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            here = "function" if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else where
            if _type_checking(child):
                here = "typing"
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, where) for a in child.names if a.name.split(".")[0] == "cvlib")
            elif isinstance(child, ast.ImportFrom):
                base = resolve(child)
                if base.split(".")[0] == "cvlib":
                    for a in child.names:
                        sub = f"{base}.{a.name}"
                        found.append((sub if sub in modules else base, child.lineno, where))
            visit(child, here)

    visit(tree, "top")
    return found


def third_party_in_functions(tree: ast.Module) -> list[tuple[str, int]]:
    """Standard-library modules imported inside a function (they cost nothing at the top of the file)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                names = ([a.name for a in sub.names] if isinstance(sub, ast.Import) else
                         [sub.module] if isinstance(sub, ast.ImportFrom) and sub.module and not sub.level else [])
                out += [(n, sub.lineno) for n in names if n.split(".")[0] in sys.stdlib_module_names]
    return out


def violations(root: Path) -> list[str]:
    """Every breach of the layering rules in the package at `root` (a folder named cvlib)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    problems = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target, line, where in imports(tree, name, modules, path.name == "__init__.py"):
            where_txt = f"{path.relative_to(root.parent)}:{line}"
            if target not in modules and target != "cvlib":
                problems.append(f"{where_txt}: imports {target}, which does not exist")
                continue
            if layer(target) > layer(name):
                problems.append(f"{where_txt}: upward import of {target} ({LAYERS[layer(target)]}) from "
                                f"{name} ({LAYERS[layer(name)]})")
            if where == "function":
                problems.append(f"{where_txt}: {name} imports {target} inside a function (import it at the top)")
            if where == "top" and target != name:
                graph[name].add(target)
        problems += [f"{path.relative_to(root.parent)}:{line}: standard-library {mod} imported inside a function"
                     for mod, line in third_party_in_functions(tree)]
    problems += [f"import cycle: {' -> '.join(c + [c[0]])}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500


def oversized(root: Path) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES lines (decorators included)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(root.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{where}: {len(text.splitlines())} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - first + 1 > MAX_FUNCTION_LINES:
                    found.append(f"{where}:{node.lineno}: {node.name} has {node.end_lineno - first + 1} lines "
                                 f"(at most {MAX_FUNCTION_LINES})")
    return found
