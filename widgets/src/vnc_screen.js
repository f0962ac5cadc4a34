// The screen beside the kernel: noVNC over the view server's websocket to QEMU's VNC unix
// socket, and the buttons over a second websocket to the VM's control monitor. Neither
// touches the kernel, so both keep working while a cell blocks.

import RFB from "@novnc/novnc";
import { el } from "./dom.js";

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

function viewUrl(cfg, viewId, kind) {
  const path = viewPath(cfg, encodeURIComponent(viewId) + "/" + kind);
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

// Resolves true only if a petri_nb view server answers this user on this page's server.
export async function viewServerAnswers(cfg) {
  try {
    const r = await fetch(viewPath(cfg, "ping"), { credentials: "same-origin" });
    return r.ok && (await r.json()).petri_nb_view >= 1;
  } catch (err) {
    return false;
  }
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

// Returns a promise of the screen object, or rejects if the display cannot be reached.
export function vncScreen(cfg, viewId, parent, { onDisconnect }) {
  const holder = el("div", "petri-vmview-vnc", parent);
  const rfb = new RFB(holder, viewUrl(cfg, viewId, "vnc"), { shared: true });
  rfb.background = "#000";
  rfb.focusOnClick = true;
  rfb.scaleViewport = false;
  rfb.resizeSession = false;
  const stats = { frames: 0, lastFlip: 0 };
  countFlips(rfb, () => {
    stats.frames += 1;
    stats.lastFlip = performance.now();
    holder.dataset.frames = String(stats.frames);
    holder.dispatchEvent(new CustomEvent("petri-flip"));  // tests and benchmarks count frames with it
  });

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
    const ws = await control;
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, action }));
    });
  }

  const screen = {
    path: "vnc",
    rfb,
    stats,
    holder,
    canvas: () => holder.querySelector("canvas"),
    act,
    focus: () => rfb.focus(),
    destroy() {
      try { rfb.disconnect(); } catch (err) { /* already gone */ }
      control?.then((ws) => ws.close()).catch(() => {});
    },
  };
  return new Promise((resolve, reject) => {
    let connected = false;
    rfb.addEventListener("connect", () => { connected = true; holder.dataset.connected = "1"; resolve(screen); });
    rfb.addEventListener("disconnect", (e) => {
      holder.dataset.connected = "0";
      if (connected) onDisconnect(e.detail && e.detail.clean);
      else { holder.remove(); reject(new Error("no VNC connection")); }
    });
  });
}
