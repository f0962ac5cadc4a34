"""Run a notebook built from cell sources in a real Jupyter kernel (nbclient), for tests.

The kernel is ``python3`` as resolved by jupyter_client from this venv; its spec's
``python`` is replaced by ``sys.executable``, so the kernel runs this venv's Python
(tests assert that via ``sys.prefix``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat import NotebookNode

KERNEL = "python3"


def run_notebook(cells: list[str], workdir: Path, *, timeout: float = 60, tags: dict[int, list[str]] | None = None,
                 name: str = "executed.ipynb") -> NotebookNode:
    """Execute ``cells`` in a fresh kernel with cwd ``workdir``; the executed notebook is saved there."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    for index, cell_tags in (tags or {}).items():
        nb.cells[index].metadata["tags"] = cell_tags
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, workdir / name)
    return nb


def text_of(cell: NotebookNode) -> str:
    """Everything a cell printed or returned, as plain text (streams, text/plain results)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", ""))
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "".join(parts)


def html_of(cell: NotebookNode) -> str:
    return "".join(out.data.get("text/html", "") for out in cell.get("outputs", [])
                   if out.output_type in ("execute_result", "display_data"))
