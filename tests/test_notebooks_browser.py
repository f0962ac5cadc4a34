"""The shipped notebooks in a real browser: JupyterLab (loopback, token auth) + Debian's chromium.

Each notebook gets its test parameters injected by papermill (``prepare_only``: nothing is
executed), is opened in JupyterLab and run with Run → Run All Cells like a user would. The
test then reads the page: the live-view canvas got frames, the plots are images that
decoded, and the summary JSON the last cell printed has the right values. A screenshot of
each page is saved in test-artifacts/.
"""
from __future__ import annotations

import json
from pathlib import Path

import papermill
import pytest
from conftest import wait_until
from lab_browser import ARTIFACTS, Lab, canvas_image
from PIL import ImageStat

from petri_nb.headless import find_notebook

pytestmark = pytest.mark.slow
#: The notebooks' views are checked on the comm path (frames the kernel sent); the view-server
#: path has its own browser test (test_browser_vnc.py).
VIEW_SERVER = False
CELLS: list[str] = []  # the lab starts with an empty live.ipynb; each test writes its notebook

#: Last cell's output text that holds the JSON summary (the cell tagged "summary").
SUMMARY_JS = """() => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const last = cells[cells.length - 1];
  return last ? last.querySelector('.jp-OutputArea-output')?.textContent ?? '' : '';
}"""
ERROR_JS = """() => [...document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
  .map(e => e.textContent).filter(t => t.includes('Traceback') || /\\w+Error\\b/.test(t)).join('\\n')"""
#: Every image output (PIL screenshots and matplotlib figures) and whether it decoded.
IMAGES_JS = """() => [...document.querySelectorAll('.jp-OutputArea-output img')]
  .map(i => ({w: i.naturalWidth, h: i.naturalHeight, ok: i.complete}))"""


def prepare(lab: Lab, name: str, **parameters: object) -> str:
    """Write the shipped notebook with ``parameters`` injected into the Lab root; its file name."""
    target = lab.root / f"{name}.ipynb"
    papermill.execute_notebook(str(find_notebook(name)), str(target), parameters=parameters, prepare_only=True,
                               progress_bar=False)
    return target.name


def run_all(page, lab: Lab, notebook: str, timeout: float) -> dict:
    """Open ``notebook``, Run All Cells, wait for its summary; the parsed summary."""
    # A workspace of its own: only this notebook open, so the status bar's "Idle" is its kernel's.
    page.goto(lab.url(f"/lab/workspaces/{Path(notebook).stem}/tree/{notebook}"))
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    found: dict[str, str] = {}

    def finished() -> bool:
        found["summary"] = page.evaluate(SUMMARY_JS)
        found["error"] = page.evaluate(ERROR_JS)
        return found["summary"].lstrip().startswith("{") or bool(found["error"])

    try:
        wait_until(finished, timeout=timeout, what=f"{notebook} to print its summary")
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"notebook_{Path(notebook).stem}.png"))
    assert not found["error"], f"{notebook} failed in the browser:\n{found['error']}"
    return json.loads(found["summary"])


def images(page, at_least: int) -> list[dict]:
    imgs = page.evaluate(IMAGES_JS)
    assert len(imgs) >= at_least, imgs
    assert all(i["ok"] and i["w"] > 200 and i["h"] > 100 for i in imgs), imgs
    return imgs


def test_tmk_notebooks_run_in_jupyterlab_with_live_view_and_plots(lab: Lab, page) -> None:
    page.set_viewport_size({"width": 1400, "height": 1400})
    quickstart = prepare(lab, "quickstart")
    soak = prepare(lab, "reset_soak", vms=2, cycles=3, data_dir="runs")
    shared = prepare(lab, "shared_analysis", data_dir="runs")
    s = run_all(page, lab, quickstart, timeout=120)
    assert s["all_halts_as_expected"] and len(s["halts"]) == 5
    # The live view got frames and shows the guest's screen (not a blank canvas). Run All may have
    # scrolled far below the view's cell, and JupyterLab renders only the cells near the viewport.
    page.locator(".jp-Notebook .jp-Cell").nth(4).scroll_into_view_if_needed()
    screen = page.wait_for_selector(".petri-vmview-screen[data-seq]", state="attached", timeout=10_000)
    assert int(screen.get_attribute("data-seq")) > 0
    lo, hi = zip(*ImageStat.Stat(canvas_image(page)).extrema, strict=True)
    assert max(hi) - min(lo) > 50, "the live-view canvas is blank"
    screen.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "notebook_quickstart_live_view.png"))
    images(page, 3)  # screenshot + timeline + call durations

    s = run_all(page, lab, soak, timeout=120)
    assert s["halts"] == 6 and s["all_as_expected"] and s["resets_timed"] == 6
    assert (lab.root / "runs").is_dir() and len(s["run_dirs"]) == 2
    images(page, 2)

    s = run_all(page, lab, shared, timeout=90)
    assert s["runs"] == 2 and sorted(s["halts_per_run"].values()) == [3, 3]
    images(page, 2)


def test_linux_agent_notebook_runs_in_jupyterlab(lab: Lab, page) -> None:
    s = run_all(page, lab, prepare(lab, "linux_agent"), timeout=300)
    assert s["uname"].startswith("Linux ") and s["halt"] == "POWER_OFF"
    assert s["note_after_restore"] == "written before save" and s["disk_gone_after_unplug"]
    # JupyterLab renders only the cells near the viewport: bring the view's cell back first.
    page.locator(".jp-Notebook .jp-Cell").nth(3).scroll_into_view_if_needed()
    page.wait_for_selector(".petri-vmview-screen[data-seq]", state="attached", timeout=10_000)
    images(page, 1)
