#!/usr/bin/env bash
# Installs the ONNX Runtime shared library slatrun loads at run time.
#
# It takes libonnxruntime.so.1 (CPU build, x86-64 Linux) out of the npm package
# onnxruntime-node and puts it in a cache outside the repository:
#   ${SLATRUN_CACHE:-$HOME/.cache/slatrun}/onnxruntime-<version>/libonnxruntime.so.1
# The script is idempotent: a library that is already there is kept.
# Users with a CUDA build or another OS point slatrun at their own library with
# --ort-lib or $ONNXRUNTIME_LIB instead.
set -euo pipefail

version=${ORT_VERSION:-1.24.1}
cache=${SLATRUN_CACHE:-$HOME/.cache/slatrun}
dest="$cache/onnxruntime-$version"
lib="$dest/libonnxruntime.so.1"

if [ -s "$lib" ]; then
  echo "install-ort: ONNX Runtime $version already at $lib"
  exit 0
fi
command -v npm >/dev/null || { echo "install-ort: npm is missing (apt-get install npm)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
( cd "$work" && npm pack --silent "onnxruntime-node@$version" >/dev/null )
tgz=$(ls "$work"/onnxruntime-node-*.tgz)
tar -xzf "$tgz" -C "$work" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
mkdir -p "$dest"
cp "$work/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "install-ort: ONNX Runtime $version installed at $lib"
