/* The heatmap, drawn in the browser from the run's tile predictions (not a burned-in
   image): one cell per grid step in an offscreen canvas, scaled onto a canvas laid over
   OpenSeadragon in image (level-0 px) coordinates. Recolouring touches only the small
   offscreen canvas, so threshold and class changes are live even for 100k tiles. */
"use strict";

class Heatmap {
  constructor(data) {
    this.data = data;
    const n = data.x.length;
    // The grid step: the smallest gap between tile origins (tiles may overlap), else extent.
    let step = Infinity;
    const xs = Array.from(new Set(data.x)).sort((a, b) => a - b);
    const ys = Array.from(new Set(data.y)).sort((a, b) => a - b);
    for (const list of [xs, ys]) for (let i = 1; i < list.length; i++) step = Math.min(step, list[i] - list[i - 1]);
    let minExtent = n ? Infinity : 1;  // a loop: spreading 100k values overflows the stack
    for (let i = 0; i < n; i++) minExtent = Math.min(minExtent, data.extent[i]);
    this.step = Math.max(1, Math.min(step, minExtent));
    this.cols = Math.max(1, Math.ceil(data.dimensions[0] / this.step));
    this.rows = Math.max(1, Math.ceil(data.dimensions[1] / this.step));
    this.canvas = document.createElement("canvas");
    this.canvas.width = this.cols;
    this.canvas.height = this.rows;
    // Which tile covers each cell (the last one drawn, as on the canvas); -1 for none.
    this.owner = new Int32Array(this.cols * this.rows).fill(-1);
    for (let i = 0; i < n; i++) {
      const c0 = Math.floor(data.x[i] / this.step), r0 = Math.floor(data.y[i] / this.step);
      const span = Math.max(1, Math.round(data.extent[i] / this.step));
      for (let r = r0; r < Math.min(this.rows, r0 + span); r++)
        for (let c = c0; c < Math.min(this.cols, c0 + span); c++) this.owner[r * this.cols + c] = i;
    }
  }

  /* Recolour: continuous (viridis of p) or thresholded (one colour), tiles under the
     threshold transparent in both modes. Returns the positive share. */
  paint(className, mode, threshold) {
    const p = this.data.probabilities[className];
    const ctx = this.canvas.getContext("2d");
    const image = ctx.createImageData(this.cols, this.rows);
    const out = image.data;
    const top = viridis(1);
    for (let cell = 0; cell < this.owner.length; cell++) {
      const i = this.owner[cell];
      if (i < 0 || p[i] < threshold) continue;
      const rgb = mode === "continuous" ? viridis(p[i]) : top;
      out[cell * 4] = rgb[0]; out[cell * 4 + 1] = rgb[1]; out[cell * 4 + 2] = rgb[2]; out[cell * 4 + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    let positive = 0;
    for (let i = 0; i < p.length; i++) if (p[i] >= threshold) positive++;
    return p.length ? positive / p.length : 0;
  }

  tileAt(x, y) {
    const c = Math.floor(x / this.step), r = Math.floor(y / this.step);
    if (c < 0 || r < 0 || c >= this.cols || r >= this.rows) return -1;
    return this.owner[r * this.cols + c];
  }
}

function drawLegend(canvas, mode, threshold) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, bar = 16;
  ctx.clearRect(0, 0, w, h);
  for (let x = 0; x < w; x++) {
    const v = x / (w - 1);
    const rgb = mode === "continuous" ? viridis(v) : viridis(1);
    ctx.fillStyle = v < threshold ? "#ffffff" : `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
    ctx.fillRect(x, 0, 1, bar);
  }
  ctx.strokeStyle = "#444"; ctx.strokeRect(0.5, 0.5, w - 1, bar - 1);
  const tx = Math.round(threshold * (w - 1));
  ctx.fillStyle = "#000"; ctx.fillRect(tx - 1, 0, 2, bar + 4);
  ctx.font = "11px sans-serif"; ctx.textBaseline = "top";
  ctx.textAlign = "left"; ctx.fillText("0", 0, bar + 6);
  ctx.textAlign = "right"; ctx.fillText("1", w, bar + 6);
  ctx.textAlign = "center";
  ctx.fillText(`probability (hidden < ${threshold.toFixed(2)})`, w / 2, bar + 6);
}

function niceLength(raw) {
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [5, 2, 1]) if (m * power <= raw) return m * power;
  return power;
}
