#!/bin/bash
# Process CPU ms per training step at 1 thread, for comparing builds on a shared, loaded
# machine (where wall time measures the neighbours): perf's task-clock of
# `qiusuo bench WORKLOAD --iters 12` minus that of `--iters 2`, divided by 10 (the model
# set-up and the warm-up steps cancel). Usage: scripts/cpu_per_step.sh QIUSUO_BINARY WORKLOAD [BENCH ARGS]
# (e.g. --bf16; environment such as QS_DISABLE=c1 passes through).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: scripts/cpu_per_step.sh QIUSUO_BINARY WORKLOAD [BENCH ARGS]" >&2; exit 2; }
command -v perf >/dev/null || { echo "cpu_per_step.sh: needs perf (Debian package linux-perf; a measuring tool, not needed to build or test)" >&2; exit 2; }
bin=$1 workload=$2
shift 2
extra=("$@")
cpu_ms() { perf stat -x, -e task-clock "$bin" bench "$workload" "${extra[@]}" --threads 1 --iters "$1" 2>&1 >/dev/null | grep task-clock | cut -d, -f1; }
a=$(cpu_ms 2)
b=$(cpu_ms 12)
python3 -c "print('$bin $workload cpu_ms/step %.1f' % (($b - $a) / 10))"
