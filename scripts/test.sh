#!/usr/bin/env bash
# The test command of the README: installs dependencies, builds the release preset
# and runs the default ctest suite (everything but the `slow` label).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release -j2 "$@"
