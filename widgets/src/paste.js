// Paste text into the guest as key presses (US layout scancodes, as a person would type it).
// QEMU takes noVNC's key events as scancodes (its extended key event), so each character is
// sent as the physical key, with Shift held where the US layout needs it.

const SHIFTED = '~!@#$%^&*()_+{}|:"<>?';
const UNSHIFTED = "`1234567890-=[]\\;',./";
const PUNCT_CODES = {
  "`": "Backquote", "-": "Minus", "=": "Equal", "[": "BracketLeft", "]": "BracketRight",
  "\\": "Backslash", ";": "Semicolon", "'": "Quote", ",": "Comma", ".": "Period", "/": "Slash",
};
const XK_SHIFT_L = 0xffe1;
const XK_RETURN = 0xff0d;
const XK_TAB = 0xff09;

// [keysym, code, shift] for one character, or null for one the US layout cannot type.
export function keyFor(ch) {
  if (ch === "\n" || ch === "\r") return [XK_RETURN, "Enter", false];
  if (ch === "\t") return [XK_TAB, "Tab", false];
  if (ch === " ") return [0x20, "Space", false];
  if (/^[a-z]$/.test(ch)) return [ch.charCodeAt(0), "Key" + ch.toUpperCase(), false];
  if (/^[A-Z]$/.test(ch)) return [ch.charCodeAt(0), "Key" + ch, true];
  if (/^[0-9]$/.test(ch)) return [ch.charCodeAt(0), "Digit" + ch, false];
  const shifted = SHIFTED.indexOf(ch);
  if (shifted >= 0) {
    const base = UNSHIFTED[shifted];
    const code = /[0-9]/.test(base) ? "Digit" + base : PUNCT_CODES[base];
    return [ch.charCodeAt(0), code, true];
  }
  if (ch in PUNCT_CODES) return [ch.charCodeAt(0), PUNCT_CODES[ch], false];
  return null;
}

// Types ``text`` through ``rfb``; returns how many characters it had to skip.
export function typeText(rfb, text) {
  let skipped = 0;
  for (const ch of text.replace(/\r\n/g, "\n")) {
    const key = keyFor(ch);
    if (!key) { skipped += 1; continue; }
    const [keysym, code, shift] = key;
    if (shift) rfb.sendKey(XK_SHIFT_L, "ShiftLeft", true);
    rfb.sendKey(keysym, code, true);
    rfb.sendKey(keysym, code, false);
    if (shift) rfb.sendKey(XK_SHIFT_L, "ShiftLeft", false);
  }
  return skipped;
}
