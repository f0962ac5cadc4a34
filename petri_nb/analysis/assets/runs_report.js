"use strict";
(() => {
  const rows = Array.from(document.querySelectorAll("tr[data-s]"));
  const boxes = Array.from(document.querySelectorAll("#filters input[name=source]"));
  const known = new Set(boxes.map((b) => b.value));
  const kind = document.getElementById("kind");
  const text = document.getElementById("text");
  const shown = document.getElementById("shown");
  let texts = null;
  function apply() {
    const on = new Set(boxes.filter((b) => b.checked).map((b) => b.value));
    const k = kind.value;
    const q = text.value.trim().toLowerCase();
    if (q && texts === null) texts = rows.map((r) => r.textContent.toLowerCase());
    let n = 0;
    rows.forEach((r, i) => {
      const source = on.has(r.dataset.s) || !known.has(r.dataset.s);  // no box: nothing to uncheck
      const keep = source && (!k || r.dataset.k === k) && (!q || texts[i].includes(q));
      if (r.hidden === keep) r.hidden = !keep;
      if (keep) n += 1;
    });
    shown.textContent = n + " of " + rows.length + " rows shown";
  }
  function reveal() {
    let id = location.hash.slice(1);
    try { id = decodeURIComponent(id); } catch (e) { /* a malformed link: look it up as written */ }
    const el = id ? document.getElementById(id) : null;
    if (!el) return;
    el.hidden = false;
    for (let p = el.parentElement; p; p = p.parentElement) if (p.tagName === "DETAILS") p.open = true;
    el.scrollIntoView({block: "center"});
  }
  boxes.forEach((b) => b.addEventListener("change", apply));
  kind.addEventListener("change", apply);
  text.addEventListener("input", apply);
  window.addEventListener("hashchange", reveal);
  apply();
  reveal();
})();
