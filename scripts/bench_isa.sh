#!/usr/bin/env bash
# The fast paths chosen by ISA, measured on this machine: f32, bf16 (autocast) and INT8
# workloads of qiusuo beside the PyTorch 1.13 peer (shared/peers/, OpenBLAS), in ROUNDS
# alternating rounds, as docs/results/bench.md's per-CPU tables want them. Prints each
# run as it goes, then a Markdown table of the medians with the CPU's ISA.
#
#   scripts/bench_isa.sh [ROUNDS=5] [THREADS=2] [--no-peer]
#
# Compare ratios from one run of this script, never times from another day or CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} threads=${2:-2} peer=1
[ "${3:-}" = "--no-peer" ] && peer=0
q=build/release/qiusuo
[ -x "$q" ] || { echo "bench_isa: build first (cmake --preset release && cmake --build --preset release)" >&2; exit 1; }
peers="$(cd .. && pwd)/shared/peers"
[ $peer -eq 0 ] || [ -d "$peers" ] || { echo "bench_isa: no $peers (or pass --no-peer)" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
isa=$($q info | sed -n 's/.*CPU ISA in use: \([a-z0-9_]*\).*/\1/p')
echo "bench_isa: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), oneDNN ISA $isa, $threads threads, $rounds rounds" >&2

cnn="cnn_train_b128 cnn_infer_b64_fp32 cnn_infer_b64_int8 cnn3d_train_b8_32cube"
lm="lm_train_b8_n256 lm_fwd_b1_n256_fp32 lm_fwd_b1_n256_int8dyn lm_fwd_b1_n256_bf16"
for r in $(seq "$rounds"); do
  echo "round $r" >&2
  $q bench $cnn $lm --json --threads "$threads" | tee -a "$out/ours.jsonl" >&2
  $q bench cnn_train_b128 cnn3d_train_b8_32cube lm_train_b8_n256 --json --bf16 \
    --threads "$threads" | tee -a "$out/ours.jsonl" >&2
  if [ $peer -eq 1 ]; then
    /usr/bin/python3 "$peers/torch_cnn.py" "$threads" | tee -a "$out/torch.jsonl" >&2
    /usr/bin/python3 "$peers/torch_lm.py" "$threads" | tee -a "$out/torch.jsonl" >&2
  fi
done

/usr/bin/python3 - "$out" "$isa" "$threads" <<'EOF'
import json, sys, statistics, os
out, isa, threads = sys.argv[1], sys.argv[2], sys.argv[3]
def load(name):
    rows = {}
    path = os.path.join(out, name)
    if not os.path.exists(path): return rows
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"): continue
        r = json.loads(line)
        for field in ("images_per_s", "volumes_per_s", "tokens_per_s", "ms"):
            if field in r:
                rows.setdefault(r["workload"], (field, []))[1].append(r[field])
                break
    return rows
ours, torch = load("ours.jsonl"), load("torch.jsonl")
med = lambda v: statistics.median(v)
def speed(field, v): return v if field != "ms" else 1.0 / v   # higher is better
print(f"\n{isa}, {threads} threads; medians of {len(next(iter(ours.values()))[1])} alternating rounds\n")
print("| workload | field | qiusuo | PyTorch 1.13 | qiusuo vs PyTorch | vs our f32 |")
print("|---|---|---|---|---|---|")
base = {"cnn_infer_b64_int8": "cnn_infer_b64_fp32", "lm_fwd_b1_n256_int8dyn": "lm_fwd_b1_n256_fp32",
        "lm_fwd_b1_n256_bf16": "lm_fwd_b1_n256_fp32"}
for w, (field, v) in ours.items():
    m = med(v)
    f32 = base.get(w, w[:-5] if w.endswith("_bf16") else None)
    rel = ""
    if f32 and f32 in ours and f32 != w:
        rel = f"{speed(field, m) / speed(field, med(ours[f32][1])):.2f}x"
    t = torch.get(w)
    tm = f"{med(t[1]):.4g}" if t else "–"
    ratio = f"{speed(field, m) / speed(field, med(t[1])):.2f}x" if t else "–"
    print(f"| {w} | {field} | {m:.4g} | {tm} | {ratio} | {rel} |")
print("\n(ratios are speeds: above 1 means qiusuo is faster; 'vs our f32' compares a bf16 or INT8 row with its f32 row)")
EOF
