#!/usr/bin/env bash
# The viewer's browser test (ctest browser.viewer): installs playwright-core from the
# lock file into WORK (npm ci, offline first: scripts/install-deps.sh fills npm's cache),
# then drives Debian's chromium against `qiusuo serve` on CKPT.
# usage: tests/browser/run.sh QIUSUO CKPT WORK
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
qiusuo="$1" ckpt="$2" work="$3"
mkdir -p "$work"
cp "$here/package.json" "$here/package-lock.json" "$here/viewer.test.mjs" "$work/"
cd "$work"
if ! npm ci --prefer-offline --no-audit --no-fund --loglevel=error >npm.log 2>&1; then
  cat npm.log >&2
  echo "browser test: npm ci failed (no network and no cached playwright-core?); run scripts/install-deps.sh" >&2
  exit 1
fi
exec node viewer.test.mjs "$qiusuo" "$ckpt"
