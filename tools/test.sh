#!/usr/bin/env bash
# The project's test command: makes sure the ONNX Runtime library is installed,
# then vets and runs every package's tests. Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-ort.sh >/dev/null
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go') | grep -v onnxpb || true)
if [ -n "$unformatted" ]; then
  echo "test: gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go test -count=1 -timeout 20m "$@" ./...
