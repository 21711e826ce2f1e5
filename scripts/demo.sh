#!/usr/bin/env bash
# The main job of the README: installs dependencies, builds, and runs `qiusuo demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Let ccache share objects between checkouts of the project (paths made relative).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
exec build/release/qiusuo demo "$@"
