#!/usr/bin/env bash
# Installs what slatrun needs on a Debian/Ubuntu machine and builds it:
#   - Debian packages: gcc (cgo), npm (to fetch ONNX Runtime), dataset-fashion-mnist,
#     libdnnl-dev (oneDNN, loaded at run time for the fast CPU training kernels)
#     (installed only when running as root or with sudo; otherwise it says what is missing)
#   - the ONNX Runtime shared library (tools/install-ort.sh)
#   - bin/slatrun
# Idempotent: run it as often as you like.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v gcc >/dev/null || need+=(gcc)
command -v npm >/dev/null || need+=(npm)
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
ldconfig -p 2>/dev/null | grep -q "libdnnl.so.2 " || need+=(libdnnl-dev)  # oneDNN: the fast CPU training kernels
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
  echo "setup: Go is missing: install Go 1.26 (https://go.dev/doc/install), or any Go >= 1.21, which fetches 1.26 itself" >&2
  exit 1
fi

tools/install-ort.sh
mkdir -p bin
go build -o bin/slatrun ./cmd/slatrun
echo "setup: built bin/slatrun"
