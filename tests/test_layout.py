"""The package's shape (tools/import_graph.py): every import goes down its layer table, lazy ones included; no
import cycles; no module over 400 lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "import_graph.py"


def test_no_import_cycles_and_no_module_over_400_lines() -> None:
    proc = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("0 layer breaks, 0 import cycles, 0 modules over 400 lines")


STUBS = Path(__file__).resolve().parent.parent / "tools" / "make_stubs.py"


def test_the_checked_in_stubs_match_the_generated_twins(tmp_path: Path) -> None:
    """``Vm``, ``Console`` and ``Agent`` are generated at import: their stubs must say what they are now."""
    proc = subprocess.run([sys.executable, str(STUBS), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    fresh_files = [*tmp_path.rglob("*.pyi"), *tmp_path.rglob("twin_names.py")]
    assert len(fresh_files) == 5
    for fresh in fresh_files:
        shipped = STUBS.parent.parent / fresh.relative_to(tmp_path)
        assert shipped.read_text() == fresh.read_text(), f"{shipped} is stale: run tools/make_stubs.py"
    assert (STUBS.parent.parent / "petri_nb" / "py.typed").exists()


def test_an_editor_completes_the_blocking_twins_with_their_parameters(tmp_path: Path) -> None:
    """What an editor or a language server reads (Jedi on a script): ``vm.wait_for_halt(`` shows its real
    parameters through the stub."""
    import jedi

    script = tmp_path / "user.py"
    code = "import petri_nb\nvm = petri_nb.launch('tmk')\nvm.wait_for_halt("
    script.write_text(code)
    root = STUBS.parent.parent
    found = jedi.Script(code, path=script, project=jedi.Project(tmp_path, sys_path=[str(root)])).get_signatures(3, 17)
    assert [s.to_string() for s in found] == ["wait_for_halt(allow_reset: bool=False, timeout: float | None=None) "
                                              "-> Halt"]


def test_a_kernel_completes_a_live_vms_twins_with_their_parameters(tmp_path: Path) -> None:
    """What JupyterLab asks a real kernel (IPython's completer, Jedi on the live object): after
    ``vm.wait_for_halt(`` it offers the twin's parameters and shows its signature."""
    from nbrun import run_notebook, text_of

    code = ("import petri_nb\nfrom IPython.core.completer import provisionalcompleter\n"
            "vm = petri_nb.launch('tmk')\nwith provisionalcompleter():\n"
            "    found = list(get_ipython().Completer.completions('vm.wait_for_halt(', 17))\n"
            "    named = list(get_ipython().Completer.completions('vm.wait_for_h', 13))\n"
            "print(sorted(c.text for c in found if c.text.endswith('=')))\n"
            "print([c.signature for c in named if c.text == 'wait_for_halt'])\nvm.teardown()")
    out = text_of(run_notebook([code], tmp_path).cells[0]).splitlines()
    assert out[-2] == "['allow_reset=', 'timeout=']"
    assert out[-1] == '["(allow_reset: \'bool\'=False, timeout: \'float | None\'=None)"]'


def test_the_old_flat_module_names_the_readme_documents_still_import() -> None:
    import importlib

    import petri_nb
    from petri_nb.records import persist

    for old, new in petri_nb._MOVED.items():
        assert importlib.import_module(f"petri_nb.{old}") is importlib.import_module(new)
    assert petri_nb.persist is persist
    from petri_nb.report import run  # noqa: F401  (the README's petri_nb.report.run)


READING_LIST = Path(__file__).resolve().parent.parent / "tools" / "reading_list.py"


def test_a_newcomer_follows_percent_petri_reset_through_at_most_eight_modules() -> None:
    """The reset's spine (every module on the stack whenever it waits, tools/reading_list.py), from
    a real %petri reset of tmk: the magic's handler down to QMP, through one module per step."""
    proc = subprocess.run([sys.executable, str(READING_LIST), "--json"], capture_output=True, text=True,
                          timeout=120, cwd=READING_LIST.parent.parent)
    assert proc.returncode == 0, proc.stderr
    rings = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(rings["spine"]) == {
        "petri_nb.notebook.magics", "petri_nb.notebook.magics.handlers",  # the line, its handler
        "petri_nb.runtime.loop",  # the blocking call onto the runtime loop
        "petri_nb.vm.core", "petri_nb.vm.readiness", "petri_nb.vm.console",  # the reset, then ready again
        "petri_nb.backends.qemu.runtime", "petri_nb.backends.qemu.host_reset",  # QMP's system_reset
    }
    assert set(rings["spine"]) <= set(rings["call_path"]) <= set(rings["running"])
    assert len(rings["call_path"]) <= 20  # the leaves it calls on the way (18 when this was written)
