"""The package's shape: no import cycles, no module over 400 lines (tools/import_graph.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "import_graph.py"


def test_no_import_cycles_and_no_module_over_400_lines() -> None:
    proc = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("0 import cycles, 0 modules over 400 lines")
