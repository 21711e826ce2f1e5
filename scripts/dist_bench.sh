#!/usr/bin/env bash
# Data-parallel scaling on this machine (docs/distributed.md, "Measured"): the same global
# batch trained by one process with all cores, by one process with one core (a rank's
# share of the machine), and by 2 ranks of one core each under mpirun; ROUNDS alternating
# rounds, every throughput printed, then the medians and the efficiencies:
#   strong = 2 ranks / one process with 2 threads  (same global batch, same cores)
#   weak   = 2 ranks / (2 x one process with 1 thread and the per-rank batch)
# Then one LM step's bucket timeline (QS_VERBOSE=dist, 1 MB buckets): which all-reduces
# finished before backward did.
#
#   scripts/dist_bench.sh [ROUNDS=3] [WORKDIR=/tmp/qiusuo-dist-bench]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} work=${2:-/tmp/qiusuo-dist-bench}
Q=$PWD/build/release/qiusuo
[ -x "$Q" ] || { echo "dist_bench: build first (cmake --build --preset release)" >&2; exit 1; }
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI="mpirun --oversubscribe -np 2"
mkdir -p "$work" && cd "$work"
field() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" | tail -1; }
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# The LM of `train lm`'s defaults (3.2M parameters), global batch 16 x 256 tokens.
LM="train lm --steps 12 --seq 256 --eval-every 0 --eval-windows 1 --quiet"
# The Fashion-MNIST CNN, global batch 128, 40 steps.
CNN="train cnn --epochs 1 --limit-train 5120 --limit-test 100"
declare -A got
for r in $(seq 1 "$rounds"); do
  got[lm_2t]+="$($Q $LM --batch 16 --threads 2 --out lm_a 2>/dev/null | field tokens_per_s) "
  got[lm_2r]+="$($MPI $Q $LM --batch 8 --threads 1 --out lm_b 2>/dev/null | field tokens_per_s) "
  got[lm_1t]+="$($Q $LM --batch 8 --threads 1 --out lm_c 2>/dev/null | field tokens_per_s) "
  got[cnn_2t]+="$($Q $CNN --batch 128 --threads 2 --out cnn_a 2>/dev/null | field images_per_s) "
  got[cnn_2r]+="$($MPI $Q $CNN --batch 64 --threads 1 --out cnn_b 2>/dev/null | field images_per_s) "
  got[cnn_1t]+="$($Q $CNN --batch 64 --threads 1 --out cnn_c 2>/dev/null | field images_per_s) "
done
for k in lm_2t lm_2r lm_1t cnn_2t cnn_2r cnn_1t; do echo "$k: ${got[$k]}"; done
for m in lm cnn; do
  a=$(echo ${got[${m}_2t]} | tr ' ' '\n' | median) b=$(echo ${got[${m}_2r]} | tr ' ' '\n' | median)
  c=$(echo ${got[${m}_1t]} | tr ' ' '\n' | median)
  awk -v m=$m -v a=$a -v b=$b -v c=$c 'BEGIN { printf "%s medians: 1 process 2 threads %.0f, 2 ranks %.0f, 1 process 1 thread %.0f; strong %.2f, weak %.2f\n", m, a, b, c, b / a, b / (2 * c) }'
done
echo "LM step timeline, 1 MB buckets (rank 0, step 3 of 3):"
QS_DDP_BUCKET_MB=1 QS_VERBOSE=dist $MPI -x QS_DDP_BUCKET_MB -x QS_VERBOSE $Q train lm --steps 3 --seq 256 --eval-every 0 \
  --eval-windows 1 --quiet --batch 8 --threads 1 --out lm_t 2>&1 | grep '^\[dist\] rank 0 step' | tail -1
