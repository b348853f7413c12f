"use strict";
// The row table of a rewardctl report.html: rows come from the JSON block #rows-data; the table
// shows them a page at a time (every row is reachable with "show more"), sorted by a column,
// filtered by status, score ranges and text. No network, no library: plain DOM.
(() => {
  const started = performance.now();
  const data = JSON.parse(document.getElementById("rows-data").textContent);
  const rows = data.rows, scores = data.scores, thresholds = data.thresholds, extras = data.extras;
  const PAGE = data.page;
  const RANK = {error: 0, fail: 1, ungraded: 2, pass: 3};
  const $ = (id) => document.getElementById(id);
  const table = $("rows"), tbody = table.tBodies[0];
  const state = {col: null, dir: 1, shown: PAGE, view: []};
  const has = (obj, key) => obj !== null && obj !== undefined && Object.prototype.hasOwnProperty.call(obj, key);
  rows.forEach((r, n) => { r.n = n; });
  // Fixed column widths lay out fast; the text columns share what is left, 9rem each at least.
  const textColumns = data.compare ? 5 : 4;
  table.style.minWidth = (10 + 5.5 * scores.length + 7 * extras.length + 9 * textColumns) + "rem";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  const show = (v) => (v === null || v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v));
  const fmt = (n) => n.toLocaleString("en-US");

  function preview(obj) {
    if (!obj) return "";
    const text = Object.keys(obj).map((k) => k + ": " + show(obj[k])).join("; ");
    return text.length > 90 ? text.slice(0, 89) + "\u2026" : text;
  }

  function flat(v) {
    if (v === null || v === undefined) return "";
    if (typeof v !== "object") return String(v);
    return Object.values(v).map(flat).join("\n");
  }

  function haystack(r) {
    if (r.h === undefined) {
      r.h = [r.k, flat(r.in), flat(r.t), flat(r.p), flat(r.b), r.e || "", r.r || "", flat(r.x)]
        .join("\n").toLowerCase();
    }
    return r.h;
  }

  function value(r, col) {
    if (col === "key") return r.i === undefined ? null : r.i;
    if (col === "status") return RANK[r.s];
    if (col.startsWith("score:")) return r.v[+col.slice(6)];
    if (col.startsWith("extra:")) return has(r.x, extras[+col.slice(6)]) ? r.x[extras[+col.slice(6)]] : null;
    if (col === "e") return r.e === undefined ? null : r.e;
    return preview(r[col]) || null;
  }

  function compare(a, b) {
    if (state.col === null) return RANK[a.s] - RANK[b.s] || a.n - b.n;
    const va = value(a, state.col), vb = value(b, state.col);
    if (va === vb) return a.n - b.n;
    if (va === null || va === undefined) return 1;  // rows without a value go last either way
    if (vb === null || vb === undefined) return -1;
    return (va < vb ? -1 : 1) * state.dir;
  }

  function readFilters() {
    const statuses = new Set(Array.from(document.querySelectorAll("input[name=status]:checked"), (c) => c.value));
    const ranges = [];
    scores.forEach((_, j) => {
      const lo = parseFloat($("min-" + j).value), hi = parseFloat($("max-" + j).value);
      if (!isNaN(lo) || !isNaN(hi)) ranges.push([j, isNaN(lo) ? -Infinity : lo, isNaN(hi) ? Infinity : hi]);
    });
    return {statuses, ranges, text: $("search").value.trim().toLowerCase()};
  }

  function matches(r, f) {
    if (!f.statuses.has(r.s)) return false;
    for (const [j, lo, hi] of f.ranges) {
      const v = r.v[j];
      if (v === null || v < lo || v > hi) return false;
    }
    return !f.text || haystack(r).includes(f.text);
  }

  function apply() {
    const t0 = performance.now();
    const f = readFilters();
    state.view = rows.filter((r) => matches(r, f));
    state.view.sort(compare);
    state.shown = PAGE;
    render();
    document.body.dataset.applyMs = (performance.now() - t0).toFixed(1);
  }

  function render() {
    tbody.textContent = "";
    appendRows(0, Math.min(state.shown, state.view.length));
    updateCount();
  }

  function appendRows(from, to) {
    const frag = document.createDocumentFragment();
    for (let n = from; n < to; n++) frag.appendChild(rowElement(state.view[n]));
    tbody.appendChild(frag);
  }

  function more(all) {
    const from = Math.min(state.shown, state.view.length);
    state.shown = all ? state.view.length : state.shown + PAGE;
    appendRows(from, Math.min(state.shown, state.view.length));
    updateCount();
  }

  function updateCount() {
    const n = state.view.length, on = Math.min(state.shown, n);
    $("count").textContent = "showing " + fmt(n) + " of " + fmt(rows.length) + " rows";
    $("on-screen").textContent = n ? "rows 1\u2013" + fmt(on) + " on screen" : "no row matches";
    $("more").hidden = $("all").hidden = on >= n;
    $("more").textContent = "show " + fmt(Math.min(PAGE, n - on)) + " more";
  }

  function rowElement(r) {
    const tr = el("tr", "row " + r.s);
    tr.tabIndex = 0;
    tr.dataset.n = r.n;
    tr.setAttribute("aria-expanded", "false");
    tr.appendChild(el("td", "key", r.k));
    tr.appendChild(el("td")).appendChild(el("span", "badge " + r.s, r.s));
    scores.forEach((name, j) => {
      const v = r.v[j];
      const low = v !== null && has(thresholds, name) && v < thresholds[name];
      tr.appendChild(el("td", "num" + (low ? " low" : ""), v === null ? "\u2013" : v.toFixed(3)));
    });
    extras.forEach((name) => tr.appendChild(el("td", "label", has(r.x, name) ? r.x[name] : "")));
    for (const key of data.compare ? ["in", "t", "b", "p"] : ["in", "t", "p"]) {
      tr.appendChild(el("td", "text", preview(r[key])));
    }
    tr.appendChild(el("td", "text", r.e || ""));
    return tr;
  }

  function toggle(tr) {
    const next = tr.nextElementSibling;
    if (next && next.classList.contains("details")) {
      next.remove();
      tr.classList.remove("open");
      tr.setAttribute("aria-expanded", "false");
      return;
    }
    const td = el("td");
    td.colSpan = tr.children.length;
    td.appendChild(details(rows[+tr.dataset.n]));
    const row = el("tr", "details");
    row.appendChild(td);
    tr.after(row);
    tr.classList.add("open");
    tr.setAttribute("aria-expanded", "true");
  }

  function details(r) {
    const box = el("div", "detail");
    box.appendChild(el("h4", "", "outputs"));
    box.appendChild(outputsTable(r));
    if (r.in) {
      box.appendChild(el("h4", "", "inputs"));
      box.appendChild(inputsTable(r.in));
    }
    if (r.e) box.append(el("h4", "", "error"), el("pre", "error", r.e));
    if (r.r) box.append(el("h4", "", "raw reply"), el("pre", "raw", r.r));
    const list = el("p", "scores");
    scores.forEach((name, j) => list.appendChild(el("span", "", name + ": " + (r.v[j] === null ? "\u2013" : r.v[j]))));
    Object.keys(r.x || {}).forEach((name) => list.appendChild(el("span", "", name + ": " + r.x[name])));
    box.appendChild(list);
    return box;
  }

  function outputsTable(r) {
    const fields = new Set([...Object.keys(r.t || {}), ...Object.keys(r.b || {}), ...Object.keys(r.p || {})]);
    const diff = new Set(r.d || []), diffBase = new Set(r.db || []), changed = new Set(r.dc || []);
    const out = el("table", "fields outputs");
    const head = out.appendChild(el("tr"));
    const labels = data.compare ? ["field", "y_true", "y_pred (base)", "y_pred (new)"] : ["field", "y_true", "y_pred"];
    labels.forEach((label) => head.appendChild(el("th", "", label)));
    for (const f of fields) {
      const tr = out.appendChild(el("tr", diff.has(f) ? "diff" : ""));
      tr.dataset.field = f;
      const name = tr.appendChild(el("td", "field", f));
      if (diff.has(f)) name.appendChild(el("span", "mark", " \u2260 y_true"));
      if (changed.has(f)) name.appendChild(el("span", "mark changed", " \u2260 base"));
      tr.appendChild(cell(r.t, f, ""));
      if (data.compare) tr.appendChild(cell(r.b, f, diffBase.has(f) ? "diff" : ""));
      tr.appendChild(cell(r.p, f, (diff.has(f) ? "diff" : "") + (changed.has(f) ? " changed" : "")));
    }
    return out;
  }

  function cell(obj, f, cls) {
    return has(obj, f) ? el("td", "value " + cls, show(obj[f])) : el("td", "value missing " + cls, "\u2014");
  }

  function inputsTable(inputs) {
    const out = el("table", "fields inputs");
    for (const f of Object.keys(inputs)) {
      const tr = out.appendChild(el("tr"));
      tr.appendChild(el("td", "field", f));
      tr.appendChild(el("td", "value", show(inputs[f])));
    }
    return out;
  }

  function sortBy(th) {
    const col = th.dataset.col;
    if (state.col === col) state.dir = -state.dir;
    else { state.col = col; state.dir = 1; }
    table.tHead.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
    state.view.sort(compare);
    state.shown = PAGE;
    render();
  }

  function reset() {
    $("filters").reset();
    state.col = null;
    state.dir = 1;
    table.tHead.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
    apply();
  }

  function pickBin(bar) {
    $("min-" + bar.dataset.score).value = bar.dataset.lo;
    $("max-" + bar.dataset.score).value = bar.dataset.hi;
    apply();
    $("rows-section").scrollIntoView();
  }

  let timer = null;
  const later = () => { clearTimeout(timer); timer = setTimeout(apply, 150); };
  const rowOf = (target) => (target instanceof Element ? target.closest("tr.row") : null);
  $("filters").addEventListener("input", later);
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });
  $("clear").addEventListener("click", reset);
  $("more").addEventListener("click", () => more(false));
  $("all").addEventListener("click", () => more(true));
  table.tHead.addEventListener("click", (ev) => { const th = ev.target.closest("th[data-col]"); if (th) sortBy(th); });
  table.tHead.addEventListener("keydown", (ev) => {
    const th = ev.target.closest("th[data-col]");
    if (th && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); sortBy(th); }
  });
  tbody.addEventListener("click", (ev) => {
    const tr = rowOf(ev.target);
    if (tr && !String(window.getSelection())) toggle(tr);
  });
  tbody.addEventListener("keydown", (ev) => {
    if ((ev.key === "Enter" || ev.key === " ") && ev.target.matches("tr.row")) { ev.preventDefault(); toggle(ev.target); }
  });
  $("distributions").addEventListener("click", (ev) => {
    const bar = ev.target.closest("rect.bar");
    if (bar) pickBin(bar);
  });
  apply();
  document.body.dataset.firstRowsMs = performance.now().toFixed(1);
  document.body.dataset.scriptMs = (performance.now() - started).toFixed(1);
  document.body.dataset.ready = "1";
})();
