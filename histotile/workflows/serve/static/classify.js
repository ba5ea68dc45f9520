/* The classify page: upload, then the per-patch heatmap over the image, the class
   probabilities and the patch-majority verdict, recomputed live as the threshold moves. */
"use strict";

const $ = (id) => document.getElementById(id);
let result = null, picture = null;

fetchJSON("/api/model").then((m) => {
  $("model-note").textContent = `Model ${m.name} (${m.architecture}): classes ${m.classes.join(", ")}; ` +
    `positive class ${m.positive_class}; ${m.patch_size} px patches every ${m.step} px, as in training; ` +
    `threshold ${m.threshold.toFixed(2)} (${m.threshold_source}).`;
  $("threshold").value = m.threshold;  /* the card's operating point, else 0.5 */
  $("threshold-value").textContent = Number(m.threshold).toFixed(2);
}).catch((error) => { $("model-note").textContent = "No model: " + error.message; $("submit").disabled = true; });

function verdict(threshold) {
  const column = result.positive_class;
  const p = result.probabilities.map((patch) => patch.probabilities[column]);
  const positive = p.filter((v) => v >= threshold).length;
  const share = p.length ? positive / p.length : 0;
  const others = result.classes.filter((c) => c !== column);
  const negative = others.length === 1 ? others[0] : "not " + column;
  const label = share > 0.5 ? column : negative;
  const node = $("verdict");
  node.dataset.label = label;
  node.className = share > 0.5 ? "positive" : "negative";
  node.textContent = `${label}: ${positive} of ${p.length} patches with ${column} ≥ ${threshold.toFixed(2)} (${percent(share)})`;
}

function drawImage(threshold) {
  const canvas = $("image-canvas");
  canvas.width = picture.naturalWidth; canvas.height = picture.naturalHeight;
  canvas.classList.toggle("small", canvas.width < 480);  // small tiles shown enlarged
  const ctx = canvas.getContext("2d");
  ctx.drawImage(picture, 0, 0);
  // Patches overlap (half a patch apart): colour each step-sized cell by the mean
  // probability of the patches covering it.
  const step = result.step, column = result.positive_class;
  const cols = Math.ceil(result.image.width / step), rows = Math.ceil(result.image.height / step);
  const sum = new Float32Array(cols * rows), count = new Uint16Array(cols * rows);
  for (const patch of result.probabilities) {
    const [x, y, w, h] = patch.box;
    for (let r = y / step; r < Math.min(rows, (y + h) / step); r++)
      for (let c = x / step; c < Math.min(cols, (x + w) / step); c++) {
        sum[r * cols + c] += patch.probabilities[column]; count[r * cols + c] += 1;
      }
  }
  ctx.globalAlpha = 0.5;
  for (let i = 0; i < sum.length; i++) {
    if (!count[i]) continue;
    const value = sum[i] / count[i];
    if (value < threshold) continue;
    const rgb = viridis(value);
    ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
    ctx.fillRect((i % cols) * step, Math.floor(i / cols) * step, step, step);
  }
  ctx.globalAlpha = 1;
}

/* The class each patch counts for at the threshold, as the server's fractions: the
   positive class when its probability reaches the threshold, else the likeliest other. */
function patchesWon(threshold) {
  const column = result.positive_class;
  const won = Object.fromEntries(result.classes.map((c) => [c, 0]));
  for (const patch of result.probabilities) {
    const p = patch.probabilities;
    let winner = column;
    if (p[column] < threshold) {
      winner = null;
      for (const c of result.classes) if (c !== column && (winner === null || p[c] > p[winner])) winner = c;
      if (winner === null) winner = column;
    }
    won[winner] += 1;
  }
  return won;
}

function show() {
  const threshold = Number($("threshold").value);
  $("threshold-value").textContent = threshold.toFixed(2);
  if (!result) return;
  verdict(threshold);
  drawImage(threshold);
  drawLegend($("legend"), "continuous", threshold);
  const body = document.querySelector("#class-table tbody");
  const won = patchesWon(threshold), n = result.probabilities.length;
  body.replaceChildren(...result.classes.map((c) => {
    const mean = result.probabilities.reduce((s, p) => s + p.probabilities[c], 0) / result.probabilities.length;
    const tr = el("tr", { "data-class": c });
    tr.append(el("td", {}, c), el("td", { class: "num" }, mean.toFixed(3)), el("td", { class: "num" }, `${won[c]} of ${n} (${percent(n ? won[c] / n : 0)})`));
    return tr;
  }));
  $("patch-note").textContent = `${result.probabilities.length} patches of ${result.patch_size} px on a ` +
    `${result.image.width} × ${result.image.height} px image; the heatmap shows ${result.positive_class}.`;
}

$("threshold").addEventListener("input", show);
$("classify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  $("error").textContent = "";
  if (!file) { $("error").textContent = "Choose an image first."; return; }
  const form = new FormData();
  form.append("file", file);
  form.append("threshold", $("threshold").value);
  $("submit").disabled = true;
  try {
    result = await fetchJSON("/api/classify", { method: "POST", body: form });
    picture = new Image();
    // Browsers do not draw TIFF: fall back to the grey outline when it cannot be shown.
    await new Promise((resolve) => { picture.onload = resolve; picture.onerror = resolve; picture.src = URL.createObjectURL(file); });
    if (!picture.naturalWidth) {
      const blank = document.createElement("canvas");
      blank.width = result.image.width; blank.height = result.image.height;
      picture = await new Promise((resolve) => { const i = new Image(); i.onload = () => resolve(i); i.src = blank.toDataURL(); });
    }
    $("result").hidden = false;
    show();
  } catch (error) {
    $("error").textContent = `Refused (${error.status || "network"}): ${error.message}`;
    $("result").hidden = true;
  }
  $("submit").disabled = false;
});
