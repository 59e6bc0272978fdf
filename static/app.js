// The page: write (streamed), revise a line, lock lines and rewrite the rest, check a poem. Every text the
// user or the server gives is put on the page with textContent, never as HTML.
"use strict";
const $ = (id) => document.getElementById(id);
const MARKS = "，。？！；、";
const state = { poem: "", settings: {}, cipai: {} };

function splitLines(text) {
  const lines = [];
  let cur = "";
  for (const ch of text) {
    cur += ch;
    if (MARKS.includes(ch)) { lines.push(cur); cur = ""; }
  }
  if (cur) lines.push(cur);
  return lines;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function settings() {
  const s = { start: $("start").value.trim(), temperature: parseFloat($("temperature").value),
              seed: parseInt($("seed").value, 10), candidates: parseInt($("candidates").value, 10),
              rhyme: $("rhyme").checked, tones: $("tones").checked };
  const kw = $("keywords").value.trim(), heads = $("acrostic").value.trim(), shape = $("shape").value;
  if (kw) s.keywords = kw;
  if (heads) s.acrostic = heads;
  if (shape === "free") s.free = true;
  else if (shape === "ci") s.cipai = $("cipai").value;
  else if (shape) { const [f, l] = shape.split(","); s.form = +f; s.lines = +l; }
  return s;
}

function fillForm(params) {
  const get = (k) => params.get(k);
  for (const k of ["start", "keywords", "acrostic", "temperature", "seed", "candidates"]) {
    if (get(k) !== null) $(k).value = get(k);
  }
  $("rhyme").checked = get("rhyme") === "true";
  $("tones").checked = get("tones") === "true";
  if (get("free") === "true") $("shape").value = "free";
  else if (get("cipai")) { $("shape").value = "ci"; state.pendingCipai = get("cipai"); }
  else if (get("form")) $("shape").value = `${get("form")},${get("lines") || 4}`;
  showCipai();
}

function showError(id, message) { $(id).textContent = message || ""; }

async function postJSON(url, body) {
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                               body: JSON.stringify(body) });
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || `error ${r.status}`);
  return data;
}

// ---- write -------------------------------------------------------------------------------------------

async function write(event) {
  if (event) event.preventDefault();
  showError("error", "");
  const s = settings();
  state.settings = s;
  $("write-button").disabled = true;
  $("alternatives").textContent = "";
  $("annotation").textContent = "";
  renderStreaming("");
  try {
    const r = await fetch("/api/write/stream", { method: "POST", headers: { "Content-Type": "application/json" },
                                                  body: JSON.stringify(s) });
    if (!r.ok) { const data = await r.json(); throw new Error(data.error || `error ${r.status}`); }
    const reader = r.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const msg = JSON.parse(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        if (msg.event === "text") renderStreaming(msg.text);
        else if (msg.event === "error") throw new Error(msg.error);
        else if (msg.event === "done") finished(msg);
      }
    }
  } catch (e) {
    showError("error", e.message);
  } finally {
    $("write-button").disabled = false;
  }
}

function renderStreaming(text) {
  const box = $("poem");
  box.textContent = "";
  for (const line of splitLines(text)) box.appendChild(el("div", line, "line streaming"));
}

function finished(msg) {
  state.poem = msg.poem;
  renderPoem();
  const list = $("candidate-list");
  list.textContent = "";
  msg.candidates.forEach((c) => {
    const li = el("li", `${c.poem}  (score ${c.score.toFixed(3)})`);
    li.addEventListener("click", () => { state.poem = c.poem; renderPoem(); });
    list.appendChild(li);
  });
  $("candidates-box").hidden = msg.candidates.length < 2;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(state.settings)) params.set(k, v);
  $("link").href = `?${params.toString()}`;
  history.replaceState(null, "", `?${params.toString()}`);
}

function renderPoem() {
  const box = $("poem");
  box.textContent = "";
  splitLines(state.poem).forEach((line, k) => {
    const row = el("div", undefined, "line");
    row.dataset.line = k + 1;
    const lock = el("input");
    lock.type = "checkbox";
    lock.title = "锁 keep this line";
    lock.setAttribute("aria-label", `锁 keep line ${k + 1}`);
    lock.className = "lock";
    lock.addEventListener("click", (e) => e.stopPropagation());
    row.appendChild(lock);
    row.appendChild(el("span", line, "text"));
    row.addEventListener("click", () => revise(k + 1));
    box.appendChild(row);
  });
  $("actions").hidden = false;
  if ($("annotate").checked) annotate();
}

// ---- revise ------------------------------------------------------------------------------------------

function reviseSettings() {
  const s = {};
  for (const k of ["cipai", "temperature", "seed"]) if (state.settings[k] !== undefined) s[k] = state.settings[k];
  return s;
}

async function revise(line) {
  showError("error", "");
  const list = $("alternatives");
  list.textContent = "";
  list.appendChild(el("li", "…"));
  try {
    const found = await postJSON("/api/revise", { poem: state.poem, line, num: 5, ...reviseSettings() });
    list.textContent = "";
    found.forEach((r) => {
      const li = el("li", `${r.new}  (score ${r.score.toFixed(3)})`);
      li.dataset.poem = r.poem;
      li.addEventListener("click", () => { state.poem = r.poem; list.textContent = ""; renderPoem(); });
      list.appendChild(li);
    });
  } catch (e) {
    list.textContent = "";
    showError("error", e.message);
  }
}

async function rewriteUnlocked() {
  showError("error", "");
  const locks = [...document.querySelectorAll("#poem .lock")].map((c) => c.checked);
  try {
    for (let k = 0; k < locks.length; k++) {
      if (locks[k]) continue;
      const found = await postJSON("/api/revise", { poem: state.poem, line: k + 1, num: 1, ...reviseSettings() });
      if (found.length) state.poem = found[0].poem;
    }
  } catch (e) {
    showError("error", e.message);
  }
  renderPoem();
  document.querySelectorAll("#poem .lock").forEach((c, k) => { c.checked = locks[k]; });
}

// ---- check -------------------------------------------------------------------------------------------

async function annotate() {
  try {
    renderReport(await postJSON("/api/check", { poem: state.poem }), $("annotation"));
  } catch (e) {
    showError("error", e.message);
  }
}

async function checkPoem() {
  showError("check-error", "");
  $("report").textContent = "";
  try {
    renderReport(await postJSON("/api/check", { poem: $("check-text").value }), $("report"));
  } catch (e) {
    showError("check-error", e.message);
  }
}

function renderReport(report, box) {
  box.textContent = "";
  const f = report.form, p = report.pattern, rh = report.rhyme || {};
  let head = f.cipai ? `词 · ${f.cipai}` : f.name;
  if (p) head += `，${p.start}，首句${p.first_line_rhymes ? "入韵" : "不入韵"}`;
  if (rh.group) head += `；${rh.system} ${rh.group}`;
  box.appendChild(el("h3", head));
  const bad = new Map(report.violations.map((v) => [`${v.line}:${v.char}`, v]));
  const rhymeLines = new Set(rh.rhyming_lines || []);
  for (const line of report.lines) {
    const row = el("div", undefined, "annotated");
    row.dataset.line = line.line;
    [...line.text].forEach((ch, i) => {
      const cell = el("span", undefined, "cell");
      cell.dataset.pos = i + 1;
      cell.appendChild(el("span", ch, "char"));
      cell.appendChild(el("span", line.tones[i] || "", "tone"));
      const v = bad.get(`${line.line}:${i + 1}`);
      if (v) { cell.classList.add("bad"); cell.title = `${v.rule}: ${v.message}`; }
      if (rhymeLines.has(line.line) && i === line.text.length - 1) cell.classList.add("rhyme");
      row.appendChild(cell);
    });
    if (line.nll !== undefined) row.appendChild(el("span", `NLL ${line.nll.toFixed(2)}`, "hint"));
    box.appendChild(row);
  }
  const ul = el("ul", undefined, "violations");
  if (report.checked === false) ul.appendChild(el("li", "not a regular form: nothing was checked"));
  else if (!report.violations.length) ul.appendChild(el("li", "合律 keeps every rule it was checked against", "ok"));
  for (const v of report.violations) ul.appendChild(el("li", `第${v.line}句第${v.char}字 ${v.character}：${v.rule} — ${v.message}`));
  box.appendChild(ul);
  for (const n of report.notes) box.appendChild(el("p", n, "hint"));
}

// ---- setup -------------------------------------------------------------------------------------------

function showCipai() {
  const ci = $("shape").value === "ci";
  $("cipai-label").hidden = !ci;
  $("cipai-shape").hidden = !ci;
  const entry = state.cipai[$("cipai").value];
  $("cipai-shape").textContent = ci && entry ? entry.shape : "";
}

async function loadCipai() {
  try {
    const r = await fetch("/api/cipai");
    state.cipai = await r.json();
    for (const name of Object.keys(state.cipai)) $("cipai").appendChild(el("option", name));
    if (state.pendingCipai) $("cipai").value = state.pendingCipai;
  } catch (e) {
    showError("error", "no 词牌 table");
  }
  showCipai();
}

function tab(which) {
  $("write").hidden = which !== "write";
  $("check").hidden = which !== "check";
  $("tab-write").classList.toggle("on", which === "write");
  $("tab-check").classList.toggle("on", which === "check");
}

window.addEventListener("DOMContentLoaded", async () => {
  $("write-form").addEventListener("submit", write);
  $("shape").addEventListener("change", showCipai);
  $("cipai").addEventListener("change", showCipai);
  $("annotate").addEventListener("change", () => { if ($("annotate").checked) annotate(); else $("annotation").textContent = ""; });
  $("rewrite-unlocked").addEventListener("click", rewriteUnlocked);
  $("check-button").addEventListener("click", checkPoem);
  $("tab-write").addEventListener("click", () => tab("write"));
  $("tab-check").addEventListener("click", () => tab("check"));
  const params = new URLSearchParams(location.search);
  fillForm(params);
  await loadCipai();
  if ([...params.keys()].length) write();
});
