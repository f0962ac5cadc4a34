"""petri_nb.analysis.runs_report: one self-contained HTML file about saved runs, read in Debian's chromium.

The run is real: tmk under QEMU with the screen watchdog on, made to print hostile text on
its console and to triple-fault (its diagnosis rides on the halt row). The page is opened
from disk like a colleague would open an attachment, and read like a user would.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import wait_until
from lab_browser import CHROMIUM, CHROMIUM_ARGS
from synthetic_runs import crashing_run

import petri_nb
from petri_nb import HaltReason, PetriError
from petri_nb.cli import main as cli_main
from petri_nb.model.diagnosis import Diagnosis
from petri_nb.model.oops import parse_oops
from petri_nb.records.timeline import Timeline

HOSTILE = "<img src=x onerror=alert(1)><script>window.pwned=1</script>"
#: A row far enough down that opening its link must scroll.
ECHOES = 40
ROWS_SHOWN_JS = "() => document.querySelectorAll('tr[data-s]:not([hidden])').length"


def screen_rows(vm: petri_nb.Vm) -> int:
    return int((vm.timeline()["source"] == "screen").sum())


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one saved tmk run: screens, hostile console text, many lines, a triple fault."""
    runs = tmp_path_factory.mktemp("runs")
    vm = petri_nb.launch("tmk", screen_watchdog=0.3)
    try:
        vm.save_timeline(runs)
        vm.console.write("draw 3\n")
        vm.console.expect("drawn 3")
        wait_until(lambda: screen_rows(vm) >= 1, timeout=20, what="the screen watchdog's first row")
        vm.console.write(f"echo {HOSTILE}\n")
        vm.console.expect("window.pwned=1</script>")
        for i in range(ECHOES):
            vm.console.write(f"echo line {i}\n")
            vm.console.expect(f"line {i}\r?\n")
        vm.console.write("draw 7\n")
        vm.console.expect("drawn 7")
        wait_until(lambda: screen_rows(vm) >= 2, timeout=20, what="a second screen row")
        vm.console.write("triplefault\n")
        halt = vm.wait_for_halt(timeout=30)
        assert halt.reason is HaltReason.TRIPLE_FAULT and halt.diagnosis is not None
        vm.reset()
        vm.console.expect("tmk: ready", timeout=30)
    finally:
        vm.teardown()
    return runs


@pytest.fixture(scope="module")
def report(runs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return petri_nb.runs_report([runs_dir], tmp_path_factory.mktemp("report") / "runs.html")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A fresh page on the report, with what the page did on the side: dialogs, requests, console errors."""

    def __init__(self, browser: object, report: Path) -> None:
        self.url = report.as_uri()
        self.page = browser.new_page(viewport={"width": 1200, "height": 800})  # type: ignore[attr-defined]
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, fragment: str = "") -> object:
        self.page.goto(self.url + fragment)
        self.page.wait_for_function("() => document.getElementById('shown').textContent !== ''", timeout=10_000)
        return self.page


@pytest.fixture
def page(browser: object, report: Path) -> Iterator[Page]:
    p = Page(browser, report)
    try:
        yield p
    finally:
        p.page.close()  # type: ignore[attr-defined]


def test_screen_thumbnails_are_visible_and_open_to_the_full_screen(page: Page):
    pg = page.open()
    thumb = pg.locator("tr[data-s=screen] img.thumb").first
    thumb.scroll_into_view_if_needed()
    assert thumb.is_visible()
    small = thumb.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert 0 < small[0] <= 160 and small[1] > 0
    full = pg.locator("tr[data-s=screen] img.full").first
    assert not full.is_visible()
    thumb.click()
    assert full.is_visible()
    assert full.evaluate("i => i.naturalWidth") > small[0]
    assert page.errors == [] and page.dialogs == []


def test_a_halts_diagnosis_opens_under_its_row(page: Page):
    pg = page.open()
    halt = pg.locator("tr.halt", has_text="TRIPLE_FAULT").first
    body = halt.locator(".diag-body")
    assert not body.is_visible()
    halt.locator("details.diag > summary").click()
    assert body.is_visible()
    text = body.inner_text()
    assert "vCPU 0" in text and ("RIP=0x" in text or "EIP=0x" in text) and "CR0=0x" in text
    assert "line 39" in text  # the console tail
    assert body.locator("img.thumb").evaluate("i => i.naturalWidth") > 0  # the screen at the halt


def test_unchecking_a_source_hides_its_rows(page: Page):
    pg = page.open()
    before = pg.evaluate(ROWS_SHOWN_JS)
    console = pg.locator("tr[data-s=console]")
    assert console.count() >= ECHOES and console.first.is_visible()
    pg.locator("#filters input[value=console]").uncheck()
    assert pg.evaluate(ROWS_SHOWN_JS) == before - console.count()
    assert pg.evaluate("() => [...document.querySelectorAll('tr[data-s=console]')].every(r => r.hidden)")
    assert pg.locator("#shown").inner_text().startswith(f"{before - console.count()} of {before}")
    pg.locator("#filters input[value=console]").check()
    pg.locator("#kind").select_option("halt")
    assert pg.evaluate(ROWS_SHOWN_JS) == pg.locator("tr[data-k=halt]").count() >= 1
    pg.locator("#kind").select_option("")
    pg.locator("#text").fill("LINE 3")  # case-insensitive: "line 3" and "line 30".."line 39", at least
    shown = pg.evaluate("() => [...document.querySelectorAll('tr[data-s]:not([hidden])')].map(r => r.textContent)")
    assert 11 <= len(shown) < before and all("line 3" in t for t in shown)


def test_a_link_to_a_row_scrolls_to_it_and_unhides_it(page: Page):
    pg = page.open()
    rows = pg.locator("tr[data-s]")
    far = rows.nth(rows.count() - 3).get_attribute("id")
    assert far
    pg = page.open(f"#{far}")
    target = pg.locator(f"#{far}")
    wait_until(lambda: target.evaluate("r => { const b = r.getBoundingClientRect();"
                                       " return b.top >= 0 && b.bottom <= innerHeight; }"),
               timeout=10, what="the linked row in the viewport")
    assert pg.evaluate("() => window.scrollY") > 0
    assert pg.evaluate("() => document.querySelector(':target').id") == far
    # A link into rows a filter hides still shows its row.
    pg.locator("#filters input[value=console]").uncheck()
    line = pg.locator("tr[data-s=console]", has_text="line 20")
    assert line.get_attribute("hidden") is not None
    line_id = line.get_attribute("id")
    pg.evaluate(f"() => {{ location.hash = '{line_id}'; }}")
    wait_until(line.is_visible, timeout=10, what="the linked console row to be shown")


def test_hostile_console_text_stays_inert(page: Page, report: Path):
    pg = page.open()
    row = pg.locator("tr[data-s=console]", has_text="window.pwned").first
    assert row.locator("td").last.inner_text() == HOSTILE  # shown literally
    assert pg.evaluate("() => typeof window.pwned") == "undefined"
    assert pg.evaluate("() => document.scripts.length") == 1
    assert pg.locator("img[src=x]").count() == 0
    assert page.dialogs == []
    assert all(u.startswith(("file:", "data:")) for u in page.requests), page.requests  # no network
    assert page.errors == []  # the Content-Security-Policy let our own script and images through
    assert HOSTILE not in report.read_text()


def test_the_cli_writes_the_report(runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "cli" / "report.html"
    assert cli_main(["runs-report", str(runs_dir / "*"), "--out", str(out), "--title", "tmk <b>run</b>"]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: ")
    text = out.read_text()
    assert "<title>tmk &lt;b&gt;run&lt;/b&gt;</title>" in text and "TRIPLE_FAULT" in text


@pytest.mark.parametrize("argv, message", [
    (["runs-report", "--out", "x.html"], "no RUNS given"),
    (["runs-report", "/nonexistent/run", "--out", "x.html"], "no saved run at /nonexistent/run"),
])
def test_the_cli_rejects_bad_runs_in_one_line(argv: list[str], message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x.html").exists()


def test_bad_input_is_a_petri_error_naming_it(tmp_path: Path):
    frame = crashing_run(np.random.default_rng(0), "one", lines=5, screens=1)
    with pytest.raises(PetriError, match="empty list of paths"):
        petri_nb.runs_report([], tmp_path / "r.html")
    with pytest.raises(PetriError, match="no saved run at"):
        petri_nb.runs_report(tmp_path / "missing", tmp_path / "r.html")
    with pytest.raises(PetriError, match="holds no runs"):
        petri_nb.runs_report(frame.iloc[:0], tmp_path / "r.html")
    with pytest.raises(PetriError, match="is a directory"):
        petri_nb.runs_report(frame, tmp_path)
    with pytest.raises(PetriError, match="max_console_lines"):
        petri_nb.runs_report(frame, tmp_path / "r.html", max_console_lines=-1)
    with pytest.raises(PetriError, match="out must be"):
        petri_nb.runs_report(frame, 42)  # type: ignore[arg-type]
    assert not (tmp_path / "r.html").exists()


def test_console_lines_over_the_budget_are_cut_far_from_the_halt(tmp_path: Path):
    frame = crashing_run(np.random.default_rng(1), "long", lines=300, screens=1)
    text = petri_nb.runs_report(frame, tmp_path / "r.html", max_console_lines=50).read_text()
    assert "258 console lines not shown" in text  # 308 lines in all
    assert "Kernel panic - not syncing" in text and "boot step 299:" in text  # next to the halt
    assert "boot step 150:" not in text
    full = petri_nb.runs_report(frame, tmp_path / "all.html", max_console_lines=None).read_text()
    assert "boot step 150:" in full and "not shown" not in full


def test_a_hundred_runs_make_a_compact_report(tmp_path: Path):
    rng = np.random.default_rng(7)
    runs = pd.concat([crashing_run(rng, f"linux-{i}", lines=300, screens=3) for i in range(100)], ignore_index=True)
    started = time.perf_counter()
    path = petri_nb.runs_report(runs, tmp_path / "hundred.html")
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    print(f"100 runs, {len(runs)} rows: {size / 1e6:.1f} MB in {seconds:.1f} s")
    assert size < 20e6
    text = path.read_text()
    assert text.count('<tr id="r-') == len(runs) and text.count('class="diag"') == 100


def test_markup_in_every_field_of_a_run_is_escaped(tmp_path: Path):
    """A saved run is a file anyone can hand over: its names, kinds, details and oops text are all text."""
    evil = "<script>window.pwned=1</script><img src=x onerror=alert(1)>"
    tl = Timeline(f"vm{evil}", run=f"run{evil}")
    tl.record("console", "line", evil, t=0.1)
    tl.record("runtime", f"kind{evil}", evil, {"duration_s": 0.1}, t=0.2)
    oops = parse_oops(f"BUG: {evil}\nRIP: 0010:{evil}\n")
    diagnosis = Diagnosis({0: {"RIP": 1}}, None, evil, oops, {f"screen{evil}": evil})
    tl.record("halt", "halt", evil, {"diagnosis": diagnosis.to_dict()}, reason=f"PANIC{evil}", t=0.3)
    tl.record("screen", "screenshot", evil, {"png": evil}, t=0.4)  # not an image: said so, not shown
    text = petri_nb.runs_report(tl.to_frame(), tmp_path / "r.html", title=evil).read_text()
    assert text.count("<script") == 1 and "<img src=x" not in text
    assert all(re.match(r"<img (class|alt)=", tag) for tag in re.findall(r"<img[^>]*>", text))
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in text


def test_thousands_of_runs_make_a_summary_with_sections_only_for_the_odd_ones(tmp_path: Path):
    from petri_nb.analysis.runs_report_summary import MAX_RUN_SECTIONS

    frames = []
    for i in range(MAX_RUN_SECTIONS + 50):
        tl = Timeline(f"soak-{i}")
        tl.record("console", "line", "tmk: ready", t=0.1)
        tl.record("halt", "halt", "x", reason="PANIC" if i % 50 == 7 else "RESET", t=0.2)
        frames.append(tl.to_frame())
    path = petri_nb.runs_report(pd.concat(frames, ignore_index=True), tmp_path / "many.html")
    text = path.read_text()
    assert text.count('<section class="run"') == 5  # the five panics, not 250 sections
    assert "250 runs</b>" in text and 'href="many.runs.csv"' in text
    table = pd.read_csv(tmp_path / "many.runs.csv")
    assert len(table) == 250 and table["unusual"].sum() == 5 and set(table["outcome"]) == {"PANIC", "RESET"}
