#!/usr/bin/env bash
# Installs every Debian package qiusuo's build, tests and demo need. Idempotent.
# Run as root or with sudo on Debian 12. With --tests (scripts/test.sh passes it) it also
# installs what only the tests use: npm and ONNX Runtime for the ONNX checks, qemu-user for
# the emulated-CPU checks.
set -euo pipefail
tests=0
[ "${1:-}" = --tests ] && tests=1
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PKGS=(
  # build
  cmake ninja-build g++ ccache pkg-config
  # core libraries; oneDNN's CMake config looks for OpenCL (libdnnl-dev only recommends it)
  libdnnl-dev ocl-icd-opencl-dev nlohmann-json3-dev libfmt-dev zlib1g-dev
  # decoding JPEG and PNG files from outside (defect detection's images)
  libjpeg-dev libpng-dev
  # ONNX export: the ONNX protobuf classes, checker and shape inference
  libonnx-dev libprotobuf-dev
  # medical imaging (the CT application): DICOM through DCMTK, NIfTI-1/2 through libnifti2,
  # LIDC-IDRI's annotation XML through pugixml
  libdcmtk-dev libnifti2-dev libpugixml-dev
  # data-parallel training: Open MPI's headers and library (the libqiusuo_mpi.so plugin) and
  # its launcher, mpirun (the dist tests run two ranks over loopback)
  libopenmpi-dev openmpi-bin
  # tests and benchmarks; wrk: the HTTP load generator of scripts/load_test.sh (ctest load.serve)
  libgtest-dev libbenchmark-dev wrk
  # the oracle for golden tests (torchvision: the ResNet oracle) and the benchmark peer (never a
  # runtime dependency);
  # OpenBLAS, or Debian's PyTorch falls back to netlib BLAS (shared/peers/README.md)
  python3 python3-torch python3-torchvision python3-numpy python3-regex libopenblas0-pthread
  # data: Fashion-MNIST in /usr/share/datasets/fashion-mnist
  dataset-fashion-mnist
  # text: the King James Bible (`bible` program + text), the default language-model corpus
  bible-kjv bible-kjv-text
  # attention views: PNG writer and TrueType rasteriser (stb), the label font, the
  # viewer's HTTP server, and its end-to-end test: chromium driven through chromedriver
  # by Node.js (W3C WebDriver over Node's built-in fetch; no npm packages)
  libstb-dev fonts-dejavu-core libcpp-httplib-dev chromium chromium-driver nodejs
)
# npm, for ONNX Runtime in the ONNX tests (tests/onnx): Debian's nodejs does not bring it,
# but a nodejs from elsewhere may (and then conflicts with Debian's npm package).
[ $tests -eq 0 ] || command -v npm >/dev/null 2>&1 || PKGS+=(npm)
# qemu-user, for the ctests that run qiusuo on emulated CPUs (portability.*: an AVX2-only
# Haswell, a Nehalem below x86-64-v3)
[ $tests -eq 0 ] || PKGS+=(qemu-user)
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

# Checked by name too: a package can be installed while its program is not where the
# browser test looks (tests/browser/run.sh), and a missing tool must stop here, not skip a test.
for tool in node /usr/bin/chromium /usr/bin/chromedriver; do
  command -v "$tool" >/dev/null || { echo "install-deps: $tool not found after installing the packages; the browser test needs it" >&2; exit 1; }
done

[ $tests -eq 1 ] || exit 0
# ONNX Runtime (npm onnxruntime-node, CPU; its install script only fetches GPU extras, which
# are not wanted) at the version package-lock.json pins, for tests/onnx/ort_check.js.
ort=tests/onnx
cd "$(dirname "$0")/.."
# npm ci checks every package against the sha512 in package-lock.json.
if [ "$(node -p "try { require('./$ort/node_modules/onnxruntime-node/package.json').version } catch (e) { '' }")" != \
     "$(node -p "require('./$ort/package.json').dependencies['onnxruntime-node']")" ]; then
  echo "install-deps: installing onnxruntime-node into $ort/node_modules"
  if ! npm ci --prefix "$ort" --ignore-scripts --no-audit --no-fund >/dev/null; then
    # A machine that cannot reach the npm registry (offline, or behind a proxy whose CA it
    # lacks) stops here unless told to go on; the tests that need ONNX Runtime then report
    # themselves skipped (tests/onnx/ort_check.js exits 77), never passed.
    if [ "${QS_ALLOW_NO_ORT:-}" = 1 ]; then
      echo "install-deps: WARNING: onnxruntime-node could not be installed from the npm registry (above);" \
           "QS_ALLOW_NO_ORT=1: going on, and the onnx.ort_* tests will be reported as skipped" >&2
    else
      echo "install-deps: onnxruntime-node could not be installed from the npm registry (above); the ONNX Runtime" \
           "tests need it. QS_ALLOW_NO_ORT=1 goes on without it (those tests are then reported as skipped)" >&2
      exit 1
    fi
  fi
fi
if [ -d "$ort/node_modules/onnxruntime-node" ]; then
  node -e "require('./$ort/node_modules/onnxruntime-node')" ||
    { echo "install-deps: onnxruntime-node is installed but does not load; the ONNX Runtime tests need it" >&2; exit 1; }
fi
