// The run view: pick a prompt; hover a position to see what every stage's read of it attended to, click to lock.
"use strict";

const state = { v: 0, p: 0, hover: null, locked: null, k: 8, lensTop: 5, paint: null, lensLayer: 0,
                expanded: new Set(), maps: new Set() };
let view = null;  // the shown prompt, decoded: { variant, prompt, T, L, V, stages, ... }
const SHOWN = 0.0005;  // weights below this would show as 0.000 at three decimals: left out of lists, cells blank

// ---- the prompt's data, made ready to read: each stage's position -> row map and its full rows' offsets
function openPrompt(v, p) {
  const variant = DATA.variants[v], prompt = variant.prompts[p];
  const T = prompt.tokens.length, V = variant.vocabulary.length, L = variant.layers.length;
  const stages = prompt.stages.map((s, i) => {
    const rows = unpack(s.rows), rowOf = new Int32Array(T).fill(-1);
    rows.forEach((pos, r) => { rowOf[pos] = r; });
    const lengths = unpack(s.lengths), offsets = new Float64Array(lengths.length + 1);
    lengths.forEach((n, r) => { offsets[r + 1] = offsets[r] + n; });
    const several = prompt.stages.filter((t) => t.layer === s.layer).length > 1;
    return Object.assign({}, s, { i, rowOf, offsets, several, map: null });
  });
  const paint = stages.find((s) => s.over !== "memory");
  state.paint = paint ? paint.i : null;
  state.lensLayer = L;
  state.hover = null; state.locked = null; state.expanded.clear(); state.maps.clear();
  return { variant, prompt, T, V, L, stages, lens: unpack(prompt.lens), similarity: unpack(prompt.similarity),
           logits: unpack(prompt.logits) };
}

function focusPosition() { return state.hover ?? state.locked ?? view.T - 1; }

// Row f of stage s: its top-k entries (largest first), and what the rest adds up to.  null: s gave f no weights.
function rowEntries(s, f, k) {
  const r = s.rowOf[f];
  if (r < 0) return null;
  const index = unpack(s.top_index), value = unpack(s.top_value);
  const entries = [];
  let sum = 0;
  for (let j = 0; j < Math.min(k, s.k); j++) {
    const w = value[r * s.k + j];
    if (Math.abs(w) < SHOWN) break;  // it would read 0.000: counted with the others instead
    entries.push([index[r * s.k + j], w]);
    sum += w;
  }
  return { entries, others: unpack(s.count)[r] - entries.length, othersSum: unpack(s.total)[r] - sum };
}

// The whole row f of stage s (columns past its stored length are zero), or null where the page has no full rows.
async function fullRow(s, f) {
  const r = s.rowOf[f];
  if (r < 0 || !s.full) return null;
  const all = await inflate(s.full);
  const row = new Float32Array(s.columns);
  row.set(all.subarray(s.offsets[r], s.offsets[r + 1]));
  return row;
}

function columnLabel(s, c) {
  if (s.over === "memory") {
    const [relation, source] = view.variant.memory[c];
    return el("span", { class: "col" }, el("span", { class: "rel", text: relation }),
              el("span", { class: "src", text: " " + source }));
  }
  return el("span", { class: "col" }, el("span", { class: "tok", text: view.prompt.tokens[c] }),
            el("span", { class: "at", text: "@" + c }));
}

function entryRow(s, c, w, scale) {
  const bar = el("span", { class: "bar" }, el("span", { class: "fill" }));
  bar.firstChild.style.width = (100 * Math.min(1, w / scale)).toFixed(1) + "%";
  const row = el("div", { class: "entry", "data-col": c, title: `${w}` }, columnLabel(s, c), bar,
                 el("span", { class: "val", text: Math.abs(w) >= SHOWN ? fmt(w) : w.toExponential(1) }));
  if (s.over !== "memory") {  // follow the read: lock on the position it attended to
    row.classList.add("jump");
    row.title = `${w} · click to lock on position ${c}`;
    row.addEventListener("click", () => { state.locked = c; state.hover = null; view.positions.scrollTo(c); renderFocus(); });
  }
  return row;
}

// ---- the page's frame: header, the prompt list, and the prompt view
function build() {
  const app = document.getElementById("app");
  app.className = "run";
  const verdict = DATA.passed ? "every checked expectation holds" : "an expectation failed";
  const header = el("header", {},
    el("h1", {}, el("span", { text: DATA.scenario }), " ",
       el("span", { class: "badge " + (DATA.passed ? "pass" : "fail"), text: verdict })),
    el("div", { class: "path", text: DATA.path }),
    DATA.description ? el("p", { class: "desc", text: DATA.description }) : null);
  const list = el("nav", { id: "prompts", "aria-label": "prompts" });
  const main = el("main", { id: "prompt" });
  app.replaceChildren(header, el("div", { class: "body" }, el("aside", {},
    el("h2", { text: "prompts" }), list), main));
  const items = [];
  DATA.variants.forEach((v, vi) => v.prompts.forEach((p, pi) => items.push([vi, pi])));
  const several = DATA.variants.length > 1;
  view = null;
  const prompts = new VirtualList(list, items.length, 44, (n) => {
    const [vi, pi] = items[n], v = DATA.variants[vi], p = v.prompts[pi];
    const row = el("div", { class: "item" + (vi === state.v && pi === state.p ? " on" : ""), "data-item": n,
                            title: p.label },
      el("div", { class: "name", text: (several ? v.name + (v.check ? "" : " (not checked)") + " · " : "") +
                                       `${pi + 1}. ${p.label}` }),
      verdictBadge(p.passed, p.margin, p.margin_note));
    row.addEventListener("click", () => { state.v = vi; state.p = pi; prompts.refresh(); showPrompt(); });
    return row;
  });
  document.addEventListener("keydown", onKey);
  return showPrompt();
}

async function showPrompt() {
  const want = [state.v, state.p];
  await inflateAll(DATA.variants[state.v].prompts[state.p], new Set(["full"]));
  if (want[0] !== state.v || want[1] !== state.p) return;  // another prompt was picked meanwhile
  if (view) { view.positions.dispose(); view.resize.disconnect(); }
  view = openPrompt(state.v, state.p);
  const { variant, prompt } = view;
  const main = document.getElementById("prompt");
  const candidates = prompt.candidates.map((c) => variant.vocabulary[c]);
  const kInput = el("input", { type: "number", min: 1, max: DATA.top, value: state.k, id: "topk",
                               "aria-label": "entries shown per stage" });
  kInput.addEventListener("change", () => {
    state.k = Math.max(1, Math.min(DATA.top, Number(kInput.value) || 8)); kInput.value = state.k; drawFocus();
  });
  main.replaceChildren(
    el("section", { id: "verdict" },
      el("h2", {}, el("span", { text: `${variant.name}${variant.check ? "" : " (shown, not checked)"} · prompt ${state.p + 1}` +
                                        (prompt.name ? ": " : "") }),
         prompt.name ? el("span", { class: "pname", text: prompt.name }) : null, " ",
         verdictBadge(prompt.passed, prompt.margin, prompt.margin_note)),
      prompt.expect === null ? el("div", { text: "this prompt expects nothing" }) :
        el("div", { class: "expect" }, "expect ", el("b", { class: "tok", text: prompt.expect }), " · winner ",
           el("b", { class: "tok", text: prompt.winner }), " · margin ",
           el("b", { text: prompt.margin === null ? prompt.margin_note : signed(prompt.margin) }),
           ` · ${candidates.length} candidate${candidates.length === 1 ? "" : "s"}` + (prompt.candidates_given ? ": " : " (every name but the last token)"),
           prompt.candidates_given ? el("span", { class: "tok", text: candidates.join(", ") }) : null),
      el("div", { class: "model", text: variant.model }),
      variant.description ? el("div", { class: "desc", text: variant.description }) : null),
    el("div", { class: "cols" },
      el("section", { id: "positions-panel" },
        el("h3", { text: `positions (${view.T})` }),
        el("div", { class: "hint", text: "hover to focus · click to lock · click again or Esc to unlock · ↑↓ move" }),
        el("div", { class: "phead" }, el("span", { text: "pos" }), el("span", { text: "token" }),
           el("span", { id: "paint-head" }), el("span", { id: "sim-head" })),
        el("div", { id: "positions" })),
      el("section", { id: "attention-panel" },
        el("div", { class: "focusbar" }, el("h3", { id: "focus-label" }),
           el("button", { id: "unlock", type: "button", onclick: () => { state.locked = null; state.hover = null; renderFocus(); } },
              "unlock (Esc)"),
           el("label", {}, "top ", kInput)),
        el("div", { id: "stages" }))),
    el("section", { id: "lens-panel" }, el("h3", { text: "logit lens at the last position" }), el("div", { id: "lens" }),
       el("h3", { text: "lens similarity: the last position against every position, after each layer" }),
       el("div", { class: "hint", text: "hover for the value · click a cell to focus that position and show that layer's similarity in the list" }),
       el("div", { id: "similarity" })));
  const host = document.getElementById("positions");
  host.addEventListener("mouseover", (e) => {
    const row = e.target.closest("[data-pos]");
    if (row && Number(row.dataset.pos) !== state.hover) { state.hover = Number(row.dataset.pos); drawFocus(); }
  });
  host.addEventListener("mouseleave", () => { if (state.hover !== null) { state.hover = null; drawFocus(); } });
  host.addEventListener("click", (e) => {
    const row = e.target.closest("[data-pos]");
    if (!row) return;
    const pos = Number(row.dataset.pos);
    state.locked = state.locked === pos ? null : pos;
    renderFocus();
  });
  view.positions = new VirtualList(host, view.T, 22, positionRow);
  view.positions.scrollTo(view.T - 1);  // the readout's position, which the stages show until another is focused
  drawLens();
  drawSimilarity();
  drawFocus();
}

// ---- the positions list: token, the focused position's weight on it in the painted stage, lens similarity
function positionRow(i) {
  const f = focusPosition(), w = view.paintRow ? view.paintRow[i] : 0;
  const sim = view.similarity[state.lensLayer * view.T + i];
  const cls = "pos" + (i === f ? " focus" : "") + (i === state.locked ? " locked" : "");
  const seen = Math.abs(w) >= SHOWN;
  const paint = el("span", { class: "cell w", text: seen ? fmt(w) : "" });
  paint.style.background = seen ? weightColour(w) : "";
  const s = el("span", { class: "cell s", text: signed(sim, 2) });
  s.style.background = divergingColour(sim);
  return el("div", { class: cls, "data-pos": i }, el("span", { class: "i", text: i }),
            el("span", { class: "tok", text: view.prompt.tokens[i] }), paint, s);
}

let focusFrame = 0;
function drawFocus() { if (!focusFrame) focusFrame = requestAnimationFrame(() => { focusFrame = 0; renderFocus(); }); }

function renderFocus() {
  const f = focusPosition(), { prompt, stages } = view;
  const label = document.getElementById("focus-label");
  label.replaceChildren(`attention of position ${f} `, el("span", { class: "tok", text: prompt.tokens[f] }),
    state.locked === null ? (state.hover === null ? " (the last position; hover to focus)" : " (hovered)") :
      state.hover !== null && state.hover !== state.locked ? ` (hovered; locked on ${state.locked})` : " (locked)");
  label.dataset.focus = f;
  label.dataset.locked = state.locked ?? "";
  document.getElementById("unlock").hidden = state.locked === null;
  // Stages that gave f no weights are folded into one line per reason, so 40 stages at `last` do not bury the few
  // that read f.
  const cards = [], quiet = new Map();
  for (const s of stages) {
    if (s.rowOf[f] >= 0) { cards.push(stageCard(s, f)); continue; }
    const why = silence(s, f);
    if (!quiet.has(why)) quiet.set(why, []);
    quiet.get(why).push(stageName(s));
  }
  for (const [why, names] of quiet) {
    const shown = names.length > 8 ? names.slice(0, 8).join(", ") + `, … (${names.length} stages)` : names.join(", ");
    cards.push(el("div", { class: "stage quiet" }, el("span", { class: "none", text: `${why}: ` }), el("span", { text: shown })));
  }
  document.getElementById("stages").replaceChildren(...cards);
  paintPositions(f);
}

function paintPositions(f) {
  const s = state.paint === null ? null : view.stages[state.paint];
  document.getElementById("paint-head").textContent = s ? `weight of ${f} (layer ${s.layer}${s.several ? "." + (s.index + 1) : ""})` : "";
  document.getElementById("sim-head").textContent = `lens sim (${state.lensLayer ? "layer " + state.lensLayer : "embedding"})`;
  view.paintRow = null;
  if (s) {
    const row = new Float32Array(view.T), got = rowEntries(s, f, s.k);
    if (got) for (const [c, w] of got.entries) row[c] = w;
    view.paintRow = row;
    fullRow(s, f).then((full) => {
      if (full && focusPosition() === f && view.stages[state.paint] === s) { view.paintRow = full; view.positions.refresh(); }
    });
  }
  view.positions.refresh();
}

function stageName(s) { return `layer ${s.layer}${s.several ? "." + (s.index + 1) : ""}`; }

function silence(s, f) {
  if (s.positions === "last" && f !== view.T - 1) return `not read at position ${f} (these stages update the last position only)`;
  if (s.positions === "before_last" && f === view.T - 1) return "not read at the last position (these stages update every position but the last)";
  if (s.columns === 0) return "nothing to read (no memory rows)";
  if (f === 0 && s.over !== "memory") return "position 0 has no past";
  return `no weights at position ${f}`;
}

function stageCard(s, f) {
  const name = stageName(s);
  const paintBox = s.over === "memory" ? null :
    el("label", { class: "paint", title: "colour the positions list by this stage's weights" },
       el("input", { type: "radio", name: "paint", checked: state.paint === s.i,
                     onchange: () => { state.paint = s.i; drawFocus(); } }), " colour list");
  const mapButton = s.over === "memory" || unpack(s.rows).length < 2 ? null :
    el("button", { type: "button", class: "mapb", title: "every position's weights at once, query rows by key columns",
                   onclick: () => { state.maps.has(s.i) ? state.maps.delete(s.i) : state.maps.add(s.i); drawFocus(); } },
       state.maps.has(s.i) ? "hide map" : "map");
  const card = el("div", { class: "stage", "data-stage": s.i },
    el("div", { class: "shead" },
       el("div", { class: "stitle" }, el("b", { text: name }), " ", el("span", { class: "label", text: s.label }),
          el("span", { class: "what", text: " · " + s.what })),
       el("div", { class: "tools" }, paintBox, mapButton)));
  if (state.maps.has(s.i)) card.append(stageMap(s, f));
  const got = rowEntries(s, f, state.k);
  const scale = Math.max(1, got.entries.length ? got.entries[0][1] : 1);
  const entries = el("div", { class: "entries" }, ...got.entries.map(([c, w]) => entryRow(s, c, w, scale)));
  card.append(entries);
  if (got.others > 0) {
    const open = state.expanded.has(s.i);
    const button = el("button", { type: "button", class: "more" },
      open ? "show the top " + state.k : `+${got.others} others ${fmt(got.othersSum)} · show all ${got.others + got.entries.length}`);
    button.addEventListener("click", () => { open ? state.expanded.delete(s.i) : state.expanded.add(s.i); drawFocus(); });
    card.append(el("div", { class: "others" }, button));
    if (open) card.append(fullList(s, f, scale));
  }
  if (s.parts && s.parts_position === f) card.append(partsList(s));
  return card;
}

// ---- a stage's whole pattern over positions, query rows by key columns, on one canvas of at most MAP cells a side
// (above that a pixel shows the largest weight of the cells it covers), scaled up for short prompts.  Made once per
// stage from its full rows (its top entries where the page has no full rows); the focused row is marked on top.
const MAP = 480;

async function mapImage(s) {
  if (s.map) return s.map;
  const T = view.T, size = Math.min(T, MAP), cell = size / T, rows = unpack(s.rows);
  const block = new Float32Array(size * size);
  const put = (i, c, w) => {
    const k = Math.floor(i * cell) * size + Math.floor(c * cell);
    if (w > block[k]) block[k] = w;
  };
  if (s.full) {
    const all = await inflate(s.full);
    rows.forEach((i, r) => { for (let o = s.offsets[r]; o < s.offsets[r + 1]; o++) put(i, o - s.offsets[r], all[o]); });
  } else {
    const index = unpack(s.top_index), value = unpack(s.top_value);
    rows.forEach((i, r) => { for (let j = 0; j < s.k; j++) put(i, index[r * s.k + j], value[r * s.k + j]); });
  }
  const top = block.reduce((a, b) => Math.max(a, b), 0) || 1;  // the darkest blue is the stage's largest weight
  const image = new ImageData(size, size);
  block.forEach((w, k) => {  // white to the weights' blue (37, 99, 235)
    const a = Math.min(1, Math.max(0, w / top));
    image.data.set([255 - 218 * a, 255 - 156 * a, 255 - 20 * a, 255], 4 * k);
  });
  s.map = { image, size, cell, top };
  return s.map;
}

function stageMap(s, f) {
  const canvas = el("canvas", { class: "map", "data-map": s.i });
  const note = el("div", { class: "hint" });
  const box = el("div", { class: "mapbox" }, canvas, note);
  mapImage(s).then(({ image, size, cell, top }) => {
    canvas.width = canvas.height = size;
    canvas.style.width = Math.max(size, Math.min(280, 14 * size)) + "px";  // a short prompt's cells drawn larger
    note.textContent = `rows: the querying position; columns: the position read; white 0 to blue ${fmt(top)}; ` +
      "hover for the value, click to lock on a row" + (cell < 1 ? "; a pixel shows the largest of the cells it covers" : "") +
      (s.full ? "" : " (top entries only: the full rows are not in this file)");
    const ctx = canvas.getContext("2d");
    ctx.putImageData(image, 0, 0);
    ctx.fillStyle = "rgba(217, 119, 6, 0.55)";  // the focused row
    ctx.fillRect(0, Math.floor(f * cell), size, 1);
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [Math.floor((e.clientY - r.top) / r.height * view.T), Math.floor((e.clientX - r.left) / r.width * view.T)];
    };
    canvas.onmousemove = async (e) => {
      const [i, c] = at(e);
      if (i < 0 || i >= view.T || c < 0 || c >= view.T) return hideTip();
      const row = await fullRow(s, i), got = row ? null : rowEntries(s, i, s.k);
      const w = row ? row[c] : (got ? (got.entries.find(([x]) => x === c) || [c, 0])[1] : 0);
      showTip(e, `${i} ${view.prompt.tokens[i]} → ${c} ${view.prompt.tokens[c]}: ${fmt(w)}`);
    };
    canvas.onmouseleave = hideTip;
    canvas.onclick = (e) => {
      const [i] = at(e);
      if (i >= 0 && i < view.T) { state.locked = i; state.hover = null; view.positions.scrollTo(i); renderFocus(); }
    };
  });
  return box;
}

// Every nonzero entry of row f, largest first, in a virtual list: decoded now, on demand.
function fullList(s, f, scale) {
  const host = el("div", { class: "full" });
  if (!s.full) {
    host.append(el("div", { class: "none", text: `the full rows of this stage are not in this file (the page keeps ` +
      `${(DATA.full_budget / 2 ** 20).toFixed(0)} MiB of them); assocmem run --json has every weight` }));
    return host;
  }
  host.append(el("div", { class: "none", text: "decoding…" }));
  fullRow(s, f).then((row) => {
    const order = [];
    row.forEach((w, c) => { if (w !== 0) order.push(c); });
    order.sort((a, b) => row[b] - row[a] || a - b);
    host.replaceChildren();
    host.style.height = Math.min(320, order.length * 22 + 2) + "px";
    new VirtualList(host, order.length, 22, (n) => entryRow(s, order[n], row[order[n]], scale), false);
  });
  return host;
}

function partsList(s) {
  // Each read of a prefix read with what it attended to; a read that put nothing above 0.01 anywhere (a hop whose
  // chain did not hold) is only counted.
  const box = el("div", { class: "parts" });
  const quiet = [];
  for (const part of s.parts) {
    const w = unpack(part.w), order = [];
    w.forEach((x, c) => { if (x >= 0.01) order.push(c); });
    if (!order.length) { quiet.push(part.name); continue; }
    order.sort((a, b) => w[b] - w[a] || a - b);
    const line = el("div", { class: "part", "data-part": part.name }, el("span", { class: "pn", text: "↳ " + part.name }));
    for (const c of order.slice(0, 4)) line.append(" ", columnLabel(s, c), el("span", { class: "val", text: " " + fmt(w[c]) }));
    if (order.length > 4) line.append(el("span", { class: "none", text: ` +${order.length - 4} more` }));
    box.append(line);
  }
  if (quiet.length) box.append(el("div", { class: "none", text: `${quiet.join(", ")}: nothing above 0.01` }));
  return box;
}

// ---- the logit lens: per layer the top tokens with values, and a heatmap of every token that reached the top 5
function layerName(l) { return l === 0 ? "embedding" : `${l} · ${view.variant.layers[l - 1]}`; }

function topOf(l, n) {
  const { lens, V } = view, idx = Array.from({ length: V }, (_, j) => j);
  idx.sort((a, b) => lens[l * V + b] - lens[l * V + a] || a - b);
  return idx.slice(0, n);
}

function drawLens() {
  const { variant, prompt, L, V, lens } = view;
  const host = document.getElementById("lens");
  const vocab = variant.vocabulary, expect = prompt.expect, cand = new Set(prompt.candidates);
  const n = Math.min(state.lensTop, V);
  const table = el("table", { class: "lens", id: "lens-top" },
    el("tr", {}, el("th", { text: "after layer" }), ...Array.from({ length: n }, (_, j) => el("th", { text: `top ${j + 1}` }))));
  for (let l = 0; l <= L; l++) {
    const row = el("tr", { "data-layer": l }, el("th", { class: "ln", text: layerName(l) }));
    for (const j of topOf(l, n)) {
      const v = lens[l * V + j];
      const td = el("td", { class: (vocab[j] === expect ? "exp" : "") + (cand.has(j) ? "" : " nc"),
                            title: cand.has(j) ? "" : "not a candidate" },
        el("span", { class: "tok", text: vocab[j] }), " ", el("span", { class: "val", text: signed(v) }));
      td.style.background = divergingColour(v);
      row.append(td);
    }
    table.append(row);
  }
  const ever = [];
  for (let l = 0; l <= L; l++) for (const j of topOf(l, Math.min(5, V))) if (!ever.includes(j)) ever.push(j);
  const heat = el("table", { class: "lens heat", id: "lens-heat" },
    el("tr", {}, el("th", { text: "after layer" }), ...ever.map((j) => el("th", { class: vocab[j] === expect ? "exp" : "" },
      el("span", { class: "tok", text: vocab[j] + (vocab[j] === expect ? " ★" : "") })))));
  for (let l = 0; l <= L; l++) {
    const row = el("tr", { "data-layer": l }, el("th", { class: "ln", text: layerName(l) }));
    for (const j of ever) {
      const v = lens[l * V + j];
      const td = el("td", { text: fmt(v, 2), title: `${vocab[j]} after ${layerName(l)}: ${v}` });
      td.style.background = divergingColour(v);
      row.append(td);
    }
    heat.append(row);
  }
  for (const t of [table, heat]) {  // a layer's row, clicked, shows that layer's lens similarity in the positions list
    t.addEventListener("click", (e) => {
      const row = e.target.closest("tr[data-layer]");
      if (row) { state.lensLayer = Number(row.dataset.layer); renderFocus(); }
    });
  }
  const final = [...prompt.candidates].sort((a, b) => view.logits[b] - view.logits[a] || a - b).slice(0, 10);
  host.replaceChildren(
    el("div", { class: "hint", text: "the readout's similarity with every name after each layer (framed: the expected answer; " +
                                     "italic, ∉: not a candidate); click a layer to show its lens similarity in the positions list" }),
    table,
    el("h4", { text: "every name that reached the top 5 after some layer" }), heat,
    el("h4", { text: "final logits of the candidates" + (prompt.candidates.length > 10 ? " (the top 10)" : "") }),
    el("div", { class: "final", id: "final-logits" }, ...final.map((j) => el("span", { class: "fl" + (vocab[j] === expect ? " exp" : "") },
      el("span", { class: "tok", text: vocab[j] }), " ", el("span", { class: "val", text: signed(view.logits[j]) })))));
}

// ---- lens similarity: layers x positions on one canvas, each position at least one pixel wide
function drawSimilarity() {
  const { L, T, similarity, prompt } = view;
  const host = document.getElementById("similarity");
  const canvas = el("canvas", { id: "sim-canvas" });
  host.replaceChildren(canvas);
  const labelW = 90, rowH = 14;
  const draw = () => {
    const width = Math.max(300, host.clientWidth - 4), cellW = (width - labelW) / T;
    const ctx = sizedCanvas(canvas, width, (L + 1) * rowH + 4);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#333";
    for (let l = 0; l <= L; l++) {
      ctx.fillText(l === 0 ? "embedding" : "layer " + l, 2, l * rowH + 11);
      for (let i = 0; i < T; i++) {
        ctx.fillStyle = divergingColour(similarity[l * T + i]);
        ctx.fillRect(labelW + i * cellW, l * rowH, Math.max(1, cellW), rowH - 1);
      }
      ctx.fillStyle = "#333";
    }
    canvas.onmousemove = (e) => {
      const box = canvas.getBoundingClientRect(), x = e.clientX - box.left - labelW, l = Math.floor((e.clientY - box.top) / rowH);
      const i = Math.floor(x / cellW);
      if (x < 0 || i >= T || l > L) return hideTip();
      showTip(e, `${l === 0 ? "embedding" : "layer " + l} · position ${i} ${prompt.tokens[i]} · ${signed(similarity[l * T + i])}`);
    };
    canvas.onclick = (e) => {
      const box = canvas.getBoundingClientRect(), i = Math.floor((e.clientX - box.left - labelW) / cellW);
      const l = Math.floor((e.clientY - box.top) / rowH);
      if (i < 0 || i >= T || l > L) return;
      state.lensLayer = l; state.locked = i; view.positions.scrollTo(i); drawFocus();
    };
  };
  canvas.onmouseleave = hideTip;
  view.resize = new ResizeObserver(draw);
  view.resize.observe(host);
  draw();
}

function onKey(e) {
  if (!view || e.target.tagName === "INPUT") return;
  if (e.key === "Escape") { state.locked = null; state.hover = null; renderFocus(); }
  else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    const f = state.locked ?? view.T - 1;
    state.locked = Math.max(0, Math.min(view.T - 1, f + (e.key === "ArrowDown" ? 1 : -1)));
    state.hover = null;
    view.positions.scrollTo(state.locked);
    renderFocus();
    e.preventDefault();
  }
}

const started = performance.now();
build().then(() => requestAnimationFrame(() => {
  window.assocmemRenderMs = performance.now() - started;
  document.body.dataset.ready = "1";
}));
