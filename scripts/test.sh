#!/usr/bin/env bash
# The test command of the README: installs dependencies (with the tests' own: --tests),
# builds a CMake preset (release by default; debug-asan and ref-only also work) and runs
# its ctest suite (everything but the `slow` label). Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Let ccache share objects between checkouts of the project (paths made relative).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
preset=release
case "${1:-}" in
  release|debug-asan|ref-only) preset=$1; shift ;;
esac
scripts/install-deps.sh --tests
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
ctest --preset "$preset" -j2 "$@"
