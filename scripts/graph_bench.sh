#!/usr/bin/env bash
# qiusuo-run against the eager engine and against ONNX Runtime on the same checkpoints
# (docs/graph.md, "Measured"): trains small checkpoints (weights do not change the speed),
# quantises the CNN (PTQ), exports the graphs (qsgraph and ONNX), then alternates eager,
# graph and ONNX Runtime runs for ROUNDS rounds at 2 and 1 threads and prints every time
# (ms per forward; ONNX Runtime through tests/onnx/ort_check.js, installed by install-deps).
#
#   scripts/graph_bench.sh [ROUNDS=3] [WORKDIR=/tmp/qiusuo-graph-bench]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} work=${2:-/tmp/qiusuo-graph-bench}
Q=$PWD/build/release/qiusuo R=$PWD/build/release/qiusuo-run
[ -x "$Q" ] && [ -x "$R" ] || { echo "graph_bench: build first (cmake --build --preset release)" >&2; exit 1; }
mkdir -p "$work" && cd "$work"
[ -f cnn/last.safetensors ] || $Q train cnn --out cnn --epochs 1 --limit-train 2000 --limit-test 500 >/dev/null
[ -f ptq.safetensors ] || $Q quantize cnn/last.safetensors --method ptq --calib-batches 2 --batch 64 --limit-test 256 \
  --quiet --out ptq.safetensors >/dev/null
[ -f lm/last.safetensors ] || $Q train lm --steps 2 --seq 256 --batch 2 --eval-windows 1 --quiet --out lm >/dev/null
$Q export cnn/last.safetensors --batch 64 --out cnn64.qsg >/dev/null
$Q export cnn/last.safetensors --batch 64 --no-optimize --out cnn64raw.qsg >/dev/null
$Q export ptq.safetensors --batch 64 --out int8_64.qsg >/dev/null
$Q export lm/last.safetensors --seq 256 --out lm256.qsg >/dev/null
$Q export cnn/last.safetensors --batch 1 --out cnn1.qsg >/dev/null
for m in "cnn/last.safetensors --batch 64 --out cnn64" "cnn/last.safetensors --batch 1 --out cnn1" \
         "ptq.safetensors --batch 64 --out int8_64" "lm/last.safetensors --seq 256 --out lm256"; do
  set -- $m
  $Q export $1 $2 $3 --out "$5.onnx" --example "$5.example.safetensors" >/dev/null
done
ORT="$OLDPWD/tests/onnx/ort_check.js"
eager() { $Q bench "$1" --model "$2" --threads "$3" --iters "$4" --json 2>/dev/null | sed -n 's/.*"ms":\([0-9.]*\).*/\1/p'; }
graph() { $R "$1" --bench "$3" --threads "$2" | sed -n 's/.*"step_ms": \([0-9.]*\).*/\1/p'; }
ort() { node "$ORT" "$1.onnx" "$1.example.safetensors" --threads "$2" --bench "$3" ${4:-} 2>/dev/null |
          sed -n 's/.*"median_ms":\([0-9.]*\).*/\1/p'; }
echo "$($Q info | sed -n 's/.*CPU ISA in use: \([a-z0-9_]*\).*/\1/p'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
for t in 2 1; do
  for r in $(seq "$rounds"); do
    echo "threads $t round $r: cnn64 eager $(eager cnn_infer_b64_fp32 cnn/last.safetensors $t 50)" \
         "graph $(graph cnn64.qsg $t 50) unoptimised $(graph cnn64raw.qsg $t 50) ort $(ort cnn64 $t 50);" \
         "cnn1 graph $(graph cnn1.qsg $t 200) ort $(ort cnn1 $t 200);" \
         "int8 eager $(eager cnn_infer_b64_int8 ptq.safetensors $t 50) graph $(graph int8_64.qsg $t 50)" \
         "ort $(ort int8_64 $t 50 '--quanta 2');" \
         "lm eager $(eager lm_fwd_b1_n256_fp32 lm/last.safetensors $t 20) graph $(graph lm256.qsg $t 20)" \
         "ort $(ort lm256 $t 20)"
  done
done
/usr/bin/time -f "qiusuo-run, one process (load + one batch-64 run): %e s, %M kB peak resident" $R cnn64.qsg >/dev/null
ls -l "$R" "$Q" | awk '{print $5, $9}'
