// The attention viewer page: talks to the JSON API (docs/viewer-api.md) and draws with
// draw.js. After each draw, window.qsTimings holds {api_ms, draw_ms, total_ms, n_tokens}
// and #status gets data-state="drawn" (or "error") and a new data-seq: the browser test
// waits on them.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { info: null, text: null, model: null, matrix: null, seq: 0, focus: null };

async function api(path, body) {
  const init = body === undefined ? {}
    : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new Error(`cannot reach the server (is qiusuo serve still running?): ${e.message}`);
  }
  let j;
  try {
    j = await res.json();
  } catch (e) {
    throw new Error(`HTTP ${res.status}: the server's answer is not JSON`);
  }
  if (!res.ok) throw new Error(j && j.error ? j.error : `HTTP ${res.status}`);
  return j;
}

function showError(msg) {
  $('error').textContent = msg;
  $('error').hidden = false;
}

function setStatus(seq, s) {
  $('status').dataset.state = s;
  $('status').dataset.seq = String(seq);
  $('loading').hidden = s !== 'loading';
}

// The selected head's response as {rows, cols, cells, sent, lines, rowLabel, colLabel, vmax}.
function toMatrix(r) {
  const pooled = r.format === 'pooled';
  const rows = pooled ? r.pooled_rows : r.rows, cols = pooled ? r.pooled_cols : r.cols;
  const cells = new Float32Array(rows * cols), sent = new Uint8Array(rows * cols);
  const lines = [];
  if (r.format === 'topk') {
    for (let i = 0; i < rows; i++) {
      const row = [];
      r.indices[i].forEach((j, t) => {
        cells[i * cols + j] = r.values[i][t];
        sent[i * cols + j] = 1;
        row.push([j, r.values[i][t]]);
      });
      lines.push(row);
    }
  } else {
    sent.fill(1);
    for (let i = 0; i < rows; i++) {
      cells.set(r.weights[i], i * cols);
      // The 32 largest weights of each row are enough for lines (the rest are faint).
      lines.push(r.weights[i].map((w, j) => [j, w]).sort((a, b) => b[1] - a[1]).slice(0, 32));
    }
  }
  const binLabel = (tokens, n, bins) => (b) => {
    const s = Math.ceil((b * n) / bins), e = Math.ceil(((b + 1) * n) / bins) - 1;
    return s === e ? tokens[s] : `${s}–${e}`;
  };
  return {
    rows, cols, cells, sent, lines, format: r.format, kind: r.kind, vmax: scaleTop(cells, rows, cols, r.kind === 'causal'),
    rowLabel: pooled ? binLabel(r.tokens, r.rows, rows) : (i) => r.tokens[i],
    colLabel: pooled ? binLabel(r.key_tokens, r.cols, cols) : (j) => r.key_tokens[j],
    rowName: pooled ? (i) => `tokens ${binLabel(r.tokens, r.rows, rows)(i)}` : (i) => `${i} ‘${r.tokens[i]}’`,
    colName: pooled ? (j) => `tokens ${binLabel(r.key_tokens, r.cols, cols)(j)}` : (j) => `${j} ‘${r.key_tokens[j]}’`,
  };
}

function rolesOf(layer, head) {
  const a = state.info && state.info.analysis;
  if (!a) return [];
  const map = state.info.maps[layer];
  const e = a.heads.find((h) => h.head === head && (h.name ? h.name === map.name : h.layer === map.block)
                                && (!h.kind || h.kind === map.kind));
  return e ? e.roles.concat(e.confidence !== undefined ? [`confidence ${e.confidence.toFixed(2)}`] : []) : [];
}

function headRequest(text) {
  const k = parseInt($('topk').value, 10);
  return { text, layer: parseInt($('layer').value, 10), head: parseInt($('head').value, 10),
           top_k: Number.isFinite(k) ? k : 8 };
}

function drawModelView() {
  const box = $('thumbs');
  box.textContent = '';
  if (!state.model) return;
  const heads = state.info.heads, log = $('log').checked;
  box.style.gridTemplateColumns = `auto repeat(${heads}, minmax(28px, 72px))`;
  for (const m of state.model.maps) {
    const label = document.createElement('div');
    label.className = 'layer-label';
    label.textContent = `L${m.layer} ${m.kind}`;
    box.appendChild(label);
    m.heads.forEach((w, h) => {
      const cell = document.createElement('div');
      cell.className = 'thumb';
      cell.dataset.layer = m.layer;
      cell.dataset.head = h;
      const c = document.createElement('canvas');
      drawThumb(c, w, log, m.kind === 'causal');
      const roles = rolesOf(m.layer, h);
      cell.title = `${m.name} head ${h}` + (roles.length ? `\n${roles.join(', ')}` : '');
      cell.append(c, Object.assign(document.createElement('div'), { textContent: `H${h}` }),
                  Object.assign(document.createElement('div'), { className: 'roles', textContent: roles.join(', ') }));
      cell.addEventListener('click', () => selectHead(m.layer, h));
      box.appendChild(cell);
    });
  }
  markSelected();
}

function markSelected() {
  for (const t of document.querySelectorAll('.thumb'))
    t.classList.toggle('selected', t.dataset.layer === $('layer').value && t.dataset.head === $('head').value);
}

function drawHeadParts() {
  const m = state.matrix;
  if (!m) return;
  const log = $('log').checked;
  const wrap = $('matrix-view').clientWidth;
  const t0 = performance.now();
  const vmax = drawMatrix($('heatmap'), $('heatmap-overlay'), m, log, wrap - 8);
  const t1 = performance.now();
  [$('cb-min').textContent, $('cb-max').textContent] = drawColorbar($('colorbar'), log, vmax);
  const layer = parseInt($('layer').value, 10), head = parseInt($('head').value, 10);
  const roles = rolesOf(layer, head);
  $('matrix-title').textContent = `${state.info.maps[layer].name} head ${head} · ${m.rows}×${m.cols} · ${m.format}` +
    (m.format === 'topk' ? ' (cells outside each row’s top-k are drawn as 0)' : '') +
    (m.kind === 'causal' && m.rows > 1 ? ' · scale top: the largest weight after query 0' : '') +
    (roles.length ? ` · ${roles.join(', ')}` : '');
  const lines = drawHeadView($('lines'), m, log, parseFloat($('threshold').value), state.focus);
  window.qsDrawParts = { matrix_ms: t1 - t0, head_view_ms: performance.now() - t1, lines };
  markSelected();
}

async function finishDraw(seq, t0, t1, nTokens) {
  const t2 = performance.now();
  await new Promise((r) => requestAnimationFrame(() => r()));
  const t3 = performance.now();
  window.qsTimings = { api_ms: t1 - t0, draw_ms: t2 - t1, total_ms: t3 - t0, n_tokens: nTokens };
  $('status').textContent = `${nTokens} tokens · server ${(t1 - t0).toFixed(0)} ms · drawn in ${(t2 - t1).toFixed(0)} ms`;
  setStatus(seq, 'drawn');
}

async function run(fetcher) {
  const seq = ++state.seq;
  $('error').hidden = true;
  setStatus(seq, 'loading');
  const t0 = performance.now();
  try {
    const draw = await fetcher();
    if (seq !== state.seq) return;  // a newer request superseded this one
    const t1 = performance.now();
    const n = draw();
    await finishDraw(seq, t0, t1, n);
  } catch (e) {
    if (seq !== state.seq) return;
    showError(e.message);
    $('status').textContent = '';
    setStatus(seq, 'error');
  }
}

function show() {
  const text = $('text').value;
  return run(async () => {
    const [model, head] = await Promise.all([api('/api/attention', { text }),
                                             api('/api/attention', headRequest(text))]);
    return () => {
      state.text = text;
      state.model = model;
      state.matrix = toMatrix(head);
      state.focus = null;
      drawModelView();
      drawHeadParts();
      return head.n_tokens;
    };
  });
}

function selectHead(layer, head) {
  $('layer').value = String(layer);
  fillHeads();
  $('head').value = String(head);
  markSelected();
  if (state.text === null) return Promise.resolve();
  const text = state.text;
  return run(async () => {
    const r = await api('/api/attention', headRequest(text));
    return () => {
      state.matrix = toMatrix(r);
      state.focus = null;
      drawHeadParts();
      return r.n_tokens;
    };
  });
}

function fillHeads() {
  const keep = $('head').value;
  const n = state.info.maps[parseInt($('layer').value, 10)].heads;
  $('head').textContent = '';
  for (let h = 0; h < n; h++) $('head').append(new Option(String(h), String(h)));
  if (keep !== '' && parseInt(keep, 10) < n) $('head').value = keep;
}

// Hover: the matrix cell under the pointer (its row and column highlighted), or the head
// view's query token (its lines highlighted).
function hoverMatrix(ev) {
  const m = state.matrix;
  if (!m) return;
  const rect = ev.target.getBoundingClientRect();
  const j = Math.min(m.cols - 1, Math.floor(((ev.clientX - rect.left) / rect.width) * m.cols));
  const i = Math.min(m.rows - 1, Math.floor(((ev.clientY - rect.top) / rect.height) * m.rows));
  if (i < 0 || j < 0) return;
  drawCrosshair($('heatmap-overlay'), m, i, j);
  const w = m.sent[i * m.cols + j] ? m.cells[i * m.cols + j].toPrecision(4) : 'below this row’s top-k (not sent)';
  $('hover-info').textContent = `query ${m.rowName(i)} → key ${m.colName(j)}: ${w}`;
  if (state.focus !== i) {
    state.focus = i;
    drawHeadView($('lines'), m, $('log').checked, parseFloat($('threshold').value), i);
  }
}

function hoverLines(ev) {
  const m = state.matrix;
  if (!m) return;
  const rect = ev.target.getBoundingClientRect();
  const i = Math.min(m.rows - 1, Math.max(0, Math.floor(((ev.clientY - rect.top) / rect.height) * m.rows)));
  if (state.focus === i) return;
  state.focus = i;
  drawHeadView($('lines'), m, $('log').checked, parseFloat($('threshold').value), i);
  $('hover-info').textContent = `query ${m.rowName(i)}`;
}

async function init() {
  $('show').addEventListener('click', show);
  $('text').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) show();
  });
  $('layer').addEventListener('change', () => selectHead(parseInt($('layer').value, 10), parseInt($('head').value, 10)));
  $('head').addEventListener('change', () => selectHead(parseInt($('layer').value, 10), parseInt($('head').value, 10)));
  $('log').addEventListener('change', () => { drawModelView(); drawHeadParts(); });
  $('threshold').addEventListener('input', () => {
    $('threshold-value').textContent = $('threshold').value;
    drawHeadParts();
  });
  $('heatmap-overlay').addEventListener('mousemove', hoverMatrix);
  $('heatmap-overlay').addEventListener('mouseleave', () => drawCrosshair($('heatmap-overlay'), state.matrix, null));
  $('lines').addEventListener('mousemove', hoverLines);
  window.addEventListener('resize', drawHeadParts);
  try {
    state.info = await api('/api/model');
  } catch (e) {
    showError(`cannot read /api/model: ${e.message}`);
    return;
  }
  const i = state.info;
  for (const m of i.maps) $('layer').append(new Option(`${m.layer}: ${m.name} (${m.kind})`, String(m.layer)));
  fillHeads();
  $('model-info').textContent = `${i.layers} attention layers × ${i.heads} heads · ${i.kinds.join(', ')} · ` +
    `${i.encoding} positions · ${i.vocabulary.kind} vocabulary of ${i.vocabulary.size} · ` +
    `up to ${i.max_tokens} tokens · step ${i.step}` + (i.analysis ? ' · head roles loaded' : '');
  $('status').dataset.ready = '1';
}

init();
