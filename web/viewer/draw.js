// Canvas drawing for the attention viewer: colour scale, matrix heatmap, thumbnails and
// the head view (token-to-token lines). No dependencies; used by viewer.js.
'use strict';

// Inferno-like map: its luminance rises monotonically, so a brighter cell is a larger weight.
const INFERNO = [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
                 [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]];
const LUT = (() => {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (INFERNO.length - 1), k = Math.min(Math.floor(x), INFERNO.length - 2), f = x - k;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(INFERNO[k][c] * (1 - f) + INFERNO[k + 1][c] * f);
  }
  return lut;
})();

// Weight -> [0, 1]. Linear: w / vmax. Log: log10 between lo = vmax * 1e-4 and vmax.
function makeScale(vmax, log) {
  if (!(vmax > 0)) vmax = 1;
  if (!log) return (w) => Math.min(1, Math.max(0, w / vmax));
  const lo = Math.log10(vmax * 1e-4), span = Math.log10(vmax) - lo;
  return (w) => (w <= 0 ? 0 : Math.min(1, Math.max(0, (Math.log10(w) - lo) / span)));
}

function maxOf(a, from = 0) {
  let m = 0;
  for (let i = from; i < a.length; i++) if (a[i] > m) m = a[i];
  return m;
}

// The top of the colour scale: the largest weight, leaving out the first query row of
// causal attention (its only weight is always 1, which would darken every other row);
// cells above it get the top colour.
function scaleTop(cells, rows, cols, causal) {
  const top = causal && rows > 1 ? maxOf(cells, cols) : maxOf(cells);
  return top > 0 ? top : maxOf(cells);
}

// Sizes a canvas to css width x height and its backing store to devicePixelRatio (at most
// maxDpr: very tall canvases stay at one pixel per CSS pixel, which keeps them fast).
function sizeCanvas(canvas, width, height, maxDpr = 4) {
  const dpr = Math.min(window.devicePixelRatio || 1, maxDpr);
  canvas.style.width = width + 'px';
  canvas.style.height = height + 'px';
  canvas.width = Math.max(1, Math.round(width * dpr));
  canvas.height = Math.max(1, Math.round(height * dpr));
  return dpr;
}

// The LUT as whole RGBA pixels in the machine's byte order (ImageData bytes are R, G, B, A).
const LUT32 = (() => {
  const bytes = new Uint8Array(256 * 4);
  for (let i = 0; i < 256; i++) bytes.set([LUT[3 * i], LUT[3 * i + 1], LUT[3 * i + 2], 255], 4 * i);
  return new Uint32Array(bytes.buffer);
})();

// cells: Float32Array rows*cols -> an offscreen canvas with one pixel per cell. Zero cells
// (the causal upper triangle, keys outside the top-k) skip the scale: 1024 x 1024 stays fast.
function cellImage(cells, rows, cols, scale) {
  const off = document.createElement('canvas');
  off.width = cols;
  off.height = rows;
  const ctx = off.getContext('2d');
  const img = ctx.createImageData(cols, rows);
  const px = new Uint32Array(img.data.buffer);
  const zero = LUT32[Math.round(scale(0) * 255)];
  for (let i = 0, n = rows * cols; i < n; i++) {
    const w = cells[i];
    px[i] = w === 0 ? zero : LUT32[Math.round(scale(w) * 255)];
  }
  ctx.putImageData(img, 0, 0);
  return off;
}

// The matrix heatmap: m = {rows, cols, cells}, drawn without smoothing so cell (i, j)
// covers [j * W / cols, (j + 1) * W / cols) x [i * H / rows, ...) of the backing store.
function drawMatrix(canvas, overlay, m, log, cssWidth) {
  const size = Math.max(160, Math.min(cssWidth, 720));
  const w = m.cols >= m.rows ? size : Math.max(40, Math.round((size * m.cols) / m.rows));
  const h = m.rows >= m.cols ? size : Math.max(40, Math.round((size * m.rows) / m.cols));
  sizeCanvas(canvas, w, h);
  sizeCanvas(overlay, w, h);
  canvas.parentElement.style.height = h + 'px';
  canvas.dataset.rows = m.rows;
  canvas.dataset.cols = m.cols;
  const vmax = m.vmax;
  canvas.dataset.vmax = vmax;
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(cellImage(m.cells, m.rows, m.cols, makeScale(vmax, log)), 0, 0, canvas.width, canvas.height);
  overlay.getContext('2d').clearRect(0, 0, overlay.width, overlay.height);
  return vmax;
}

// Highlights query row i and key column j on the overlay (null: clears it).
function drawCrosshair(overlay, m, i, j) {
  const ctx = overlay.getContext('2d');
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (i === null) return;
  const cw = overlay.width / m.cols, ch = overlay.height / m.rows;
  ctx.fillStyle = 'rgba(80, 200, 255, 0.25)';
  ctx.fillRect(0, i * ch, overlay.width, ch);
  ctx.fillRect(j * cw, 0, cw, overlay.height);
  ctx.strokeStyle = '#4cf';
  ctx.lineWidth = Math.max(1, window.devicePixelRatio || 1);
  ctx.strokeRect(j * cw, i * ch, Math.max(cw, 2), Math.max(ch, 2));
}

function drawColorbar(canvas, log, vmax) {
  const dpr = sizeCanvas(canvas, 200, 12);
  const ctx = canvas.getContext('2d');
  for (let x = 0; x < canvas.width; x++) {
    const t = Math.round((x / (canvas.width - 1)) * 255) * 3;
    ctx.fillStyle = `rgb(${LUT[t]},${LUT[t + 1]},${LUT[t + 2]})`;
    ctx.fillRect(x, 0, 1, 12 * dpr);
  }
  return log ? [(vmax * 1e-4).toPrecision(2), vmax.toPrecision(3)] : ['0', vmax.toPrecision(3)];
}

// A thumbnail: rows x cols (nested arrays) at one pixel per bin, scaled to its own top.
function drawThumb(canvas, weights, log, causal) {
  const rows = weights.length, cols = rows ? weights[0].length : 0;
  const cells = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) cells.set(weights[i], i * cols);
  canvas.width = cols;
  canvas.height = rows;
  const scale = makeScale(scaleTop(cells, rows, cols, causal), log);
  canvas.getContext('2d').drawImage(cellImage(cells, rows, cols, scale), 0, 0);
}

// The head view: queries on the left, keys on the right, a line per (query, key) pair of
// m.lines (per row: [[j, w], ...]) at or above threshold, opacity from the colour scale.
// focus: a query index whose lines are drawn strongly (others dimmed), or null.
function drawHeadView(canvas, m, log, threshold, focus) {
  const n = Math.max(m.rows, m.cols);
  const rh = n <= 60 ? 18 : Math.max(2, Math.min(18, Math.floor(3600 / n)));
  const width = 460, left = 140, right = 320, top = 8;
  const height = top * 2 + n * rh;
  const dpr = sizeCanvas(canvas, width, height, height > 2000 ? 1 : 4);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const yq = (i) => top + (i + 0.5) * rh * (n / m.rows);
  const yk = (j) => top + (j + 0.5) * rh * (n / m.cols);
  const scale = makeScale(m.vmax, log);
  // One path per opacity level: a few stroke() calls instead of one per line.
  const LEVELS = 20, paths = Array.from({ length: LEVELS + 1 }, () => new Path2D());
  const focusPath = new Path2D();
  let drawn = 0;
  for (let i = 0; i < m.rows; i++) {
    for (const [j, w] of m.lines[i]) {
      if (w < threshold || w <= 0) continue;
      const p = focus === i ? focusPath : paths[Math.round(scale(w) * LEVELS)];
      p.moveTo(left + 4, yq(i));
      p.lineTo(right - 4, yk(j));
      drawn++;
    }
  }
  ctx.lineWidth = rh >= 10 ? 1.5 : 1;
  for (let l = 1; l <= LEVELS; l++) {
    // Every line drawn stays visible: opacity 0.1 at the bottom of the scale, 0.9 at the top.
    const a = (0.1 + (0.8 * l) / LEVELS) * (focus === null ? 1 : 0.3);
    ctx.strokeStyle = `rgba(10, 102, 194, ${a})`;
    ctx.stroke(paths[l]);
  }
  ctx.strokeStyle = 'rgba(230, 80, 20, 0.9)';
  ctx.lineWidth = 2;
  ctx.stroke(focusPath);
  drawLabels(ctx, m, { rh, left, right, yq, yk, focus });
  return drawn;
}

function drawLabels(ctx, m, g) {
  const every = Math.max(1, Math.ceil(11 / g.rh));
  ctx.font = `${Math.min(12, Math.max(9, g.rh - 4))}px ui-monospace, monospace`;
  ctx.textBaseline = 'middle';
  const label = (s, x, y, align, strong) => {
    ctx.textAlign = align;
    ctx.fillStyle = strong ? '#c24a0a' : '#222';
    ctx.fillText(s.length > 16 ? s.slice(0, 15) + '…' : s, x, y);
  };
  // Too many tokens for a label each: every `every`-th one, with its position.
  const text = (s, i) => (every > 1 ? `${i} ${s}` : s);
  for (let i = 0; i < m.rows; i++)
    if (i % every === 0 || i === g.focus) label(text(m.rowLabel(i), i), g.left, g.yq(i), 'right', i === g.focus);
  for (let j = 0; j < m.cols; j++) if (j % every === 0) label(text(m.colLabel(j), j), g.right, g.yk(j), 'left', false);
}
