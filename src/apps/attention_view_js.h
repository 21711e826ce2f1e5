// The page of the dynamic attention views (checkpoints slider, generation steps): its CSS,
// body and script. The data arrive as JSON in <script id="data"> (see attention_views.cpp):
// maps (shapes, pooling, which labels), frames, the viridis table, weights as base64 bytes
// quantised on a log scale (byte q > 0 is floor * 10^((q - 1) / 254 * log10(1 / floor))).
#pragma once

namespace qs::apps {

inline constexpr const char* kViewCss = R"CSS(
body{font-family:"DejaVu Sans",Verdana,sans-serif;margin:1em 1.5em;color:#222}
h1{font-size:1.3em;margin:.2em 0}
.controls{display:flex;flex-wrap:wrap;gap:.8em;align-items:center;margin:.6em 0}
#frame{width:22em}
#readout{font-family:monospace;min-height:1.3em;margin:.3em 0}
#text{font-family:monospace;margin:.3em 0;max-width:70em;word-wrap:break-word}
#text .tok{background:#f0f0f0;margin:1px;padding:0 1px;display:inline-block}
#text .next{background:#fde725}
#bar{display:flex;align-items:center;gap:.4em;font-size:.85em;margin:.3em 0}
canvas#c{border:0;display:block}
.note{color:#666;font-size:.85em;max-width:60em}
)CSS";

inline constexpr const char* kViewBody = R"HTML(
<h1 id="title"></h1>
<div class="controls">
 <label>map <select id="map"></select></label>
 <label>head <select id="head"></select></label>
 <label><input type="checkbox" id="log"> log scale</label>
 <button id="play">&#9654; play</button>
 <input type="range" id="frame" min="0" max="0" value="0">
 <span id="framelabel"></span>
</div>
<div id="text"></div>
<div id="bar"><span id="barlo"></span><canvas id="ramp" width="256" height="12"></canvas><span id="barhi"></span></div>
<div id="readout">&nbsp;</div>
<canvas id="c" width="10" height="10"></canvas>
<p class="note">Rows: queries (the positions attending); columns: keys (what they attend to). Colours: viridis,
linear from 0 to the largest weight shown, or log10 from 1e-4 (weights below take the bottom colour). Weights are
stored to about 2% (one byte on a log scale); long inputs are max-pooled to the cells shown.</p>
)HTML";

inline constexpr const char* kViewJs = R"JS(
(function () {
  const D = JSON.parse(document.getElementById('data').textContent);
  const $ = (id) => document.getElementById(id);
  const LUT = D.viridis.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
  const DEC = Math.log10(1 / D.floor);
  const VAL = new Float32Array(256);
  for (let q = 1; q < 256; q++) VAL[q] = D.floor * Math.pow(10, ((q - 1) / 254) * DEC);
  const S = { frame: 0, map: 0, head: -1, log: false, timer: null, geo: null };
  const cache = new Map();
  function bytes(f, m) {
    const gen = D.kind === 'generation';
    const key = gen ? 'g' + m : f + ':' + m;
    let u = cache.get(key);
    if (!u) {
      const s = atob(gen ? D.data[m] : D.frames[f].data[m]);
      u = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
      cache.set(key, u);
    }
    return u;
  }
  const labelsOf = (which) => (which === 'source' ? D.source_tokens : D.tokens);
  const cut = (s) => (s.length > 14 ? s.slice(0, 13) + '\u2026' : s);
  function option(sel, value, text) {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = text;
    sel.appendChild(o);
  }
  D.maps.forEach((m, i) => option($('map'), i, m.name + ' (' + m.kind + ', layer ' + m.layer + ')'));
  function fillHeads() {
    const sel = $('head'), m = D.maps[S.map];
    sel.innerHTML = '';
    option(sel, -1, 'mean of ' + m.heads + ' heads');
    for (let h = 0; h < m.heads; h++) option(sel, h, 'head ' + h);
    if (S.head >= m.heads) S.head = -1;
    sel.value = S.head;
  }
  function current() {
    const m = D.maps[S.map], u = bytes(S.frame, S.map), n = m.rows * m.cols;
    let rows = m.rows, cols = m.cols;
    if (D.kind === 'generation') {
      const t = D.frames[S.frame].n;
      rows = Math.ceil(t / m.pool_rows);
      cols = Math.ceil(t / m.pool_cols);
    }
    const v = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) {
        const i = r * m.cols + c;
        let x = 0;
        if (S.head >= 0) x = VAL[u[S.head * n + i]];
        else {
          for (let h = 0; h < m.heads; h++) x += VAL[u[h * n + i]];
          x /= m.heads;
        }
        v[r * cols + c] = x;
      }
    return { m, rows, cols, v };
  }
  function showText() {
    const el = $('text'), gen = D.kind === 'generation';
    const toks = gen ? D.tokens.slice(0, D.frames[S.frame].n).concat([D.generated[S.frame]]) : D.tokens;
    el.textContent = '';
    toks.forEach((t, i) => {
      const s = document.createElement('span');
      s.className = gen && i === toks.length - 1 ? 'tok next' : 'tok';
      s.textContent = t;
      el.appendChild(s);
    });
  }
  function draw() {
    const { m, rows, cols, v } = current();
    const cs = Math.max(1, Math.min(24, Math.floor(720 / Math.max(m.rows, m.cols))));
    const L = 120, T = 8, B = 120;
    const cv = $('c'), ctx = cv.getContext('2d');
    cv.width = L + m.cols * cs + 12;
    cv.height = T + m.rows * cs + B;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, cv.width, cv.height);
    let vmax = 0;
    for (const x of v) vmax = Math.max(vmax, x);
    const lo = Math.log10(D.floor), hi = Math.log10(Math.max(vmax, D.floor * 10));
    const off = document.createElement('canvas');
    off.width = cols;
    off.height = rows;
    const octx = off.getContext('2d'), img = octx.createImageData(cols, rows);
    for (let i = 0; i < v.length; i++) {
      const t = S.log ? (v[i] <= D.floor ? 0 : (Math.log10(v[i]) - lo) / (hi - lo)) : vmax > 0 ? v[i] / vmax : 0;
      const k = Math.max(0, Math.min(255, Math.round(t * 255)));
      img.data.set(LUT[k], i * 4);
      img.data[i * 4 + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, L, T, cols * cs, rows * cs);
    ctx.strokeStyle = '#999';
    ctx.strokeRect(L - 0.5, T - 0.5, m.cols * cs + 1, m.rows * cs + 1);
    if (D.kind === 'generation') {
      ctx.strokeStyle = '#e0245e';
      ctx.lineWidth = 2;
      ctx.strokeRect(L, T + (rows - 1) * cs, cols * cs, cs);
      ctx.lineWidth = 1;
    }
    const rowL = labelsOf(m.row_labels), colL = labelsOf(m.col_labels);
    ctx.fillStyle = '#222';
    ctx.font = '11px "DejaVu Sans", Verdana, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    const sr = Math.max(1, Math.ceil(13 / cs));
    for (let r = 0; r < rows; r += sr) ctx.fillText(cut(rowL[r * m.pool_rows]), L - 4, T + (r + 0.5) * cs);
    for (let c = 0; c < cols; c += sr) {
      ctx.save();
      ctx.translate(L + (c + 0.5) * cs, T + m.rows * cs + 4);
      ctx.rotate(-Math.PI / 2);
      ctx.fillText(cut(colL[c * m.pool_cols]), 0, 0);
      ctx.restore();
    }
    $('barlo').textContent = S.log ? '\u2264' + D.floor : '0';
    $('barhi').textContent = vmax.toPrecision(3);
    const f = D.frames[S.frame];
    $('framelabel').textContent = f.label + '  (' + (S.frame + 1) + '/' + D.frames.length + ')';
    S.geo = { L, T, cs, rows, cols, m, v, rowL, colL };
    showText();
  }
  $('c').addEventListener('mousemove', (e) => {
    const g = S.geo;
    if (!g) return;
    const rect = e.target.getBoundingClientRect();
    const c = Math.floor((e.clientX - rect.left - g.L) / g.cs), r = Math.floor((e.clientY - rect.top - g.T) / g.cs);
    if (r < 0 || c < 0 || r >= g.rows || c >= g.cols) return;
    const i = r * g.m.pool_rows, j = c * g.m.pool_cols;
    const pool = g.m.pool_rows > 1 || g.m.pool_cols > 1 ? ' (max of the cell\u2019s tokens)' : '';
    $('readout').textContent = 'query ' + i + ' \u201c' + g.rowL[i] + '\u201d \u2192 key ' + j + ' \u201c' + g.colL[j] +
      '\u201d: ' + g.v[r * g.cols + c].toPrecision(3) + pool;
  });
  const ramp = $('ramp').getContext('2d');
  for (let i = 0; i < 256; i++) {
    ramp.fillStyle = D.viridis[i];
    ramp.fillRect(i, 0, 1, 12);
  }
  $('title').textContent = D.title;
  $('frame').max = D.frames.length - 1;
  $('map').addEventListener('change', (e) => { S.map = +e.target.value; fillHeads(); draw(); });
  $('head').addEventListener('change', (e) => { S.head = +e.target.value; draw(); });
  $('log').addEventListener('change', (e) => { S.log = e.target.checked; draw(); });
  $('frame').addEventListener('input', (e) => { S.frame = +e.target.value; draw(); });
  $('play').addEventListener('click', () => {
    if (S.timer) {
      clearInterval(S.timer);
      S.timer = null;
      $('play').textContent = '\u25B6 play';
      return;
    }
    if (S.frame === D.frames.length - 1) S.frame = -1;
    $('play').textContent = '\u275A\u275A pause';
    S.timer = setInterval(() => {
      if (S.frame + 1 >= D.frames.length) { $('play').click(); return; }
      S.frame++;
      $('frame').value = S.frame;
      draw();
    }, D.kind === 'generation' ? 350 : 700);
  });
  fillHeads();
  draw();
})();
)JS";

}  // namespace qs::apps
