#!/usr/bin/env bash
# The kill harness of issue 19 (docs/reliability.md): trains a small model with a checkpoint
# after every step, kills it with SIGKILL at a random moment (during steps and during
# saves), resumes from last.safetensors, and repeats until a run finishes; after every kill
# each file under a checkpoint's name must load. The final checkpoint must equal, byte for
# byte, that of a run that was never interrupted. Prints the kills survived.
#
#   scripts/kill_harness.sh [KILLS=100] [WORKDIR=/tmp/qiusuo-kill-harness] [STEPS=4000]
#   MODEL=cnn scripts/kill_harness.sh [KILLS=100] [WORKDIR] [EPOCHS=100]
#
# MODEL=lm (the default): a 1-layer LM, STEPS steps of 4 x 64 tokens; kills 0.05 to 0.65 s after
# each start. MODEL=cnn: the Fashion-MNIST CNN on 512 training images, batches of 32 (16 steps an
# epoch), EPOCHS epochs; kills 0.3 to 1.1 s after each start (loading the data takes ~0.45 s).
# The run must outlast the kills; older step files are deleted as the run goes, so the folder
# holds a few checkpoints at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${MODEL:-lm}
kills=${1:-100} work=${2:-/tmp/qiusuo-kill-harness}
Q=$PWD/build/release/qiusuo
[ -x "$Q" ] || { echo "kill_harness: build first (cmake --build --preset release)" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"
case $model in
  lm)
    steps=${3:-4000}
    TRAIN=(train lm --layers 1 --d-model 32 --heads 2 --seq 64 --batch 4 --steps "$steps" --eval-every 0
           --eval-windows 1 --threads 1 --quiet)
    final=step-$steps.safetensors kill_min=50 kill_span=600
    loads() { "$Q" generate "$1" --prompt a --max-tokens 1 --threads 1; }
    ;;
  cnn)
    steps=${3:-100}
    TRAIN=(train cnn --epochs "$steps" --limit-train 512 --limit-test 64 --batch 32 --threads 1)
    final=epoch-$steps.safetensors kill_min=300 kill_span=800
    loads() { "$Q" eval cnn "$1" --limit-test 16 --threads 1; }
    ;;
  *) echo "kill_harness: MODEL must be lm or cnn, got '$model'" >&2; exit 2 ;;
esac
"$Q" "${TRAIN[@]}" --out "$work/straight" >/dev/null 2>&1  # saves its last step (LM) or each epoch (CNN)
TRAIN+=(--save-every 1)
out=$work/killed done_kills=0 runs=0 seed=${KILL_SEED:-1}
RANDOM=$seed
while :; do
  resume=()
  [ -f "$out/last.safetensors" ] && resume=(--resume "$out/last.safetensors")
  "$Q" "${TRAIN[@]}" "${resume[@]}" --out "$out" >/dev/null 2>"$work/err" &
  pid=$!
  runs=$((runs + 1))
  if [ "$done_kills" -lt "$kills" ]; then
    ms=$((RANDOM % kill_span + kill_min))
    sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
    if kill -9 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      done_kills=$((done_kills + 1))
      # Every file under a checkpoint's name loads (a half-written one would not).
      for f in "$out"/*.safetensors; do
        [ -e "$f" ] || continue
        loads "$f" >/dev/null 2>"$work/load_err" ||
          { echo "kill_harness: after kill $done_kills, $f does not load:" >&2; cat "$work/load_err" >&2; exit 1; }
      done
      for kind in step epoch; do  # keep the newest two of each: the checks above stay short
        { ls -1v "$out"/$kind-*.safetensors 2>/dev/null || true; } | head -n -2 | xargs -r rm -f
      done
      continue
    fi
  fi
  wait "$pid" || { echo "kill_harness: run $runs failed:" >&2; cat "$work/err" >&2; exit 1; }
  [ -f "$out/$final" ] && break
done
tmp=$(find "$out" -name '*.tmp*' | wc -l)  # each run removes those of the runs before it (io::OutDirLock)
if cmp -s "$work/straight/$final" "$out/$final"; then
  echo "kill_harness ($model): $done_kills kills survived in $runs runs; $final equals the uninterrupted run byte for byte;" \
       "$tmp temporary file(s) left behind"
else
  echo "kill_harness: after $done_kills kills the final checkpoint differs from the uninterrupted run's" >&2
  exit 1
fi
