/* The slide list: one row per slide with its results, sortable by any column. */
"use strict";

let rows = [];
let sortKey = "name", sortDir = 1;

function cell(row, key) {
  const v = row[key];
  if (key === "name") {
    const td = el("td");
    td.appendChild(el("a", { href: "/view/" + encodeURIComponent(row.name) }, row.name));
    return td;
  }
  if (key === "decision") {
    const cls = row.positive === true ? "positive" : row.positive === false ? "negative" : "muted";
    return el("td", { class: cls }, v == null ? "no results" : v);
  }
  const text = key === "tiles" ? (v == null ? "–" : String(v))
    : key === "fraction" ? percent(v) : fixed(v, 3);
  return el("td", { class: "num" }, text);
}

function render() {
  const keys = ["name", "decision", "fraction", "tiles", "sensitivity", "specificity"];
  const sorted = rows.slice().sort((a, b) => {
    const x = a[sortKey], y = b[sortKey];
    if (x == null && y == null) return 0;
    if (x == null) return 1;   // missing values last, whatever the direction
    if (y == null) return -1;
    return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
  });
  const body = document.querySelector("#slides tbody");
  body.replaceChildren(...sorted.map((row) => {
    const tr = el("tr", { "data-slide": row.name });
    keys.forEach((k) => tr.appendChild(cell(row, k)));
    return tr;
  }));
  document.querySelectorAll("#slides th").forEach((th) => {
    th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none");
  });
}

document.querySelectorAll("#slides th").forEach((th) => th.addEventListener("click", () => {
  sortDir = th.dataset.key === sortKey ? -sortDir : 1;
  sortKey = th.dataset.key;
  render();
}));

fetchJSON("/api/slides").then((data) => {
  rows = data;
  const done = rows.filter((r) => r.has_results).length;
  document.getElementById("summary").textContent =
    `${rows.length} slide(s), ${done} with results. Click a column to sort; a slide to view it.`;
  document.getElementById("slides").hidden = false;
  render();
}).catch((error) => {
  const p = document.getElementById("summary");
  p.textContent = "Could not load the slides: " + error.message;
  p.className = "error";
});
