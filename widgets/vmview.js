// petri_nb live view: draws PNG frames sent as binary buffers, acks each one,
// forwards keyboard/pointer input from the focused canvas, shows a status bar.
// Guest-influenced text is only ever assigned with textContent.

function el(tag, cls, parent) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (parent) parent.appendChild(node);
  return node;
}

function fmtUptime(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(sec).padStart(2, "0");
}

function render({ model, el: root }) {
  const box = el("div", "petri-vmview", root);
  box.setAttribute("data-lm-suppress-shortcuts", "true");
  const canvas = el("canvas", "petri-vmview-screen", box);
  canvas.tabIndex = 0;
  canvas.width = 720;
  canvas.height = 400;
  canvas.setAttribute("aria-label", "VM screen: click to type into the guest");
  const ctx = canvas.getContext("2d");

  const bar = el("div", "petri-vmview-bar", box);
  const name = el("span", "petri-vmview-name", bar);
  const state = el("span", "petri-vmview-state", bar);
  const uptime = el("span", "petri-vmview-uptime", bar);
  const halt = el("span", "petri-vmview-halt", bar);
  const buttons = el("span", "petri-vmview-buttons", bar);
  const button = (label, title, onclick) => {
    const b = el("button", "petri-vmview-button", buttons);
    b.textContent = label;
    b.title = title;
    b.dataset.action = label;
    b.addEventListener("click", onclick);
    return b;
  };
  const act = (action) => () => model.send({ type: "action", action });
  button("reset", "Host reset (also restarts a halted VM)", act("reset"));
  const pauseBtn = button("pause", "Pause / resume the CPUs", () =>
    model.send({ type: "action", action: model.get("state") === "paused" ? "resume" : "pause" }));
  button("power off", "Press the ACPI power button (the guest decides)", act("poweroff"));
  button("screenshot", "Download the current screen as PNG", () => {
    canvas.toBlob((blob) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = (model.get("vm_name") || "vm") + ".png";
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    }, "image/png");
  });
  const consoleLine = el("div", "petri-vmview-console", box);
  const error = el("div", "petri-vmview-error", box);

  function status() {
    name.textContent = model.get("vm_name");
    const s = model.get("state");
    state.textContent = s;
    state.dataset.state = s;
    pauseBtn.textContent = s === "paused" ? "resume" : "pause";
    const reason = model.get("halt_reason");
    halt.textContent = reason ? "last halt: " + reason + " (" + model.get("halt_detail") + ")" : "";
    consoleLine.textContent = model.get("console_line");
    error.textContent = model.get("error");
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

  // Frames: draw only the newest. A frame that arrives while one is being decoded replaces
  // any other waiting one (a slow browser skips stale frames instead of queueing them); every
  // frame is acked once drawn or skipped, so the kernel may send the next.
  let waiting = null;
  let drawing = false;
  function onMsg(msg, buffers) {
    if (!msg || msg.type !== "frame" || !buffers || !buffers.length) return;
    if (waiting) model.send({ type: "ack", seq: waiting.msg.seq });
    waiting = { msg, blob: new Blob([buffers[0]], { type: msg.mime }) };  // a view: Blob honours its offset
    if (!drawing) drawWaiting();
  }
  async function drawWaiting() {
    drawing = true;
    while (waiting) {
      const { msg, blob } = waiting;
      waiting = null;
      try {
        const bitmap = await createImageBitmap(blob);
        if (canvas.width !== msg.width || canvas.height !== msg.height) {
          canvas.width = msg.width;
          canvas.height = msg.height;
        }
        ctx.drawImage(bitmap, 0, 0);
        bitmap.close();
        canvas.dataset.seq = String(msg.seq);
      } catch (err) {
        console.warn("petri_nb live view: undecodable frame", err);
      } finally {
        model.send({ type: "ack", seq: msg.seq });
      }
    }
    drawing = false;
  }
  model.on("msg:custom", onMsg);
  model.send({ type: "ready" });

  // Keyboard: a window capture listener runs before JupyterLab's document-level
  // shortcut handling, so keys typed on the focused canvas go to the guest only.
  function onKey(e) {
    if (document.activeElement !== canvas) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    if (e.type === "keydown" && e.repeat && e.code.startsWith("Shift")) return;
    model.send({ type: "key", code: e.code, down: e.type === "keydown" });
  }
  window.addEventListener("keydown", onKey, true);
  window.addEventListener("keyup", onKey, true);

  function onPointer(e) {
    const r = canvas.getBoundingClientRect();
    if (!r.width || !r.height) return;
    model.send({ type: "pointer", x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height,
                 buttons: e.buttons });
  }
  let lastMove = 0;
  canvas.addEventListener("mousedown", (e) => { canvas.focus(); onPointer(e); });
  canvas.addEventListener("mouseup", onPointer);
  canvas.addEventListener("mousemove", (e) => {
    const now = performance.now();
    if (document.activeElement === canvas && now - lastMove > 30) { lastMove = now; onPointer(e); }
  });
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());

  return () => {
    clearInterval(timer);
    window.removeEventListener("keydown", onKey, true);
    window.removeEventListener("keyup", onKey, true);
    model.off("msg:custom", onMsg);
    for (const t of traits) model.off("change:" + t, status);
  };
}

export default { render };
