// The sweep view: accuracy per (dim, temperature) cell, then per prompt the margins of every cell on shared bins.
"use strict";

const BINS = 40;

function sweepBuild() {
  const app = document.getElementById("app");
  app.className = "sweep";
  const cells = DATA.cells, P = DATA.prompts.length;
  const margins = cells.map((c) => unpack(c.margins));  // (seeds, prompts) each, row-major
  const acc = DATA.accuracy === null ? "no checked expectation" : `accuracy ${fmt(DATA.accuracy)}`;
  const variants = [...new Set(cells.map((c) => c.variant))];
  const main = el("main", {},
    el("header", {}, el("h1", {}, el("span", { text: DATA.scenario }), " ", el("span", { class: "badge none", text: acc })),
       el("div", { class: "path", text: DATA.path + (DATA.complete ? "" : " · interrupted: the seeds finished so far") })));
  main.append(el("section", {}, el("h2", { text: "accuracy" }),
    el("div", { class: "hint", text: "the share of (seed, prompt) pairs whose expectation holds, per dim (rows) and " +
                                     "model temperature (columns); under it the cell's worst margin" }),
    el("div", { class: "grids" }, ...variants.map((v) => accuracyGrid(v, cells.filter((c) => c.variant === v))))));
  main.append(promptTable(cells));
  main.append(distributions(cells, margins, P));
  app.replaceChildren(main);
}

// Accuracy over dim (rows) x temperature (columns), one table per variant.
function accuracyGrid(variant, cells) {
  const dims = [...new Set(cells.map((c) => c.dim))].sort((a, b) => a - b);
  const temps = [...new Set(cells.map((c) => c.temperature))].sort((a, b) => a - b);
  const checked = cells.every((c) => c.check);
  const table = el("table", { class: "lens grid", "data-variant": variant },
    el("tr", {}, el("th", { text: "dim \\ T" }), ...temps.map((t) => el("th", { text: String(t) }))));
  for (const d of dims) {
    const row = el("tr", {}, el("th", { text: String(d) }));
    for (const t of temps) {
      const c = cells.find((x) => x.dim === d && x.temperature === t);
      const td = el("td", { "data-dim": d, "data-temperature": t,
                            title: c ? `${c.seeds} seeds (${c.first_seed}–${c.last_seed}); mean margin ${c.mean_margin}; worst ${c.worst_margin}` : "" },
        c && c.accuracy !== null ? el("div", { class: "val", text: fmt(c.accuracy) }) : "–",
        c && c.worst_margin !== null ? el("div", { class: "hint", text: `worst ${signed(c.worst_margin)}` }) : null);
      if (c && c.accuracy !== null) td.style.background = `rgba(22, 163, 74, ${(0.1 + 0.6 * c.accuracy).toFixed(3)})`;
      row.append(td);
    }
    table.append(row);
  }
  return el("div", { class: "gridbox" }, el("h3", {}, el("span", { text: variant }), checked ? "" : " (shown, not checked)"),
            table);
}

// Per prompt and cell: accuracy and worst margin.
function promptTable(cells) {
  const table = el("table", { class: "lens", id: "prompt-accuracy" },
    el("tr", {}, el("th", { text: "prompt" }), ...cells.map((c) => el("th", { text: `${c.variant} d=${c.dim} T=${c.temperature}` }))));
  DATA.prompts.forEach((p, j) => {
    const row = el("tr", {}, el("th", { class: "ln", title: p.label }, el("span", { class: "tok", text: `${j + 1}. ${p.label}` })));
    for (const c of cells) {
      const a = c.prompt_accuracy[j];
      const td = el("td", { class: "val", text: a === null ? "–" : fmt(a) });
      if (a !== null) td.style.background = `rgba(22, 163, 74, ${(0.1 + 0.6 * a).toFixed(3)})`;
      row.append(td);
    }
    table.append(row);
  });
  return el("section", {}, el("h2", { text: "accuracy per prompt" }), el("div", { id: "prompt-table" }, table));
}

// One small histogram per (prompt, cell), every one on the same bins, drawn when it scrolls into view.
function distributions(cells, margins, P) {
  let lo = Infinity, hi = -Infinity;
  for (const m of margins) for (const x of m) if (Number.isFinite(x)) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
  const box = el("section", { id: "margins" }, el("h2", { text: "margin distributions" }),
    el("div", { class: "hint", text: `margin = expected logit − best other candidate; shared bins from ${signed(lo)} to ${signed(hi)}; ` +
                                     "red: below zero (the expectation fails); the line is 0" }));
  if (!(lo <= hi)) { box.append(el("div", { class: "none", text: "no finite margins" })); return box; }
  if (lo === hi) { lo -= 0.5; hi += 0.5; }
  const width = (hi - lo) / BINS;
  const observer = new IntersectionObserver((seen) => {
    for (const entry of seen) if (entry.isIntersecting) { observer.unobserve(entry.target); entry.target.draw(); }
  });
  DATA.prompts.forEach((p, j) => {
    if (p.expect === null) return;
    const row = el("div", { class: "mrow" }, el("div", { class: "tok", text: `${j + 1}. ${p.label} → ${p.expect}` }));
    cells.forEach((c, ci) => {
      const counts = new Array(BINS).fill(0), m = margins[ci], S = c.seeds;
      let none = 0;
      for (let s = 0; s < S; s++) {
        const x = m[s * P + j];
        if (!Number.isFinite(x)) { none++; continue; }
        counts[Math.min(BINS - 1, Math.floor((x - lo) / width))]++;
      }
      const canvas = el("canvas", { class: "hist", "data-prompt": j, "data-cell": ci });
      canvas.draw = () => drawHistogram(canvas, counts, lo, width, S);
      canvas.onmousemove = (e) => {
        const b = Math.floor((e.clientX - canvas.getBoundingClientRect().left) / (180 / BINS));
        if (b >= 0 && b < BINS) showTip(e, `${signed(lo + b * width)} to ${signed(lo + (b + 1) * width)}: ${counts[b]} of ${S} seeds`);
      };
      canvas.onmouseleave = hideTip;
      row.append(el("div", { class: "hcell" }, el("div", { class: "hint", text: `${c.variant} d=${c.dim} T=${c.temperature}` +
                                                             (none ? ` · ${none} without a margin` : "") }), canvas));
      observer.observe(canvas);
    });
    box.append(row);
  });
  return box;
}

// Bars over the shared bins (the tallest bar is the cell's busiest bin), the zero line, the range's ends below.
function drawHistogram(canvas, counts, lo, width, seeds) {
  const W = 180, H = 48, ctx = sizedCanvas(canvas, W, H + 12), top = Math.max(1, ...counts), bw = W / BINS;
  ctx.fillStyle = "#f6f7f9";
  ctx.fillRect(0, 0, W, H);
  ctx.fillStyle = "#57606a";
  ctx.font = "10px system-ui, sans-serif";
  ctx.textAlign = "left";
  ctx.fillText(signed(lo, 2), 0, H + 10);
  ctx.textAlign = "right";
  ctx.fillText(signed(lo + width * BINS, 2), W, H + 10);
  counts.forEach((n, b) => {
    if (!n) return;
    ctx.fillStyle = lo + (b + 1) * width <= 0 ? "#dc2626" : lo + b * width >= 0 ? "#2563eb" : "#9333ea";
    const h = Math.max(1, (H - 2) * n / top);
    ctx.fillRect(b * bw, H - h, bw - 0.5, h);
  });
  const zero = (0 - lo) / (width * BINS) * W;
  if (zero >= 0 && zero <= W) { ctx.fillStyle = "#111"; ctx.fillRect(zero, 0, 1, H); }
  canvas.dataset.drawn = seeds;
}

inflateAll(DATA).then(() => { sweepBuild(); requestAnimationFrame(() => { document.body.dataset.ready = "1"; }); });
