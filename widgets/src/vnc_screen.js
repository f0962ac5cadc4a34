// The screen beside the kernel: noVNC over the view server's websocket to QEMU's VNC unix
// socket, and the buttons over a second websocket to the VM's control monitor. Neither
// touches the kernel, so both keep working while a cell blocks.

import RFB from "@novnc/novnc";
import { el } from "./dom.js";
import { typeText } from "./paste.js";

// The Jupyter page's base URL and token (JupyterLab and Notebook 7 embed them in the page).
export function pageConfig() {
  const node = document.getElementById("jupyter-config-data");
  if (!node) return null;
  try {
    const cfg = JSON.parse(node.textContent || "{}");
    return { baseUrl: cfg.baseUrl || "/", token: cfg.token || "" };
  } catch (err) {
    return null;
  }
}

function viewPath(cfg, tail) {
  const base = cfg.baseUrl.endsWith("/") ? cfg.baseUrl : cfg.baseUrl + "/";
  const query = cfg.token ? "?token=" + encodeURIComponent(cfg.token) : "";
  return base + "petri_nb/view/" + tail + query;
}

export function viewUrl(cfg, viewId, kind) {
  const path = viewPath(cfg, encodeURIComponent(viewId) + "/" + kind);
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

//: What enables the view server where it is missing (an editable install skips the data file).
export const ENABLE_HINT = "jupyter server extension enable petri_nb.server, then restart Jupyter";

// Resolves "" if a petri_nb view server answers this user on this page's server, else why not.
export async function viewServerMissing(cfg) {
  let r;
  try {
    r = await fetch(viewPath(cfg, "ping"), { credentials: "same-origin" });
  } catch (err) {
    return "the Jupyter server did not answer (" + String(err.message || err) + ")";
  }
  if (r.status === 404) return "petri_nb's view server is not enabled in this Jupyter server; run: " + ENABLE_HINT;
  if (!r.ok) return "petri_nb's view server answered HTTP " + r.status;
  try {
    if ((await r.json()).petri_nb_view >= 1) return "";
  } catch (err) { /* not ours: below */ }
  return "something else answers petri_nb's view path on this server";
}

// Count frames the way a person sees them: each flip of noVNC's visible canvas.
function countFlips(rfb, onFlip) {
  const display = rfb._display;  // noVNC 1.7 internals, pinned by package-lock.json
  if (!display || typeof display.flip !== "function") return;
  const flip = display.flip.bind(display);
  display.flip = (fromQueue) => {
    const deferred = display._renderQ.length !== 0 && !fromQueue;
    flip(fromQueue);
    if (!deferred) onFlip();
  };
}

//: A VNC connection that drops (QEMU swapped by restore_state or a relaunch) is retried this
//: many times, 300 ms apart and growing; then the view says "disconnected".
const RETRIES = 4;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Returns a promise of the screen object, or rejects if the display cannot be reached.
export function vncScreen(cfg, viewId, parent, { onDisconnect }) {
  const holder = el("div", "petri-vmview-vnc", parent);
  const url = viewUrl(cfg, viewId, "vnc");
  const stats = { frames: 0, lastFlip: 0, reconnects: 0 };
  let rfb = null;
  let closing = false;
  let zoom = "1:1";
  function applyZoom() {
    const fit = zoom === "fit" || document.fullscreenElement === parent;
    holder.dataset.zoom = fit ? "fit" : "1:1";
    const canvas = holder.querySelector("canvas");
    holder.style.aspectRatio = fit && canvas && canvas.width ? canvas.width + " / " + canvas.height : "";
    if (rfb) rfb.scaleViewport = fit;
  }
  document.addEventListener("fullscreenchange", applyZoom);

  function connect() {
    const r = new RFB(holder, url, { shared: true });
    r.background = "#000";
    r.focusOnClick = true;
    r.scaleViewport = false;
    r.resizeSession = false;
    countFlips(r, () => {
      stats.frames += 1;
      stats.lastFlip = performance.now();
      holder.dataset.frames = String(stats.frames);
      if (holder.dataset.zoom === "fit") applyZoom();  // the guest may have changed its mode
      holder.dispatchEvent(new CustomEvent("petri-flip"));  // tests and benchmarks count frames with it
    });
    return new Promise((resolve, reject) => {
      let connected = false;
      r.addEventListener("connect", () => {
        connected = true;
        rfb = r;
        applyZoom();
        holder.dataset.connected = "1";
        resolve(r);
      });
      r.addEventListener("disconnect", () => {
        holder.dataset.connected = "0";
        if (!connected) reject(new Error("no VNC connection"));
        else if (!closing) reconnect();
      });
    });
  }
  async function reconnect() {
    for (let i = 1; i <= RETRIES && !closing; i++) {
      await sleep(300 * i);
      try {
        await connect();
        stats.reconnects += 1;
        return;
      } catch (err) { /* the VM may be gone: try again, then give up */ }
    }
    if (!closing) onDisconnect();
  }

  let control = null;
  let nextId = 1;
  const pending = new Map();
  function openControl() {
    const ws = new WebSocket(viewUrl(cfg, viewId, "control"));
    ws.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      const p = pending.get(msg.id);
      if (!p) return;
      pending.delete(msg.id);
      if (msg.ok) p.resolve(); else p.reject(new Error(String(msg.error)));
    };
    ws.onclose = () => {
      for (const p of pending.values()) p.reject(new Error("the view server closed the control channel"));
      pending.clear();
      control = null;
    };
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error("the view server refused the control channel"));
    });
  }
  async function act(action) {
    if (!control) control = openControl();
    let ws;
    try {
      ws = await control;
    } catch (err) {
      control = null;  // the next click tries again
      throw err;
    }
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, action }));
    });
  }

  const screen = {
    path: "vnc",
    stats,
    holder,
    canvas: () => holder.querySelector("canvas"),
    act,
    focus: () => rfb && rfb.focus(),
    blur: () => rfb && rfb.blur(),
    // "1:1" shows every guest pixel as one CSS pixel (never a fractional scale by accident);
    // "fit" scales the screen to the view's width, as does fullscreen.
    setZoom(mode) {
      zoom = mode;
      applyZoom();
    },
    paste: (text) => (rfb ? typeText(rfb, text) : text.length),
    destroy() {
      closing = true;
      document.removeEventListener("fullscreenchange", applyZoom);
      try { if (rfb) rfb.disconnect(); } catch (err) { /* already gone */ }
      control?.then((ws) => ws.close()).catch(() => {});
    },
  };
  return connect().then(() => screen, (err) => { holder.remove(); throw err; });
}
