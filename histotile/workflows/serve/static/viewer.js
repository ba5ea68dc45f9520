/* The slide viewer: OpenSeadragon for the slide, overlay.js's heatmap and the
   annotation drawn on a canvas above it, a probe, a scale bar and the run button. */
"use strict";

const slideName = decodeURIComponent(location.pathname.split("/").pop());
const $ = (id) => document.getElementById(id);
const state = { heatmap: null, annotation: null, annotationImage: null, pinned: -1,
                mpp: null, dims: null };
window.histotileViewer = { ready: false, drawn: false, overlayDrawn: 0, viewer: null };

const viewer = OpenSeadragon({
  id: "viewer",
  prefixUrl: "/static/vendor/openseadragon/images/",
  tileSources: "/slides/" + encodeURIComponent(slideName) + ".dzi",
  showNavigator: true,
  navigatorPosition: "TOP_RIGHT",
  maxZoomPixelRatio: 2,
  crossOriginPolicy: false,
  // A click keeps the tile under the pointer (canvas-click below); zoom is the wheel,
  // a double click and the buttons.
  gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
});
window.histotileViewer.viewer = viewer;
// The overlay canvas goes inside OpenSeadragon's drawing area: above the slide, below
// the navigator and the zoom buttons.
viewer.canvas.appendChild($("overlay"));
viewer.addHandler("open", () => { window.histotileViewer.ready = true; });
// Raised by every drawer (WebGL and canvas alike), unlike "tile-drawn" (canvas only).
viewer.addHandler("tiled-image-drawn", (event) => {
  if (event.tiles && event.tiles.length) window.histotileViewer.drawn = true;
});
viewer.addHandler("open-failed", (e) => { $("info").textContent = "Cannot open the slide: " + e.message; });

function imageToScreen(x, y) {
  return viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
}

function redraw() {
  const canvas = $("overlay");
  const stage = viewer.canvas;
  const ratio = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(stage.clientWidth * ratio) || canvas.height !== Math.round(stage.clientHeight * ratio)) {
    canvas.width = Math.round(stage.clientWidth * ratio);
    canvas.height = Math.round(stage.clientHeight * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!viewer.world.getItemCount()) return;
  const [width, height] = state.dims || [0, 0];
  const a = imageToScreen(0, 0), b = imageToScreen(width, height);
  if (state.annotationImage && $("annotation-toggle").checked) {
    ctx.globalAlpha = 0.7;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(state.annotationImage, a.x, a.y, b.x - a.x, b.y - a.y);
  }
  if (state.annotation && $("annotation-toggle").checked) drawGeoJSON(ctx);
  const h = state.heatmap;
  if (h && $("heatmap-toggle").checked) {
    ctx.globalAlpha = Number($("opacity").value);
    ctx.imageSmoothingEnabled = false;
    const c = imageToScreen(h.cols * h.step, h.rows * h.step);
    ctx.drawImage(h.canvas, a.x, a.y, c.x - a.x, c.y - a.y);
    window.histotileViewer.overlayDrawn += 1;
  }
  ctx.globalAlpha = 1;
  drawPinned(ctx);
  drawScaleBar();
}

function drawGeoJSON(ctx) {
  ctx.globalAlpha = 1;
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#0072b2";  // Okabe-Ito blue: apart from viridis and from H&E
  const features = state.annotation.features || [state.annotation];
  for (const feature of features) {
    const g = feature.geometry || {};
    const polygons = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
    for (const rings of polygons) for (const ring of rings) {
      ctx.beginPath();
      ring.forEach(([x, y], i) => { const p = imageToScreen(x, y); i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y); });
      ctx.closePath(); ctx.stroke();
    }
  }
}

function drawPinned(ctx) {
  const h = state.heatmap;
  if (!h || state.pinned < 0) return;
  const d = h.data, i = state.pinned;
  const a = imageToScreen(d.x[i], d.y[i]), b = imageToScreen(d.x[i] + d.extent[i], d.y[i] + d.extent[i]);
  ctx.lineWidth = 2; ctx.strokeStyle = "#d55e00";
  ctx.strokeRect(a.x, a.y, b.x - a.x, b.y - a.y);
}

function drawScaleBar() {
  const box = $("scalebar");
  if (!state.mpp || !viewer.world.getItemCount()) { box.hidden = true; return; }
  const zoom = viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
  const micronsPerPixel = state.mpp / zoom;  // microns per screen (CSS) pixel
  const length = niceLength(120 * micronsPerPixel);
  box.hidden = false;
  box.querySelector(".bar").style.width = Math.round(length / micronsPerPixel) + "px";
  box.querySelector("span").textContent = length >= 1000 ? `${length / 1000} mm` : `${length} µm`;
}

function repaint() {
  const h = state.heatmap;
  const threshold = Number($("threshold").value);
  $("threshold-value").textContent = threshold.toFixed(2);
  showOpacity();
  drawLegend($("legend"), $("mode").value, threshold);
  if (h) {
    const share = h.paint($("class-select").value, $("mode").value, threshold);
    $("positive-share").textContent = `${percent(share)} of ${h.data.x.length} tiles at or above the threshold`;
  }
  redraw();
}

function probe(index) {
  const h = state.heatmap;
  if (!h || index < 0) { $("probe").textContent = "No tile here."; return; }
  const d = h.data;
  const lines = d.classes.map((c) => `${c}: ${d.probabilities[c][index].toFixed(3)}`);
  $("probe").textContent = `tile at (${d.x[index]}, ${d.y[index]}), ${d.extent[index]} px\n` + lines.join("\n");
  $("probe").style.whiteSpace = "pre";
}

function pointerTile(event) {
  const h = state.heatmap;
  if (!h) return -1;
  const p = viewer.viewport.viewerElementToImageCoordinates(event.position);
  return h.tileAt(p.x, p.y);
}

new OpenSeadragon.MouseTracker({
  element: viewer.element,
  moveHandler: (event) => { if (state.pinned < 0) probe(pointerTile(event)); },
});
// A quick click (not the end of a drag) keeps the tile under it, or lets it go.
viewer.addHandler("canvas-click", (event) => {
  if (!event.quick) return;
  event.preventDefaultAction = true;
  const i = pointerTile(event);
  state.pinned = state.pinned === i || i < 0 ? -1 : i;
  probe(i);
  redraw();
});

["animation", "update-viewport", "resize", "open"].forEach((name) => viewer.addHandler(name, redraw));
function showOpacity() { $("opacity-value").textContent = Number($("opacity").value).toFixed(2); }
$("opacity").addEventListener("input", () => { showOpacity(); redraw(); });
["heatmap-toggle", "annotation-toggle"].forEach((id) => $(id).addEventListener("input", redraw));
["class-select", "mode", "threshold"].forEach((id) => $(id).addEventListener("input", repaint));

async function loadPredictions() {
  try {
    const data = await fetchJSON(`/api/slides/${encodeURIComponent(slideName)}/predictions`);
    state.heatmap = new Heatmap(data);
    const select = $("class-select");
    select.replaceChildren(...data.classes.map((c) => el("option", { value: c }, c)));
    select.value = data.positive_class;
    $("heatmap-controls").disabled = false;
    $("job-controls").hidden = true;
    repaint();
  } catch (error) {
    if (error.status !== 404) { $("info").textContent = "Predictions: " + error.message; return; }
    offerRun();
  }
}

async function offerRun() {
  try { await fetchJSON("/api/model"); } catch (e) { return; }
  $("job-controls").hidden = false;
}

$("run-button").addEventListener("click", async () => {
  $("run-button").disabled = true;
  try {
    const request = { slide: slideName };
    const level = $("run-level").value, magnification = $("run-magnification").value;
    if (level !== "") request.level = Number(level);
    if (magnification !== "") request.magnification = Number(magnification);
    let job = await fetchJSON("/api/runs", { method: "POST", headers: { "content-type": "application/json" },
                                             body: JSON.stringify(request) });
    while (job.state === "queued" || job.state === "running") {
      $("job-status").textContent = `${job.state}: ${job.stage}` + (job.seconds != null ? ` (${job.seconds.toFixed(0)} s)` : "");
      await new Promise((resolve) => setTimeout(resolve, 1000));
      job = await fetchJSON(`/api/runs/${job.id}`);
    }
    $("job-status").textContent = job.state === "done" ? `done: ${job.decision}` : `failed: ${job.error}`;
    if (job.state === "done") { loadPredictions(); loadDetail(); }
  } catch (error) {
    $("job-status").textContent = "Could not start: " + error.message;
  }
  $("run-button").disabled = false;
});

async function loadAnnotation(kind) {
  const url = `/api/slides/${encodeURIComponent(slideName)}/annotation`;
  if (kind === "geojson") {
    state.annotation = await fetchJSON(url);
  } else {
    const image = new Image();
    await new Promise((resolve, reject) => { image.onload = resolve; image.onerror = reject; image.src = url; });
    state.annotationImage = image;
  }
  $("annotation-controls").disabled = false;
  $("annotation-note").textContent = kind === "geojson" ? "GeoJSON outlines (blue)" : "painted overlay / mask";
  redraw();
}

async function loadDetail() {
  const detail = await fetchJSON(`/api/slides/${encodeURIComponent(slideName)}`);
  state.mpp = detail.mpp;
  state.dims = detail.dimensions;
  document.title = "histotile: " + slideName;
  $("title").textContent = slideName;
  const r = detail.results;
  $("decision").textContent = r && r.decision ? "Decision: " + r.decision : "no results yet";
  $("decision").className = r && r.positive ? "positive" : "muted";
  $("info").textContent = `${detail.dimensions[0]} × ${detail.dimensions[1]} px, ${detail.levels.length} level(s), ` +
    (detail.mpp ? `${detail.mpp.toFixed(3)} µm/px` : "no mpp (no scale bar)") + `, ${detail.vendor}`;
  if (detail.annotation && !state.annotation && !state.annotationImage) loadAnnotation(detail.annotation);
  redraw();
  return detail;
}

// Predictions only where the results folder has them (no 404 in the console otherwise).
loadDetail().then((detail) => (detail.results && detail.results.has_results ? loadPredictions() : offerRun()))
  .catch((error) => { $("info").textContent = error.message; });
