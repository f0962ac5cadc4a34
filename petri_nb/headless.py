"""Run a shipped notebook headless with parameters and write a shareable report.

A report folder holds the executed notebook (``NAME.ipynb``), the same as one
self-contained HTML page (``NAME.html``, nbconvert) and every figure the notebook
drew as a PNG (``figures/``), so a run can be read without Jupyter. papermill does
the parameter injection (a cell tagged ``parameters``) and the execution, so a
stored notebook stays a plain notebook anyone can open and run by hand.

A notebook reports what it computed in a cell tagged ``summary`` that prints one
JSON object; :attr:`Report.summary` parses it (tests and CI assert on it).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotebookFailed, PetriError

if TYPE_CHECKING:
    import nbformat

#: The notebooks shipped with the source tree (``notebooks/`` next to the package).
NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
SUMMARY_TAG = "summary"
KERNEL = "python3"


@dataclass
class Report:
    """Where a headless run put its outputs, and the JSON summary the notebook printed."""

    notebook: Path
    html: Path
    figures: list[Path] = field(default_factory=list)
    summary: dict[str, Any] | None = None


def find_notebook(name: str | os.PathLike[str]) -> Path:
    """A path as given, else a shipped notebook by name (``quickstart`` or ``quickstart.ipynb``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    shipped = NOTEBOOKS_DIR / (path.name if path.suffix == ".ipynb" else f"{path.name}.ipynb")
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))) or "none"
    raise PetriError(f"no notebook {os.fspath(name)!r} (not a file; shipped notebooks: {known})")


def summary_of(nb: nbformat.NotebookNode) -> dict[str, Any] | None:
    """The JSON object printed by the cell tagged ``summary`` (None if it did not run)."""
    for cell in nb.cells:
        if SUMMARY_TAG in cell.get("metadata", {}).get("tags", []):
            text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                           if o.get("output_type") == "stream" and o.get("name") == "stdout")
            if not text.strip():
                return None
            try:
                return json.loads(text)
            except ValueError as e:
                raise PetriError(f"the summary cell did not print one JSON object: {e}") from None
    return None


def extract_figures(nb: nbformat.NotebookNode, folder: Path) -> list[Path]:
    """Write every PNG output as ``figures/cell<N>-<M>.png``; returns the paths in notebook order."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("cell*.png"):
        old.unlink()
    paths = []
    for n, cell in enumerate(nb.cells):
        m = 0
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png") if out.get("output_type") in (
                "display_data", "execute_result") else None
            if png:
                m += 1
                path = folder / f"cell{n:02d}-{m}.png"
                path.write_bytes(base64.b64decode(png))
                paths.append(path)
    return paths


def write_html(nb: nbformat.NotebookNode, path: Path) -> Path:
    """One self-contained page (images inline); output text is escaped by nbconvert's template."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    path.write_text(body, encoding="utf-8")
    return path


def run(notebook: str | os.PathLike[str], out: str | os.PathLike[str], parameters: dict[str, Any] | None = None,
        *, cwd: str | os.PathLike[str] | None = None, timeout: float = 600, progress: bool = False) -> Report:
    """Execute ``notebook`` with ``parameters`` injected; write the executed notebook, HTML and PNGs to ``out``.

    ``cwd`` (default: ``out``) is the kernel's working directory, so relative paths a
    notebook writes land in the report folder. Raises NotebookFailed naming the cell
    that raised, after writing what ran.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = find_notebook(notebook)
    if timeout <= 0:
        raise PetriError(f"timeout must be > 0 seconds, not {timeout!r}")
    known = papermill.inspect_notebook(str(source))
    unknown = sorted(set(parameters or {}) - set(known))
    if unknown:
        raise PetriError(f"{source.name} has no parameter(s) {', '.join(unknown)}; "
                         f"its parameters: {', '.join(known) or 'none'}")
    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / source.name
    failure: PapermillExecutionError | None = None
    try:
        papermill.execute_notebook(
            str(source), str(executed), parameters=dict(parameters or {}), kernel_name=KERNEL,
            cwd=str(Path(cwd).expanduser().resolve() if cwd is not None else out_dir), progress_bar=progress,
            execution_timeout=timeout, request_save_on_cell_execute=False,
        )
    except PapermillExecutionError as e:
        failure = e
    nb = nbformat.read(executed, as_version=4)
    report = Report(executed, write_html(nb, out_dir / f"{source.stem}.html"),
                    extract_figures(nb, out_dir / "figures"))
    if failure is not None:
        raise NotebookFailed(f"{source.name} failed in cell {failure.exec_count}: {failure.ename}: "
                             f"{failure.evalue} (executed notebook: {executed})")
    report.summary = summary_of(nb)
    return report


def parse_parameters(pairs: list[tuple[str, str]] | list[list[str]]) -> dict[str, Any]:
    """``[(name, value), ...]`` from the command line; values are YAML scalars (``5``, ``2.5``, ``true``, text)."""
    import yaml

    out = {}
    for name, value in pairs:
        if not name.isidentifier():
            raise PetriError(f"parameter name {name!r} is not a Python identifier")
        try:
            out[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[name] = value
    return out


def main(notebook: str, out: Path | None, pairs: list[list[str]], timeout: float) -> int:
    """``petri-nb report``: run, then say where everything is."""
    source = find_notebook(notebook)
    out = out if out is not None else Path("out") / source.stem
    print(f"running {source} headless (a few seconds to minutes, depending on the notebook) ...", flush=True)
    try:
        report = run(source, out, parse_parameters(pairs), timeout=timeout)
    except NotebookFailed as e:
        print(f"petri-nb: {e}", file=sys.stderr)
        print(f"report (up to the failure): {(out / (source.stem + '.html')).resolve()}", file=sys.stderr)
        return 1
    print(f"executed notebook: {report.notebook}")
    print(f"HTML report:       {report.html}")
    print(f"figures ({len(report.figures)}):       {report.html.parent / 'figures'}")
    for fig in report.figures:
        print(f"  {fig.name}")
    if report.summary is not None:
        print("summary:", json.dumps(report.summary))
    return 0
