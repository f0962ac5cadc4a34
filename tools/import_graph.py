"""Import cycles and module sizes of petri_nb, read from the source (no imports executed).

    .venv/bin/python tools/import_graph.py        # prints cycles (with TYPE_CHECKING imports) and modules over 400 lines

Counts every module-level import, ``if TYPE_CHECKING:`` ones included (a cycle there is
still two modules that each need the other), but not imports inside functions, which
are deliberate lazy loads of optional parts (IPython, the widget).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "petri_nb"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> list[ast.ImportFrom | ast.Import]:
    found: list[ast.ImportFrom | ast.Import] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):  # if TYPE_CHECKING: ...
            found += [n for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def imports(path: Path, modules: set[str]) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _top_level_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            head = (base + "." + node.module) if node.level and node.module else (base if node.level else node.module)
            # ``from pkg import mod`` needs pkg.mod; ``from mod import name`` needs mod.
            submodules = [f"{head}.{a.name}" for a in node.names if f"{head}.{a.name}" in modules]
            targets = submodules if len(submodules) == len(node.names) else [head, *submodules]
        out |= {t for t in targets if t in modules and t != name}
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(path, set(files)) for name, path in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def long_modules() -> list[tuple[str, int]]:
    sizes = [(str(p.relative_to(PACKAGE.parent)), len(p.read_text().splitlines())) for p in PACKAGE.rglob("*.py")]
    return sorted((s for s in sizes if s[1] > MAX_LINES), key=lambda s: -s[1])


def main() -> int:
    found = cycles(graph())
    for component in found:
        print("cycle:", " <-> ".join(component))
    for path, lines in long_modules():
        print(f"over {MAX_LINES} lines: {path} ({lines})")
    print(f"{len(found)} import cycles, {len(long_modules())} modules over {MAX_LINES} lines")
    return 1 if found or long_modules() else 0


if __name__ == "__main__":
    sys.exit(main())
