// What the run and sweep views share: the page's data, decoding it, DOM helpers, colours and a virtual list.
"use strict";

const DATA = JSON.parse(document.getElementById("assocmem-data").textContent);

// ---- decoding: arrays travel as little-endian float32/int32 in base64 (every browser's typed arrays are little-
// endian on the hardware browsers run on); a deflated one is decoded only when asked, by the browser's own inflater.
function bytesOf(b64) {
  const text = atob(b64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}
function typed(t, buffer) { return t === "f32" ? new Float32Array(buffer) : new Int32Array(buffer); }
const decoded = new WeakMap();  // packed array -> its typed array, or the promise of it while it inflates
function inflate(p) {  // a promise of the typed array, decoded once
  if (!decoded.has(p)) {
    const bytes = bytesOf(p.b64);
    if (!p.z) decoded.set(p, typed(p.t, bytes.buffer));
    else {
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
      decoded.set(p, new Response(stream).arrayBuffer().then((b) => { const a = typed(p.t, b); decoded.set(p, a); return a; }));
    }
  }
  return Promise.resolve(decoded.get(p));
}
function unpack(p) {  // an array already inflated (see inflateAll), at once
  const a = decoded.get(p);
  if (!a || a instanceof Promise) throw new Error("assocmem: an array was read before it was inflated");
  return a;
}
// Inflate every packed array under `node` except those under the keys in `skip` (the full rows: on demand only).
function inflateAll(node, skip = new Set()) {
  const waits = [];
  const walk = (x) => {
    if (x === null || typeof x !== "object") return;
    if (typeof x.b64 === "string") { waits.push(inflate(x)); return; }
    for (const [k, v] of Object.entries(x)) if (!skip.has(k)) walk(v);
  };
  walk(node);
  return Promise.all(waits);
}

// ---- DOM: every piece of user text goes in as textContent, never as markup.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}
function fmt(x, digits = 3) { return Number.isFinite(x) ? x.toFixed(digits) : String(x); }
function signed(x, digits = 3) { return Number.isFinite(x) ? (x >= 0 ? "+" : "") + x.toFixed(digits) : String(x); }
function verdictBadge(passed, margin, note) {
  if (passed === null || passed === undefined) return el("span", { class: "badge none", text: "no expectation" });
  const m = margin === null ? " (no margin)" : " " + signed(margin);
  return el("span", { class: "badge " + (passed ? "pass" : "fail"), text: (passed ? "PASS" : "FAIL") + m, title: note });
}

// ---- colours: weights from white to blue; similarities and logits red (negative) to blue (positive).
function weightColour(w) {
  const a = Math.max(0, Math.min(1, w));
  return `rgba(37, 99, 235, ${(0.08 + 0.82 * a).toFixed(3)})`;
}
function divergingColour(x) {
  const a = Math.max(-1, Math.min(1, x));
  return a >= 0 ? `rgba(37, 99, 235, ${(0.9 * a).toFixed(3)})` : `rgba(220, 38, 38, ${(-0.9 * a).toFixed(3)})`;
}

// ---- a list of fixed-height rows that keeps only the rows on screen in the DOM, so 2000 or 200,000 rows cost
// the same to scroll.  render(i) makes row i; rows are re-made when refresh() is called.
class VirtualList {
  constructor(host, count, rowHeight, render, watchResize = true) {
    this.host = host; this.count = count; this.rowHeight = rowHeight; this.render = render;
    host.classList.add("vlist");
    this.spacer = el("div", { class: "vspacer" });
    this.spacer.style.height = count * rowHeight + "px";
    host.replaceChildren(this.spacer);
    this.drawn = new Map();
    this.frame = 0;
    host.addEventListener("scroll", () => this.schedule());
    this.observer = watchResize ? new ResizeObserver(() => this.schedule()) : null;
    if (this.observer) this.observer.observe(host);
    this.draw();
  }
  dispose() { if (this.observer) this.observer.disconnect(); }
  schedule() { if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); }); }
  draw() {
    const h = this.host.clientHeight || 400, top = this.host.scrollTop;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - 5);
    const last = Math.min(this.count, Math.ceil((top + h) / this.rowHeight) + 5);
    for (const [i, node] of this.drawn) if (i < first || i >= last) { node.remove(); this.drawn.delete(i); }
    for (let i = first; i < last; i++) {
      if (this.drawn.has(i)) continue;
      const node = this.render(i);
      node.style.top = i * this.rowHeight + "px";
      node.style.height = this.rowHeight + "px";
      node.classList.add("vrow");
      this.spacer.append(node);
      this.drawn.set(i, node);
    }
  }
  refresh() { for (const node of this.drawn.values()) node.remove(); this.drawn.clear(); this.draw(); }
  scrollTo(i) {
    const y = i * this.rowHeight, h = this.host.clientHeight;
    if (y < this.host.scrollTop || y + this.rowHeight > this.host.scrollTop + h) this.host.scrollTop = y - h / 2;
    this.draw();
  }
}

// ---- a tooltip that follows the pointer over canvases
const tip = el("div", { class: "tip", role: "tooltip" });
function showTip(event, text) {
  if (!tip.isConnected) document.body.append(tip);
  tip.textContent = text;
  tip.style.left = event.clientX + 14 + "px";
  tip.style.top = event.clientY + 14 + "px";
  tip.hidden = false;
}
function hideTip() { tip.hidden = true; }

// ---- a canvas sized in CSS pixels, drawn sharp on high-density screens
function sizedCanvas(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = width + "px";
  canvas.style.height = height + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}
