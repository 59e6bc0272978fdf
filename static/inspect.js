// The 看 Inspect tab: what the Tang model's LSTM cells do while it reads a poem (POST /api/inspect). One row a
// chosen cell, one box a character coloured by the cell's state after reading it (red positive, blue negative,
// each row scaled to its largest |value|); a box's title shows the gates i, f, o there and the character's
// probability. The study's named cells come as presets. Uses app.js's $, el, postJSON and state (the poem just
// written); every text the user or the server gives goes onto the page as textContent, never as markup.
"use strict";
const inspecting = { presets: [], layers: 0 };

function showInspectTab(on) {
  $("inspect").hidden = !on;
  $("tab-inspect").classList.toggle("on", on);
  if (!on) return;
  for (const other of ["write", "check"]) {
    $(other).hidden = true;
    $(`tab-${other}`).classList.remove("on");
  }
  if (!$("inspect-text").value.trim()) $("inspect-text").value = state.poem || $("inspect-text").placeholder;
  if (!$("inspect-grid").childElementCount) inspectPoem();
}

function colour(v) {               // v in [-1, 1] -> white to red (positive) or blue (negative)
  const t = Math.min(1, Math.abs(v));
  const [r, g, b] = v >= 0 ? [178, 24, 43] : [33, 102, 172];
  const mix = (c) => Math.round(255 + (c - 255) * t);
  return `rgb(${mix(r)}, ${mix(g)}, ${mix(b)})`;
}

function inspectRequest() {
  const body = { poem: $("inspect-text").value, layer: parseInt($("inspect-layer").value, 10) || 0,
                 state: $("inspect-state").value };
  const cells = $("inspect-cells").value.split(/[,，\s]+/).filter((s) => s !== "");
  if (cells.length) {
    if (cells.some((s) => !/^\d+$/.test(s))) throw new Error("细胞 cells: numbers separated by commas, e.g. 12,87");
    body.cells = cells.map((s) => parseInt(s, 10));
  }
  return body;
}

async function inspectPoem() {
  showError("inspect-error", "");
  try {
    const answer = await postJSON("/api/inspect", inspectRequest());
    renderInspection(answer);
  } catch (e) {
    showError("inspect-error", e.message);
  }
}

function renderInspection(a) {
  fillInspectChoices(a);
  const grid = $("inspect-grid");
  grid.textContent = "";
  const head = el("div", undefined, "inspect-row probs");
  head.appendChild(el("span", "p(字)", "label"));
  for (let k = 1; k < a.chars.length; k++) {
    const box = el("span", a.chars[k], "box");
    box.style.backgroundColor = `rgba(35, 139, 69, ${a.prob[k - 1].toFixed(3)})`;
    box.title = `${a.chars[k]}  p = ${(100 * a.prob[k - 1]).toFixed(1)}%`;
    head.appendChild(box);
  }
  grid.appendChild(head);
  for (const cell of a.cells) grid.appendChild(cellRow(a, cell));
  $("inspect-source").textContent = `层 layer ${a.layer} of ${a.layers}, ${a.state}_t, ${a.cells.length} 细胞 cells: ${a.source}` +
    (a.formats === "poem" ? "; format inputs from the poem" : "");
  $("inspect-gates").textContent = a.gates.map((g) => `layer ${g.layer}: ` + ["i", "f", "o"].map((k) =>
    `${k} ${g[k].mean.toFixed(2)} (<0.1 ${(100 * g[k].low).toFixed(0)}%, >0.9 ${(100 * g[k].high).toFixed(0)}%)`).join("  ")).join(" · ");
}

function cellRow(a, cell) {
  const row = el("div", undefined, "inspect-row cells");
  row.dataset.cell = cell.cell;
  row.appendChild(el("span", `#${cell.cell} ${cell.label}`.trim(), "label"));
  const scale = Math.max(1e-9, ...cell.values.slice(1).map(Math.abs));
  for (let k = 1; k < a.chars.length; k++) {
    const box = el("span", a.chars[k], "box");
    const v = cell.values[k] / scale;
    box.style.backgroundColor = colour(v);
    if (Math.abs(v) > 0.6) box.style.color = "#fff";
    box.title = `${a.chars[k]}  ${a.state} = ${cell.values[k].toFixed(3)}  i = ${cell.i[k].toFixed(2)}  ` +
      `f = ${cell.f[k].toFixed(2)}  o = ${cell.o[k].toFixed(2)}  p = ${(100 * a.prob[k - 1]).toFixed(1)}%`;
    row.appendChild(box);
  }
  return row;
}

function fillInspectChoices(a) {
  if (a.layers !== inspecting.layers) {
    inspecting.layers = a.layers;
    const layer = $("inspect-layer");
    const keep = layer.value;
    layer.textContent = "";
    layer.appendChild(el("option", "最后 last")).value = "0";
    for (let l = 1; l <= a.layers; l++) layer.appendChild(el("option", String(l))).value = String(l);
    layer.value = keep;
  }
  if (a.presets.length && !inspecting.presets.length) {
    inspecting.presets = a.presets;
    a.presets.forEach((p, k) => { $("inspect-preset").appendChild(el("option", p.name)).value = String(k); });
  }
}

function usePreset() {
  const p = inspecting.presets[parseInt($("inspect-preset").value, 10)];
  if (!p) return;
  $("inspect-layer").value = String(p.layer);
  $("inspect-cells").value = p.cells.join(",");
  inspectPoem();
}

window.addEventListener("DOMContentLoaded", () => {
  $("tab-inspect").addEventListener("click", () => showInspectTab(true));
  $("tab-write").addEventListener("click", () => showInspectTab(false));
  $("tab-check").addEventListener("click", () => showInspectTab(false));
  $("inspect-button").addEventListener("click", inspectPoem);
  $("inspect-preset").addEventListener("change", usePreset);
  $("inspect-written").addEventListener("click", () => {
    if (state.poem) { $("inspect-text").value = state.poem; inspectPoem(); }
    else showError("inspect-error", "还没有写诗 no poem written yet: write one in the 写 tab");
  });
});
