"""petri_nb's shape, read from the source (no imports executed): layers, cycles, module sizes.

    .venv/bin/python tools/import_graph.py   # prints layer breaks, cycles and modules over 400 lines

Counts every import: module-level, ``if TYPE_CHECKING:`` and lazy ones inside functions
(a lazy import is still a dependency; it only defers the cost). ``LAYERS`` lists the
layers from the bottom up: a module imports only from its own layer or lower ones, and a
few rules keep the seams clean (``RULES``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "petri_nb"
MAX_LINES = 400

#: Layers from the bottom up, each a list of module prefixes. The package's own ``__init__``
#: (the public API) sits on top with the orchestration.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("petri_nb.errors",)),
    ("model", ("petri_nb.model",)),
    ("runtime", ("petri_nb.runtime",)),
    ("records", ("petri_nb.records",)),
    ("analysis", ("petri_nb.analysis",)),
    ("guests", ("petri_nb.guests",)),
    ("backends", ("petri_nb.backends",)),
    ("vm", ("petri_nb.vm",)),
    ("fleet", ("petri_nb.fleet",)),
    ("notebook", ("petri_nb.notebook",)),
    ("server", ("petri_nb.server",)),
    ("top", ("petri_nb.headless", "petri_nb.cli", "petri_nb")),
]
#: (importer prefix, imported prefix, why it must not): on top of the layer order.
RULES = [
    ("petri_nb.vm", "petri_nb.backends.qemu", "vm/ knows backends only through their protocol and registry"),
    ("petri_nb.server", "petri_nb.backends.qemu", "the view server reaches backends through backends.view_control"),
    ("petri_nb.backends", "petri_nb.notebook", "backends know nothing of notebooks"),
    ("petri_nb.guests", "petri_nb.vm", "guests never import the facade"),
]


def layer_of(module: str) -> int:
    best, found = -1, len(LAYERS) - 1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_breaks(edges: dict[str, set[str]]) -> list[str]:
    """Each import that goes up a layer or breaks a rule, as one line."""
    found = []
    for src in sorted(edges):
        for dst in sorted(edges[src]):
            if _within(src, dst):  # a module imports its own package's __init__ (relative imports)
                continue
            if layer_of(dst) > layer_of(src):
                found.append(f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})")
            for importer, imported, why in RULES:
                if _within(src, importer) and _within(dst, imported):
                    found.append(f"{src} imports {dst}: {why}")
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_imports(tree: ast.Module) -> list[ast.ImportFrom | ast.Import]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def imports(path: Path, modules: set[str]) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _all_imports(ast.parse(path.read_text())):
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
    edges = graph()
    found, breaks, long = cycles(edges), layer_breaks(edges), long_modules()
    for component in found:
        print("cycle:", " <-> ".join(component))
    for line in breaks:
        print("layer break:", line)
    for path, lines in long:
        print(f"over {MAX_LINES} lines: {path} ({lines})")
    print(f"{len(edges)} modules in {len(LAYERS)} layers: {len(breaks)} layer breaks, "
          f"{len(found)} import cycles, {len(long)} modules over {MAX_LINES} lines")
    return 1 if found or breaks or long else 0


if __name__ == "__main__":
    sys.exit(main())
