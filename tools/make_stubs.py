"""Write the ``.pyi`` stubs of the modules whose classes are generated at import time.

    .venv/bin/python tools/make_stubs.py [OUTDIR]   # default: next to the modules in petri_nb/

``Vm``, ``Console`` and ``Agent`` get their methods from ``blocking_twins`` when the module is
imported, so tools that read source (type checkers, Jedi's completion in JupyterLab) see none
of them. A stub beside the module shows the real signatures. It is written from the imported
module (the twins as generated) and the sources' own imports; tests/test_layout.py checks the
checked-in stubs match.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Modules with generated classes (blocking twins).
MODULES = ("petri_nb.vm.facade", "petri_nb.vm.console", "petri_nb.vm.agent", "petri_nb.vm.keyboard")
_LITERALS = (int, float, str, bool, bytes, type(None))
#: Dunder methods a stub keeps (the rest are object's).
_DUNDERS = ("__init__", "__new__", "__enter__", "__exit__", "__aenter__", "__aexit__")
TRIPLE = '"' * 3


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].replace(TRIPLE, "'" * 3) if lines else ""


def _annotation(a: Any) -> str:
    return a if isinstance(a, str) else getattr(a, "__name__", repr(a))


def _default(value: Any) -> str:
    literal = isinstance(value, _LITERALS) or (type(value) in (tuple, frozenset) and not value)
    return repr(value) if literal else "..."


def _signature(fn: Any) -> str:
    sig = inspect.signature(fn)
    params: list[str] = []
    star_done = False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star_done:
            params.append("*")
        star_done = star_done or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += (" = " if p.annotation is not p.empty else "=") + _default(p.default)
        params.append(text)
    ret = "" if sig.return_annotation is sig.empty else f" -> {_annotation(sig.return_annotation)}"
    return f"({', '.join(params)}){ret}"


def _function(name: str, fn: Any, indent: str = "") -> list[str]:
    prefix = "async def" if inspect.iscoroutinefunction(fn) else "def"
    doc = _first_line(fn.__doc__)
    return [f"{indent}{prefix} {name}{_signature(fn)}:", f"{indent}    {TRIPLE}{doc}{TRIPLE}" if doc else
            f"{indent}    ..."]


def _property(name: str, member: property) -> list[str]:
    ret = inspect.signature(member.fget).return_annotation if member.fget else inspect.Signature.empty
    shown = "Any" if ret is inspect.Signature.empty else _annotation(ret)
    return ["    @property", f"    def {name}(self) -> {shown}: ..."]


def _class(cls: type) -> list[str]:
    bases = ", ".join(b.__name__ for b in cls.__bases__ if b is not object)
    doc = _first_line(cls.__doc__)
    out = [f"class {cls.__name__}({bases}):" if bases else f"class {cls.__name__}:",
           f"    {TRIPLE}{doc}{TRIPLE}" if doc else "    ..."]
    out += [f"    {name}: {_annotation(ann)}" for name, ann in cls.__dict__.get("__annotations__", {}).items()]
    for name, member in cls.__dict__.items():
        if name.startswith("_") and name not in _DUNDERS:
            continue
        if isinstance(member, property):
            out += _property(name, member)
        elif isinstance(member, (staticmethod, classmethod)):
            out += [f"    @{type(member).__name__}", *_function(name, member.__func__, "    ")]
        elif inspect.isfunction(member):
            out += _function(name, member, "    ")
    return out


def _imports(path: Path) -> list[str]:
    """The source's module-level imports (TYPE_CHECKING ones too), made absolute."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    nested = [m for n in tree.body if isinstance(n, ast.If) for m in n.body]
    nodes += [m for m in nested if isinstance(m, (ast.Import, ast.ImportFrom))]
    lines = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            node = ast.ImportFrom(module=f"{base}.{node.module}" if node.module else base, names=node.names, level=0)
        lines.append(ast.unparse(node))
    return lines


def _unbound(lines: list[str], bound: set[str]) -> list[str]:
    """``lines`` of imports without the names an earlier import already bound (two sources may share one)."""
    out = []
    for line in lines:
        node = ast.parse(line).body[0]
        assert isinstance(node, (ast.Import, ast.ImportFrom))
        node.names = [a for a in node.names if (a.asname or a.name.split(".")[0]) not in bound]
        bound |= {a.asname or a.name.split(".")[0] for a in node.names}
        if node.names:
            out.append(ast.unparse(node))
    return out


def _assignments(path: Path, module: Any, aliases_only: bool = False) -> list[str]:
    """Module-level names: constants by their type, type aliases as written."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, getattr(module, node.targets[0].id, None)
            if isinstance(value, (*_LITERALS, tuple, dict, frozenset)):
                if not aliases_only:
                    out.append(f"{name}: {type(value).__name__}")
            elif not name.startswith("_"):
                out.append(f"{name} = {ast.unparse(node.value)}")
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and not aliases_only:
            out.append(f"{node.target.id}: {ast.unparse(node.annotation)}")
    return out


def _origins(module: Any) -> list[Any]:
    """The module, then each module a twin's original method comes from (its annotations' names live there)."""
    found = [module]
    for value in vars(module).values():
        if inspect.isclass(value) and value.__module__ == module.__name__:
            for member in value.__dict__.values():
                origin = inspect.getmodule(inspect.unwrap(member)) if inspect.isfunction(member) else None
                if origin is not None and origin not in found and origin.__name__.startswith("petri_nb"):
                    found.append(origin)
    return found


def stub(module_name: str) -> str:
    module = importlib.import_module(module_name)
    head: list[str] = []
    names: list[str] = []
    bound: set[str] = set()
    for origin in _origins(module):
        path = Path(str(origin.__file__))
        head += _unbound(_imports(path), bound)
        if origin is not module:  # the classes its annotations name (Checkpoint, ScreenText...)
            classes = [n for n, v in vars(origin).items()
                       if inspect.isclass(v) and v.__module__ == origin.__name__ and not n.startswith("_")]
            head += _unbound([f"from {origin.__name__} import {', '.join(classes)}"] if classes else [], bound)
        names += [a for a in _assignments(path, origin, aliases_only=origin is not module) if a not in names]
    if not any(line.startswith("from typing import") and "Any" in line for line in head):
        head.insert(0, "from typing import Any")
    out = [f"# Generated by tools/make_stubs.py from {module_name}: do not edit (the blocking twins' signatures).",
           "from __future__ import annotations", "", *head, "", *names]
    for name, value in vars(module).items():
        if name.startswith("_") or getattr(value, "__module__", None) != module_name:
            continue
        if inspect.isclass(value):
            out += ["", "", *_class(value)]
        elif inspect.isfunction(value):
            out += ["", "", *_function(name, value)]
    return "\n".join(out).rstrip() + "\n"


#: Where the twins' names are declared in source (see ``twin_names``).
TWIN_NAMES = "petri_nb/vm/twin_names.py"
LOOP = "petri_nb/runtime/loop.py"
#: The inner functions of runtime/loop.py's ``_twin`` and ``_forwarder``: what a generated member runs.
_GENERATED_CODE = ("twin", "method", "get")


def _generated(cls: type) -> list[str]:
    """The members ``blocking_twins`` put on ``cls`` (their code lives in runtime/loop.py)."""
    names = []
    for name, member in vars(cls).items():
        fn = member.fget if isinstance(member, property) else member
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_filename.endswith(LOOP) and code.co_name in _GENERATED_CODE:
            names.append(name)
    return sorted(names)


def twin_names() -> str:
    """A module declaring each generated member's name on a base class of its sync class. Jedi on a
    live object (IPython's completer in a kernel) reads the class's source, and shows a member's
    real signature (its ``__signature__``) only when the source names it."""
    out = [f"{TRIPLE}Generated by tools/make_stubs.py: the names of the members ``blocking_twins`` adds at import.",
           "",
           "Each sync class (Vm, Console, Agent, Keyboard) inherits its list, so that Jedi on a live object",
           "(IPython's completer in a kernel) finds the names in source and shows their real signatures;",
           "the signatures themselves are in the ``.pyi`` stubs. Annotations only: nothing here exists at",
           f"run time, so no name here can shadow a twin.{TRIPLE}", "", "from __future__ import annotations", "",
           "from collections.abc import Callable", "from typing import Any", "", "Twin = Callable[..., Any]"]
    for name in MODULES:
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if inspect.isclass(cls) and cls.__module__ == name and (members := _generated(cls)):
                doc = f"    {TRIPLE}{cls.__name__}'s generated members.{TRIPLE}"
                out += ["", "", f"class {cls.__name__}Twins:", doc, "", *(f"    {m}: Twin" for m in members)]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    outdir = Path(argv[0]) if argv else None
    targets = [(ROOT / (name.replace(".", "/") + ".pyi"), stub(name)) for name in MODULES]
    targets.append((ROOT / TWIN_NAMES, twin_names()))
    for target, text in targets:
        if outdir is not None:
            target = outdir / target.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
