// petri_nb live view (entry of the bundle built by tools/build-widget.sh).
// The screen is noVNC beside the kernel when petri_nb's view server answers, else PNG frames
// over the kernel's comm. The status bar comes from the kernel's traits either way.
// Guest-influenced text is only ever assigned with textContent.

import { commScreen } from "./src/comm_screen.js";
import { el, fmtUptime } from "./src/dom.js";
import { serialPane } from "./src/serial_pane.js";
import { pageConfig, vncScreen, viewServerMissing, viewUrl } from "./src/vnc_screen.js";

//: How long a guest may take to act on the ACPI power button before the view offers "force off".
const IGNORED_POWER_BUTTON_MS = 5000;
const OVERLAY = { paused: "paused", halted: "halted", "torn down": "torn down", gone: "VM gone" };

// The VNC path where the view server answers; else the kernel's comm, with ``fallback`` saying why.
async function pickScreen(model, holder, serialHolder, onDisconnect) {
  const cfg = pageConfig();
  const viewId = model.get("view_id");
  let why = !cfg ? "this page is not served by a Jupyter server, so petri_nb's view server cannot be reached"
    : !viewId ? "this VM's backend has no view sockets"
    : await viewServerMissing(cfg);
  if (!why) {
    try {
      const screen = await vncScreen(cfg, viewId, holder, { onDisconnect });
      screen.serial = serialPane(viewUrl(cfg, viewId, "serial"), serialHolder);
      return screen;
    } catch (err) {
      why = "the view server could not reach the VM's display (" + String(err.message || err) + ")";
    }
  }
  const screen = await commScreen(model, holder, { onDisconnect });
  screen.fallback = why;
  return screen;
}

function render({ model, el: root }) {
  const box = el("div", "petri-vmview", root);
  box.setAttribute("data-lm-suppress-shortcuts", "true");
  const stage = el("div", "petri-vmview-stage", box);
  const overlay = el("div", "petri-vmview-overlay", stage);

  const bar = el("div", "petri-vmview-bar", box);
  const name = el("span", "petri-vmview-name", bar);
  const state = el("span", "petri-vmview-state", bar);
  const uptime = el("span", "petri-vmview-uptime", bar);
  const path = el("span", "petri-vmview-path", bar);
  const halt = el("span", "petri-vmview-halt", bar);
  const buttons = el("span", "petri-vmview-buttons", bar);
  const consoleLine = el("div", "petri-vmview-console", box);
  const hint = el("div", "petri-vmview-hint", box);
  const serialHolder = el("div", "petri-vmview-serial-holder", box);

  // Ctrl+] hands the keyboard back to the page (as telnet's escape key), wherever in the view.
  function onRelease(e) {
    if (!(e.ctrlKey && e.key === "]") || !box.contains(document.activeElement)) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    if (screen && screen.blur) screen.blur();
    document.activeElement.blur();
  }
  window.addEventListener("keydown", onRelease, true);
  const error = el("div", "petri-vmview-error", box);

  let screen = null;
  let disconnected = false;
  const act = (action) => {
    if (!screen || disconnected) return;
    error.textContent = "";
    screen.act(action).catch((err) => { error.textContent = String(err.message || err); });
  };
  const button = (label, title, onclick) => {
    const b = el("button", "petri-vmview-button", buttons);
    b.textContent = label;
    b.title = title;
    b.dataset.action = label;
    b.addEventListener("click", onclick);
    return b;
  };
  button("reset", "Host reset (also restarts a halted VM)", () => act("reset"));
  const pauseBtn = button("pause", "Pause / resume the CPUs", () =>
    act(model.get("state") === "paused" ? "resume" : "pause"));
  button("power off", "Press the ACPI power button (the guest decides)", () => {
    act("powerdown");
    // A guest without an ACPI handler (tmk) ignores the button: point at the forced way.
    setTimeout(() => {
      if (model.get("state") === "running" && !forceBtn.hidden) {
        error.textContent = "The guest did not power off on the ACPI power button; 'force off' quits QEMU.";
      }
    }, IGNORED_POWER_BUTTON_MS);
  });
  const forceBtn = button("force off", "Power off now, whatever the guest does (QEMU quits)", () => {
    if (window.confirm("Force the VM off? QEMU quits; the VM cannot be restarted.")) act("poweroff");
  });
  forceBtn.hidden = true;
  const pasteBtn = button("paste", "Type the clipboard's text into the guest (US keyboard layout)", async () => {
    let text = null;
    try {
      text = await navigator.clipboard.readText();
    } catch (err) {
      text = window.prompt("Text to type into the guest:");
    }
    if (!text || !screen || !screen.paste) return;
    const skipped = screen.paste(text);
    error.textContent = skipped ? skipped + " character(s) have no key on a US keyboard: not typed" : "";
  });
  pasteBtn.hidden = true;
  const zoomBtn = button("fit", "Scale the screen to the view's width / back to 1:1 pixels", () => {
    const next = zoomBtn.textContent === "fit" ? "fit" : "1:1";
    screen.setZoom(next);
    zoomBtn.textContent = next === "fit" ? "1:1" : "fit";
  });
  const fullBtn = button("fullscreen", "Show the screen fullscreen (Esc leaves)", () => {
    stage.requestFullscreen().then(() => screen.focus()).catch((err) => { error.textContent = String(err); });
  });
  zoomBtn.hidden = fullBtn.hidden = true;
  button("screenshot", "Download the current screen as PNG", () => {
    const canvas = screen && screen.canvas();
    if (!canvas) return;
    canvas.toBlob((blob) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = (model.get("vm_name") || "vm") + ".png";
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    }, "image/png");
  });

  function status() {
    name.textContent = model.get("vm_name");
    const s = disconnected ? "disconnected" : model.get("state");
    state.textContent = s;
    state.dataset.state = s;
    pauseBtn.textContent = s === "paused" ? "resume" : "pause";
    const reason = model.get("halt_reason");
    const since = s === "running" || s === "paused" ? " (before reset)" : "";  // only a reset runs a halted VM
    halt.textContent = reason ? "last halt" + since + ": " + reason + " (" + model.get("halt_detail") + ")" : "";
    consoleLine.textContent = model.get("console_line");
    if (model.get("error")) error.textContent = model.get("error");
    const cover = disconnected ? "disconnected" : OVERLAY[s];
    overlay.textContent = cover ? (s === "halted" && reason ? "halted: " + reason : cover) : "";
    overlay.hidden = !cover;
    for (const b of buttons.querySelectorAll("button")) {
      if (!["screenshot", "fit", "fullscreen"].includes(b.dataset.action)) b.disabled = disconnected || s === "torn down" || s === "gone";
    }
  }
  function tick() {
    const end = model.get("stopped_at") || Date.now() / 1000;
    uptime.textContent = "up " + fmtUptime(end - model.get("launched_at"));
  }
  const traits = ["vm_name", "state", "halt_reason", "halt_detail", "console_line", "error"];
  for (const t of traits) model.on("change:" + t, status);
  status();
  tick();
  const timer = setInterval(tick, 1000);

  let gone = false;
  pickScreen(model, stage, serialHolder, () => {
    disconnected = true;
    clearInterval(timer);
    status();
  }).then((s) => {
    if (gone) { s.destroy(); s.serial?.destroy(); return; }
    screen = s;
    if (s.serial) consoleLine.hidden = true;  // the pane shows the whole console
    box.dataset.path = s.path;
    path.textContent = s.path === "vnc" ? "live: view server" : "live: via kernel";
    path.title = s.path === "vnc" ? "Screen and buttons travel beside the kernel (petri_nb.server)"
                                  : "No petri_nb view server here: frames and input wait for an idle kernel";
    forceBtn.hidden = s.path !== "vnc";
    pasteBtn.hidden = zoomBtn.hidden = fullBtn.hidden = s.path !== "vnc";
    if (s.path === "vnc") hint.textContent = "Click the screen to type into the VM; Ctrl+] or a click outside releases the keyboard.";
    else hint.textContent = "Live view via the kernel (slower; keys wait while a cell runs): " + s.fallback;
    hint.dataset.fallback = s.path === "vnc" ? "" : s.fallback;
    try {
      model.send({ type: "path", path: s.path });
    } catch (err) { /* the kernel is gone already: nothing to tell it */ }
  });

  return () => {
    gone = true;
    clearInterval(timer);
    window.removeEventListener("keydown", onRelease, true);
    if (screen) { screen.destroy(); screen.serial?.destroy(); }
    for (const t of traits) model.off("change:" + t, status);
  };
}

export default { render };
