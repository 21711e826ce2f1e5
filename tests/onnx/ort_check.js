// Runs an ONNX file in ONNX Runtime (npm onnxruntime-node, CPU) on the example that
// `qiusuo export --example` wrote (safetensors: "input", and "output" = qiusuo's answer)
// and compares: max |ort - qiusuo| <= atol + rtol * max |qiusuo|. Exit 0 when it matches,
// 1 when it does not, 2 on bad usage or files, 77 when ONNX Runtime is not installed. With --bench N, also times N runs. With
// --dir DIR, checks every DIR/NAME.onnx against DIR/NAME.example.safetensors. For a
// quantised model, --quanta K allows K codes of the output: atol = K * the example's
// metadata output_quantum (the scale of the graph's last dequantize).
//
//   node tests/onnx/ort_check.js MODEL.onnx EXAMPLE.safetensors [--atol A] [--rtol R]
//                                [--quanta K] [--threads T] [--bench N]
//   node tests/onnx/ort_check.js --dir DIR [--atol A] [--rtol R]
'use strict';
const fs = require('fs');
const path = require('path');

function usage(msg) {
  console.error(`ort_check: ${msg}\nusage: node ort_check.js MODEL.onnx EXAMPLE.safetensors [--atol A] [--rtol R] [--threads T] [--bench N]\n       node ort_check.js --dir DIR [--atol A] [--rtol R]`);
  process.exit(2);
}

// The safetensors layout: u64 header length, JSON header, then the data. Every size and
// offset is checked before it is used.
function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 8) throw new Error(`${file}: shorter than 8 bytes`);
  const n = Number(buf.readBigUInt64LE(0));
  if (n > buf.length - 8) throw new Error(`${file}: header length ${n} beyond the file`);
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const data = buf.subarray(8 + n);
  const out = {__metadata__: header.__metadata__ || {}};
  const types = {F32: ['float32', Float32Array], I64: ['int64', BigInt64Array], I32: ['int32', Int32Array],
                 U8: ['uint8', Uint8Array], I8: ['int8', Int8Array]};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const ty = types[t.dtype];
    if (!ty) throw new Error(`${file}: tensor ${name} has dtype ${t.dtype}, which this check does not read`);
    const [b, e] = t.data_offsets;
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (!(0 <= b && b <= e && e <= data.length) || e - b !== count * ty[1].BYTES_PER_ELEMENT)
      throw new Error(`${file}: tensor ${name}: offsets [${b}, ${e}] do not hold ${t.shape} of ${t.dtype}`);
    const copy = Buffer.from(data.subarray(b, e));  // aligned for the typed array
    out[name] = {type: ty[0], shape: t.shape, data: new ty[1](copy.buffer, copy.byteOffset, count)};
  }
  return out;
}

async function check(ort, model, example, opt) {
  const ex = readSafetensors(example);
  if (!ex.input || !ex.output) throw new Error(`${example}: needs tensors "input" and "output"`);
  const session = await ort.InferenceSession.create(model, {intraOpNumThreads: opt.threads, graphOptimizationLevel: 'all'});
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor(ex.input.type, ex.input.data, ex.input.shape);
  const result = await session.run(feeds);
  const got = result[session.outputNames[0]];
  const want = ex.output;
  const report = {model: path.basename(model), shape: got.dims, want_shape: want.shape};
  let atol = opt.atol;
  if (opt.quanta > 0) {
    const q = Number(ex.__metadata__.output_quantum);
    if (!(q > 0)) throw new Error(`${example}: --quanta needs metadata output_quantum (a quantised model's example)`);
    atol = opt.quanta * q * (1 + 1e-6);
    report.output_quantum = q;
  }
  let ok = got.dims.length === want.shape.length && got.dims.every((d, i) => d === want.shape[i]);
  let maxDiff = 0, peak = 0, differ = 0;
  if (ok) {
    for (let i = 0; i < want.data.length; i++) {
      const a = Number(got.data[i]), b = Number(want.data[i]);
      const d = Math.abs(a - b);
      maxDiff = Number.isNaN(d) ? Infinity : Math.max(maxDiff, d);
      peak = Math.max(peak, Math.abs(b));
      differ += d > 1e-6 * Math.max(1, Math.abs(b)) || Number.isNaN(d) ? 1 : 0;
    }
    ok = maxDiff <= atol + opt.rtol * peak;
  }
  Object.assign(report, {max_abs_diff: maxDiff, max_abs_output: peak, tolerance: atol + opt.rtol * peak,
                         elements_differing: differ, elements: want.data.length, match: ok});
  if (opt.bench > 0) {
    for (let i = 0; i < 3; i++) await session.run(feeds);
    const times = [];
    for (let i = 0; i < opt.bench; i++) {
      const t = process.hrtime.bigint();
      await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    times.sort((a, b) => a - b);
    Object.assign(report, {threads: opt.threads, runs: opt.bench, median_ms: times[Math.floor(times.length / 2)]});
  }
  return report;
}

(async () => {
  const args = process.argv.slice(2);
  const pos = [];
  const opt = {atol: 1e-4, rtol: 1e-4, threads: 1, bench: 0, quanta: 0};
  let dir = null;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--dir') {
      if (i + 1 >= args.length) usage('--dir needs a directory');
      dir = args[++i];
    } else if (args[i].startsWith('--')) {
      const k = args[i].slice(2);
      if (!(k in opt) || i + 1 >= args.length) usage(`unknown or incomplete option ${args[i]}`);
      opt[k] = Number(args[++i]);
      if (!Number.isFinite(opt[k])) usage(`--${k} needs a number`);
    } else {
      pos.push(args[i]);
    }
  }
  const pairs = [];
  if (dir !== null) {
    if (pos.length !== 0) usage('--dir takes no other files');
    for (const f of fs.readdirSync(dir).sort())
      if (f.endsWith('.onnx')) pairs.push([path.join(dir, f), path.join(dir, f.slice(0, -5) + '.example.safetensors')]);
    if (pairs.length === 0) usage(`${dir}: no .onnx files`);
  } else {
    if (pos.length !== 2) usage('expected MODEL.onnx and EXAMPLE.safetensors');
    pairs.push([pos[0], pos[1]]);
  }
  let ort;
  try {
    ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));
  } catch (e) {
    // 77: ctest's SKIP_RETURN_CODE for these tests (reported as skipped, never as passed).
    console.error(`ort_check: onnxruntime-node is not installed in ${__dirname}/node_modules (scripts/install-deps.sh installs it): ${e.message}`);
    process.exit(77);
  }
  const version = require(path.join(__dirname, 'node_modules', 'onnxruntime-node', 'package.json')).version;
  let matched = 0;
  for (const [model, example] of pairs) {
    const r = await check(ort, model, example, opt);
    r.ort_version = version;
    console.log(JSON.stringify(r));
    matched += r.match ? 1 : 0;
  }
  if (dir !== null) console.log(`${matched} of ${pairs.length} models match in ONNX Runtime ${version}`);
  process.exit(matched === pairs.length ? 0 : 1);
})().catch((e) => {
  console.error(`ort_check: ${e.message}`);
  process.exit(2);
});
