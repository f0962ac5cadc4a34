// The fallback screen: PNG frames from the kernel over the widget's comm, acked one by one,
// and keyboard/pointer input back over the comm. Used where no view server answers
// (VS Code, Colab, nbclient, a Jupyter server without petri_nb.server); it stalls while a
// cell blocks the kernel, which is why the VNC path exists.

import { el } from "./dom.js";

export function commScreen(model, parent, { onDisconnect }) {
  // After a kernel restart the widget's comm is closed and model.send throws: say so once.
  let lost = false;
  function send(msg) {
    if (lost) return false;
    try {
      model.send(msg);
      return true;
    } catch (err) {
      lost = true;
      onDisconnect();
      return false;
    }
  }

  const canvas = el("canvas", "petri-vmview-screen", parent);
  canvas.tabIndex = 0;
  canvas.width = 720;
  canvas.height = 400;
  canvas.setAttribute("aria-label", "VM screen: click to type into the guest");
  const ctx = canvas.getContext("2d");

  // Frames: draw only the newest. A frame that arrives while one is being decoded replaces
  // any other waiting one (a slow browser skips stale frames instead of queueing them); every
  // frame is acked once drawn or skipped, so the kernel may send the next.
  let waiting = null;
  let drawing = false;
  function onMsg(msg, buffers) {
    if (!msg || msg.type !== "frame" || !buffers || !buffers.length) return;
    if (waiting) send({ type: "ack", seq: waiting.msg.seq });
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
        send({ type: "ack", seq: msg.seq });
      }
    }
    drawing = false;
  }
  model.on("msg:custom", onMsg);
  send({ type: "ready" });

  // Keyboard: a window capture listener runs before JupyterLab's document-level
  // shortcut handling, so keys typed on the focused canvas go to the guest only.
  function onKey(e) {
    if (document.activeElement !== canvas) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    if (e.type === "keydown" && e.repeat && e.code.startsWith("Shift")) return;
    send({ type: "key", code: e.code, down: e.type === "keydown" });
  }
  window.addEventListener("keydown", onKey, true);
  window.addEventListener("keyup", onKey, true);

  function onPointer(e) {
    const r = canvas.getBoundingClientRect();
    if (!r.width || !r.height) return;
    send({ type: "pointer", x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height,
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

  return {
    path: "kernel",
    canvas: () => canvas,
    act: (action) => (send({ type: "action", action }) ? Promise.resolve()
                       : Promise.reject(new Error("disconnected: the kernel behind this view is gone"))),
    destroy() {
      window.removeEventListener("keydown", onKey, true);
      window.removeEventListener("keyup", onKey, true);
      model.off("msg:custom", onMsg);
    },
  };
}
