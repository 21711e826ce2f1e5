#!/usr/bin/env bash
# The viewer's browser test (ctest browser.viewer): drives Debian's chromium through
# Debian's chromedriver (W3C WebDriver, spoken by webdriver.mjs with Node's built-in
# fetch; no npm packages) against `qiusuo serve` on CKPT. WORK holds its scratch files
# (and failure.png, the page when a check fails).
# usage: tests/browser/run.sh QIUSUO CKPT WORK
# QS_CHROMIUM and QS_CHROMEDRIVER override /usr/bin/chromium and /usr/bin/chromedriver.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
qiusuo="$1" ckpt="$2" work="$3"
missing=()
command -v node >/dev/null || missing+=("node (package nodejs)")
[ -x "${QS_CHROMIUM:-/usr/bin/chromium}" ] || missing+=("${QS_CHROMIUM:-/usr/bin/chromium} (package chromium)")
[ -x "${QS_CHROMEDRIVER:-/usr/bin/chromedriver}" ] || missing+=("${QS_CHROMEDRIVER:-/usr/bin/chromedriver} (package chromium-driver)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "browser test: missing ${missing[*]}; run scripts/install-deps.sh" >&2
  exit 1
fi
node -e 'process.exit(typeof fetch === "function" ? 0 : 1)' ||
  { echo "browser test: $(command -v node) $(node --version) has no built-in fetch (Node.js 18 or later needed)" >&2; exit 1; }
mkdir -p "$work"
cd "$work"
rm -f failure.png
exec node "$here/viewer.test.mjs" "$qiusuo" "$ckpt"
