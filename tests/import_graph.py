"""The project's import graph from source (top-level and function-level imports alike), and its cycles.

`graph(root)` maps each module of loop/, rewards/, store/ and cli.py to the project modules
it imports (a package and its own submodules do not count as importing each other);
`cycles(graph)` returns each strongly connected component of more than one module.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = ("loop", "rewards", "store")


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    if (root / "cli.py").exists():
        out["cli"] = root / "cli.py"
    return out


def _imported(node: ast.AST, pkg: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        return [base] + [f"{base}.{a.name}" for a in node.names]
    return []


def graph(root: Path) -> dict[str, set[str]]:
    mods = modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    out: dict[str, set[str]] = {}
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for name in _imported(node, pkg):
                r = resolve(name)
                if r and r != m and not m.startswith(r + ".") and not r.startswith(m + "."):
                    deps.add(r)
        out[m] = deps
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
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
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(found)


def deferred_imports(root: Path) -> list[tuple[str, int, str]]:
    """(file, line, module) of every import inside a function: the top-level name of a library,
    the full name of a project module."""
    out = []
    for m, path in modules(root).items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        seen: set[int] = set()
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if id(node) in seen or not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                seen.add(id(node))
                if isinstance(node, ast.ImportFrom) and node.level:  # a project module, named in full
                    pkg = m if path.name == "__init__.py" else m.rpartition(".")[0]
                    name = _imported(node, pkg)[-1]
                else:
                    name = ((node.module if isinstance(node, ast.ImportFrom) else node.names[0].name) or "")
                    name = name.split(".")[0]
                out.append((str(path.relative_to(root)), node.lineno, name))
    return sorted(out)
