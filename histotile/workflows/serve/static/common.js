/* Helpers shared by the pages: JSON fetch with clear errors, viridis, formatting. */
"use strict";

async function fetchJSON(url, options) {
  const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options || {}));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : response.statusText;
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return body;
}

// Viridis (matplotlib's), 9 stops; colour-blind safe and ordered in lightness.
const VIRIDIS = [[68, 1, 84], [71, 45, 123], [59, 82, 139], [44, 114, 142], [33, 145, 140],
                 [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

function viridis(value) {
  const v = Math.min(1, Math.max(0, value)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(v));
  const t = v - i;
  const a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * t));
}

function percent(value) { return value == null ? "–" : (100 * value).toFixed(1) + " %"; }
function fixed(value, digits) { return value == null ? "–" : Number(value).toFixed(digits); }

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  if (text != null) node.textContent = text;
  return node;
}
