#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (ASan + UBSan, clang 14): each for SECONDS on a working
# corpus seeded from fuzz/corpus/<name>/ (copied to build/fuzz/corpus/<name>, which keeps
# what the fuzzer adds), with libFuzzer's own RSS and malloc limits so that a huge
# allocation is a finding too. Crashes are written to build/fuzz/findings/<name>/.
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS=30] [JOBS=1]
#   TARGET: safetensors checkpoint tokenizer_json idx graph nifti lidc_xml dicom voc image
#
# Exit status: 0 when no target found anything, 1 otherwise. Builds the `fuzz` preset first.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-all} seconds=${2:-30} jobs=${3:-1}
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
command -v clang++-14 >/dev/null || { echo "fuzz: clang++-14 is needed (Debian package clang-14)" >&2; exit 1; }
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz >/dev/null
all=(safetensors checkpoint tokenizer_json idx graph nifti lidc_xml dicom voc image)
[ "$target" = all ] && targets=("${all[@]}") || targets=("$target")
found=0
for t in "${targets[@]}"; do
  bin=build/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz: no target '$t' (one of: ${all[*]})" >&2; exit 1; }
  corpus=build/fuzz/corpus/$t findings=build/fuzz/findings/$t
  mkdir -p "$corpus" "$findings"
  cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  log=build/fuzz/$t.log
  set +e
  par=()
  [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")  # parallel jobs log to fuzz-N.log in the cwd
  (cd build/fuzz && ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "./fuzz_$t" "corpus/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
    -max_len=65536 "${par[@]}" -artifact_prefix="findings/$t/" -print_final_stats=1) >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  crashes=$(ls "$findings" | wc -l)
  echo "fuzz $t: $runs executions in ${seconds} s, exit $rc, $crashes finding(s) in $findings (log: $log)"
  if [ $rc -ne 0 ] || [ "$crashes" -gt 0 ]; then found=1; grep -m3 -E "ERROR|SUMMARY|deadly" "$log" || true; fi
done
exit $found
