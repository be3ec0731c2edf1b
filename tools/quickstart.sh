#!/usr/bin/env bash
# Sets everything up and runs the main job on the default data.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bin/slatrun version
