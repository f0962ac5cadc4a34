// The serial pane: xterm.js on the VM's serial console over the view server (beside the
// kernel). Guest bytes are drawn as terminal cells, never parsed as HTML; scrollback is bounded.

import { Terminal } from "@xterm/xterm";
import { el } from "./dom.js";

//: Lines kept above the screen: enough to scroll back through a boot log, bounded in memory.
const SCROLLBACK = 2000;

export function serialPane(url, parent) {
  const box = el("div", "petri-vmview-serial", parent);
  box.title = "Serial console: click to type into the guest's COM1";
  const term = new Terminal({ scrollback: SCROLLBACK, rows: 12, cols: 100, convertEol: true,
                              fontSize: 12, cursorBlink: false });
  term.open(box);
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (e) => { if (e.data instanceof ArrayBuffer) term.write(new Uint8Array(e.data)); };
  ws.onclose = () => { box.dataset.connected = "0"; };
  ws.onopen = () => { box.dataset.connected = "1"; };
  const encoder = new TextEncoder();
  const typed = term.onData((s) => { if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(s)); });
  return {
    term,
    destroy() {
      typed.dispose();
      ws.close();
      term.dispose();
    },
  };
}
