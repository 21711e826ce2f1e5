#!/usr/bin/env bash
# LM decoding side by side with llama.cpp (docs/results/decoding.md): the qiusuo side of
# ../shared/peers/llama_peer.sh. Makes qiusuo checkpoints of the same architecture and
# parameter count as the peer's random GGUF models (llama: RMSNorm, RoPE base 1e4, SwiGLU,
# untied output, byte vocabulary; `train lm --block deepseek --attention mha --ffn swiglu`,
# one step), quantises them (weight-int8; weight-int4 in groups of 128; q8 activations), and
# runs, ROUNDS times alternating, for every shape and format:
#   qiusuo bench lm_gen_b1_p256_g128 --model CKPT   (decode: 128 tokens after a 256-token prompt)
#   llama-bench -p 256 -n 128 -pg 256,128           (decode = 128 / (t(pg) - t(pp256)))
# with qiusuo bench mem_read_bw before and after each round. Prints a Markdown table of the
# medians: decode and prefill tokens/s, their ratios, and the bytes a qiusuo decoding step
# reads (weights + the f32 KV cache) per second against the measured read bandwidth (the
# median of mem_read_bw's runs; each run reports its best pass, as STREAM does).
#
#   scripts/decode_bench.sh [LLAMA_WORK]
#     LLAMA_WORK   llama_peer.sh's WORKDIR after its "build models" steps (build/bin/llama-bench,
#                  models/{A,B}-{f32,q8_0,q4_0}.gguf); without it, qiusuo's side only
#   environment: SHAPES="A B" FORMATS="f32 int8 int4" ROUNDS=3 THREADS=2
#                WORK=/tmp/qiusuo-decode-bench (checkpoints and raw JSON lines)
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA=${1:-}
SHAPES=${SHAPES:-"A B"} FORMATS=${FORMATS:-"f32 int8 int4"} ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-2}
WORK=${WORK:-/tmp/qiusuo-decode-bench}
Q=$PWD/build/release/qiusuo
[ -x "$Q" ] || { echo "decode_bench: build first (cmake --build --preset release)" >&2; exit 1; }
if [ -n "$LLAMA" ]; then
  [ -x "$LLAMA/build/bin/llama-bench" ] || { echo "decode_bench: no $LLAMA/build/bin/llama-bench" >&2; exit 1; }
fi
mkdir -p "$WORK"
raw=$WORK/raw.jsonl
: > "$raw"

shape_args() {
  case $1 in
    A) echo "--d-model 256 --layers 4 --heads 8 --ffn-hidden 1024" ;;
    B) echo "--d-model 1024 --layers 12 --heads 16 --ffn-hidden 4096" ;;
    *) echo "decode_bench: unknown shape $1" >&2; exit 2 ;;
  esac
}
gguf_of() { case $1 in f32) echo f32 ;; int8) echo q8_0 ;; int4) echo q4_0 ;; esac; }

for s in $SHAPES; do
  d=$WORK/$s
  if [ ! -f "$d/f32.safetensors" ]; then
    # shellcheck disable=SC2046
    $Q train lm --block deepseek --attention mha --ffn swiglu $(shape_args "$s") --seq 384 --batch 1 --steps 1 \
      --no-tie --eval-every 0 --eval-windows 1 --quiet --threads "$THREADS" --out "$d" > /dev/null
    mv "$d/last.safetensors" "$d/f32.safetensors"
    rm -f "$d"/step-*.safetensors
  fi
  for b in 8 4; do
    [ -f "$d/int$b.safetensors" ] ||
      $Q quantize "$d/f32.safetensors" --method weight-int$b --out "$d/int$b.safetensors" > /dev/null
  done
done

for r in $(seq 1 "$ROUNDS"); do
  $Q bench mem_read_bw --threads "$THREADS" --json >> "$raw"
  for s in $SHAPES; do
    for f in $FORMATS; do
      $Q bench lm_gen_b1_p256_g128 --threads "$THREADS" --json --model "$WORK/$s/$f.safetensors" |
        sed "s/^{/{\"shape\":\"$s\",\"format\":\"$f\",/" >> "$raw"
      if [ -n "$LLAMA" ]; then
        "$LLAMA/build/bin/llama-bench" -m "$LLAMA/models/$s-$(gguf_of "$f").gguf" -t "$THREADS" -p 256 -n 128 \
          -pg 256,128 -r 1 -o json 2> /dev/null |
          /usr/bin/python3 -c "
import json, sys
t = json.load(sys.stdin)
pp = next(x for x in t if x['n_prompt'] == 256 and x['n_gen'] == 0)
pg = next(x for x in t if x['n_prompt'] == 256 and x['n_gen'] == 128)
print(json.dumps({'peer': 'llama.cpp', 'shape': '$s', 'format': '$f', 'commit': pp.get('build_commit', '?'),
                  'tokens_per_s': 128 / ((pg['avg_ns'] - pp['avg_ns']) * 1e-9),
                  'prefill_tokens_per_s': pp['avg_ts']}))" >> "$raw"
      fi
      echo "round $r: $s $f" >&2
    done
  done
done
$Q bench mem_read_bw --threads "$THREADS" --json >> "$raw"

/usr/bin/python3 - "$raw" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bw = [r["gb_per_s"] for r in rows if r.get("workload") == "mem_read_bw"]
best = statistics.median(bw)
isa = next(r["isa"] for r in rows if "isa" in r)
print(f"CPU: {sys.argv[2]}, oneDNN ISA {isa}; read bandwidth (mem_read_bw, the best pass of each of its runs): "
      f"{', '.join(f'{b:.1f}' for b in bw)} GB/s, median {best:.1f}\n")
print("| shape | weights | qiusuo decode t/s | llama.cpp decode t/s | ratio | qiusuo prefill t/s | llama.cpp prefill t/s | ratio | qiusuo GB/s read | of the bandwidth | rounds |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
md = statistics.median
key = lambda r: (r.get("shape"), r.get("format"))
for s, f in sorted({key(r) for r in rows if "shape" in r}, key=lambda k: (k[0], ["f32", "int8", "int4"].index(k[1]))):
    ours = [r for r in rows if key(r) == (s, f) and r.get("peer") == "qiusuo"]
    peer = [r for r in rows if key(r) == (s, f) and r.get("peer") == "llama.cpp"]
    dec, pre = md(r["tokens_per_s"] for r in ours), md(r["prefill_tokens_per_s"] for r in ours)
    gbs = md(r["step_gb_per_s"] for r in ours)
    if peer:
        pdec, ppre = md(r["tokens_per_s"] for r in peer), md(r["prefill_tokens_per_s"] for r in peer)
        cells = f"{pdec:.1f} | {dec / pdec:.2f}x | {pre:.0f} | {ppre:.0f} | {pre / ppre:.2f}x"
    else:
        cells = f"- | - | {pre:.0f} | - | -"
    name = {"f32": "f32", "int8": "int8 (vs Q8_0)", "int4": "int4 g128 (vs Q4_0)"}[f]
    print(f"| {s} | {name} | {dec:.1f} | {cells} | {gbs:.1f} | {100 * gbs / best:.0f}% | {len(ours)} |")
EOF
