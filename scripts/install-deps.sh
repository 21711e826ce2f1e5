#!/usr/bin/env bash
# Installs every Debian package qiusuo's build, tests and demo need. Idempotent.
# Run as root or with sudo on Debian 12.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PKGS=(
  # build
  cmake ninja-build g++ ccache pkg-config
  # core libraries; oneDNN's CMake config looks for OpenCL (libdnnl-dev only recommends it)
  libdnnl-dev ocl-icd-opencl-dev nlohmann-json3-dev libfmt-dev zlib1g-dev
  # tests and benchmarks
  libgtest-dev libbenchmark-dev
  # the oracle for golden tests and the benchmark peer (never a runtime dependency);
  # OpenBLAS, or Debian's PyTorch falls back to netlib BLAS (shared/peers/README.md)
  python3 python3-torch python3-numpy python3-regex libopenblas0-pthread
  # data: Fashion-MNIST in /usr/share/datasets/fashion-mnist
  dataset-fashion-mnist
  # text: the King James Bible (`bible` program + text), the default language-model corpus
  bible-kjv bible-kjv-text
  # attention views: PNG writer and TrueType rasteriser (stb), the label font, the
  # viewer's HTTP server, and the browser its end-to-end test drives (with nodejs/npm)
  libstb-dev fonts-dejavu-core libcpp-httplib-dev chromium nodejs
)
# Debian's nodejs does not bring npm (its own package); a Node.js from elsewhere
# (NodeSource's nodejs) has npm inside and conflicts with Debian's.
if ! command -v npm >/dev/null; then
  if ! dpkg-query -W -f='${Version}' nodejs 2>/dev/null | grep -q nodesource; then PKGS+=(npm); fi
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
else
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The browser test's node packages (tests/browser/package-lock.json: playwright-core only)
# into this user's npm cache, so that ctest's `npm ci --prefer-offline` works offline.
# Installed into a scratch folder (the source tree stays clean); a cached package is not
# downloaded again.
browser_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
command -v npm >/dev/null || { echo "install-deps: npm not found after installing the packages; the browser test needs it" >&2; exit 1; }
command -v chromium >/dev/null || { echo "install-deps: chromium not found after installing the packages" >&2; exit 1; }
if [ -f "$browser_dir/package-lock.json" ]; then
  scratch="$(mktemp -d)"
  cp "$browser_dir/package.json" "$browser_dir/package-lock.json" "$scratch/"
  if (cd "$scratch" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null); then
    echo "install-deps: browser test packages cached (playwright-core)"
  else
    echo "install-deps: npm ci failed for tests/browser; the browser test will fail" >&2
    rm -rf "$scratch"
    exit 1
  fi
  rm -rf "$scratch"
fi
