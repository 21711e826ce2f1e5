#!/usr/bin/env bash
# The kill harness of issue 19 (docs/reliability.md): trains a small LM with a checkpoint
# after every step, kills it with SIGKILL at a random moment (during steps and during
# saves), resumes from last.safetensors, and repeats until a run finishes; after every kill
# each file under a checkpoint's name must load. The final checkpoint must equal, byte for
# byte, that of a run that was never interrupted. Prints the kills survived.
#
#   scripts/kill_harness.sh [KILLS=100] [WORKDIR=/tmp/qiusuo-kill-harness] [STEPS=4000]
#
# STEPS must outlast the kills (each run trains for 0.05 to 0.65 s before its kill); older
# step files are deleted as the run goes, so the folder holds a few checkpoints at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-100} work=${2:-/tmp/qiusuo-kill-harness} steps=${3:-4000}
Q=$PWD/build/release/qiusuo
[ -x "$Q" ] || { echo "kill_harness: build first (cmake --build --preset release)" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"
LM=(train lm --layers 1 --d-model 32 --heads 2 --seq 64 --batch 4 --steps "$steps" --eval-every 0 --eval-windows 1
    --threads 1 --quiet)
"$Q" "${LM[@]}" --out "$work/straight" >/dev/null 2>&1  # saves its last step only
LM+=(--save-every 1)
out=$work/killed done_kills=0 runs=0 seed=${KILL_SEED:-1}
RANDOM=$seed
while :; do
  resume=()
  [ -f "$out/last.safetensors" ] && resume=(--resume "$out/last.safetensors")
  "$Q" "${LM[@]}" "${resume[@]}" --out "$out" >/dev/null 2>"$work/err" &
  pid=$!
  runs=$((runs + 1))
  if [ "$done_kills" -lt "$kills" ]; then
    sleep "0.$(printf '%03d' $((RANDOM % 600 + 50)))"
    if kill -9 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      done_kills=$((done_kills + 1))
      # Every file under a checkpoint's name loads (a half-written one would not).
      for f in "$out"/*.safetensors; do
        [ -e "$f" ] || continue
        "$Q" generate "$f" --prompt a --max-tokens 1 --threads 1 >/dev/null 2>&1 ||
          { echo "kill_harness: after kill $done_kills, $f does not load" >&2; exit 1; }
      done
      ls -1v "$out"/step-*.safetensors 2>/dev/null | head -n -2 | xargs -r rm -f
      continue
    fi
  fi
  wait "$pid" || { echo "kill_harness: run $runs failed:" >&2; cat "$work/err" >&2; exit 1; }
  [ -f "$out/step-$steps.safetensors" ] && break
done
tmp=$(find "$out" -name '*.tmp*' | wc -l)  # each run removes those of the runs before it (io::OutDirLock)
if cmp -s "$work/straight/step-$steps.safetensors" "$out/step-$steps.safetensors"; then
  echo "kill_harness: $done_kills kills survived in $runs runs; step $steps equals the uninterrupted run byte for byte;" \
       "$tmp temporary file(s) left behind"
else
  echo "kill_harness: after $done_kills kills the final checkpoint differs from the uninterrupted run's" >&2
  exit 1
fi
