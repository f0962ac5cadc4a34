"""The front end shipped in petri_nb/notebook/widgets is exactly what tools/build-widget.sh makes from widgets/."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "petri_nb" / "notebook" / "widgets"


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                    reason="node and npm are needed to rebuild the widget bundle (Debian: apt-get install npm)")
def test_the_shipped_widget_bundle_matches_a_fresh_build_from_source(tmp_path: Path):
    subprocess.run(["bash", str(ROOT / "tools" / "build-widget.sh"), str(tmp_path)], check=True, timeout=300)
    for name in ("vmview.js", "vmview.css"):
        fresh, shipped = (tmp_path / name).read_bytes(), (SHIPPED / name).read_bytes()
        assert fresh == shipped, f"petri_nb/notebook/widgets/{name} is stale: run tools/build-widget.sh and commit it"


def test_the_bundle_embeds_novnc_and_the_package_ships_it():
    from petri_nb.notebook.widget import VmView

    esm = Path(str(VmView._esm)).read_text() if isinstance(VmView._esm, Path) else str(VmView._esm)
    assert "Bundles noVNC 1.7" in esm
    assert not (ROOT / "petri_nb" / "notebook" / "widgets").is_symlink()


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to run the front end's paste mapping")
def test_paste_types_each_character_as_its_us_key_with_shift_where_needed():
    script = (
        "import { keyFor } from './widgets/src/paste.js';"
        "console.log(JSON.stringify(['a', 'A', '!', '1', '_', '/', '\\n', ' ', '\\u00e9'].map(keyFor)));"
    )
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert json.loads(out) == [
        [97, "KeyA", False], [65, "KeyA", True], [33, "Digit1", True], [49, "Digit1", False],
        [95, "Minus", True], [47, "Slash", False], [0xFF0D, "Enter", False], [32, "Space", False], None,
    ]
