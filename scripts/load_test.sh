#!/usr/bin/env bash
# Load test of `qiusuo serve` (issue 19): wrk POSTs /api/attention (scripts/load_test.lua, a
# different text each request, so the model runs every time) over CONNECTIONS keep-alive
# connections for SECONDS, after a 3 s warm-up at the same load. Reports requests/s, p50/p99
# latency, non-2xx and 5xx responses, wrk's socket errors, and the server's resident memory:
# after the warm-up, its peak during the run (VmHWM, reset after the warm-up through
# /proc/PID/clear_refs) and at the end.
#
#   scripts/load_test.sh [--seconds 60] [--connections 64] [--wrk-threads 2] [--qiusuo BIN]
#                        [--model CKPT] [--work DIR] [--max-socket-errors N] [--max-rss-growth-mb M]
#
# Without --model it trains a tiny LM first (2 layers, d_model 32, 4 heads, ALiBi; 3 steps).
# Exit status: 0 ok; 1 usage or setup (no wrk, the server did not start); 2 a check failed:
# any 5xx, more socket errors than --max-socket-errors, a peak RSS more than
# --max-rss-growth-mb above the RSS after the warm-up (each bound checked only when given,
# except 5xx, always).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds=60 connections=64 wrk_threads=2 qiusuo="$root/build/release/qiusuo" model="" work=""
max_errors="" max_growth=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2" ;;
    --connections) connections="$2" ;;
    --wrk-threads) wrk_threads="$2" ;;
    --qiusuo) qiusuo="$2" ;;
    --model) model="$2" ;;
    --work) work="$2" ;;
    --max-socket-errors) max_errors="$2" ;;
    --max-rss-growth-mb) max_growth="$2" ;;
    *) echo "load_test: unknown option '$1' (see the usage at the top of $0)" >&2; exit 1 ;;
  esac
  shift 2 || { echo "load_test: $1 needs a value" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "load_test: wrk not found (Debian package wrk; scripts/install-deps.sh)" >&2; exit 1; }
[ -x "$qiusuo" ] || { echo "load_test: no qiusuo binary at $qiusuo; build first or pass --qiusuo" >&2; exit 1; }
[ -n "$work" ] || work="$(mktemp -d /tmp/qs_load.XXXXXX)"
mkdir -p "$work"

if [ -z "$model" ]; then
  "$qiusuo" train lm --steps 3 --layers 2 --d-model 32 --heads 4 --seq 32 --batch 2 --eval-windows 2 --pe alibi \
    --quiet --out "$work/lm" >"$work/train.log" 2>&1 || { cat "$work/train.log" >&2; exit 1; }
  model="$work/lm/last.safetensors"
fi

"$qiusuo" serve --model "$model" --port 0 >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/serve.log")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$port" ] || { echo "load_test: the server did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }

kib() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$pid/status"; }
url="http://127.0.0.1:$port/api/attention"
wrk_run() {  # SECONDS OUTFILE
  wrk -t"$wrk_threads" -c"$connections" -d"$1"s --timeout 10s -s "$root/scripts/load_test.lua" "$url" >"$2" 2>&1 ||
    { echo "load_test: wrk failed:" >&2; cat "$2" >&2; exit 1; }
}
wrk_run 3 "$work/warmup.txt"
rss_warm=$(kib VmRSS)
echo 5 >"/proc/$pid/clear_refs"  # VmHWM := VmRSS now
wrk_run "$seconds" "$work/wrk.txt"
kill -0 "$pid" 2>/dev/null || { echo "load_test: the server died:" >&2; cat "$work/serve.log" >&2; exit 2; }
rss_peak=$(kib VmHWM) rss_end=$(kib VmRSS)

line=$(grep '^RESULT ' "$work/wrk.txt") || { echo "load_test: no RESULT line from wrk:" >&2; cat "$work/wrk.txt" >&2; exit 1; }
val() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
errors=$(( $(val connect) + $(val read) + $(val write) + $(val timeout) ))
growth_mb=$(( (rss_peak - rss_warm) / 1024 ))
echo "load_test: $(val requests) requests in $(val duration_s) s over $connections connections ($wrk_threads wrk threads):" \
     "$(val rps) requests/s, latency p50 $(val p50_ms) ms, p99 $(val p99_ms) ms, max $(val max_ms) ms"
echo "load_test: non-2xx $(val non2xx), 5xx $(val n5xx), socket errors $errors" \
     "(connect $(val connect), read $(val read), write $(val write), timeout $(val timeout))"
echo "load_test: server RSS $((rss_warm / 1024)) MiB after the warm-up, peak $((rss_peak / 1024)) MiB during the run" \
     "(+$growth_mb MiB), $((rss_end / 1024)) MiB at the end"

failed=0
[ "$(val n5xx)" -eq 0 ] || { echo "load_test: FAILED: $(val n5xx) responses were 5xx" >&2; failed=1; }
[ -z "$max_errors" ] || [ "$errors" -le "$max_errors" ] ||
  { echo "load_test: FAILED: $errors socket errors, more than $max_errors" >&2; failed=1; }
[ -z "$max_growth" ] || [ "$growth_mb" -le "$max_growth" ] ||
  { echo "load_test: FAILED: the peak RSS grew $growth_mb MiB over the warm-up's, more than $max_growth" >&2; failed=1; }
[ $failed -eq 0 ] || exit 2
echo "load_test: passed"
