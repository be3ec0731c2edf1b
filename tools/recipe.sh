#!/usr/bin/env bash
# The Fashion-MNIST recipe of the README's results table: convnet width 16,
# ε = 0.1, batch 128, 5 epochs, cyclic lr to 0.2, SGD momentum 0.9, weight
# decay 5e-4, seed 0, full training set (1000 held out for the probe); then
# PGD-50-10 (step ε/4) on the first 1000 test images, for model.onnx and
# best.onnx.
#
#   tools/recipe.sh [METHOD...]      (default: slat fgsm-rs fgsm standard)
#
# Runs go to runs/recipe/METHOD; each method takes roughly 20-40 minutes on
# 2 cores. Set THREADS to pin ONNX Runtime's intra-op threads.
set -euo pipefail
cd "$(dirname "$0")/.."
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(slat fgsm-rs fgsm standard)
bin=bin/slatrun
[ -x "$bin" ] || go build -o "$bin" ./cmd/slatrun
threads=${THREADS:-0}
for m in "${methods[@]}"; do
  out=runs/recipe/$m
  if [ -f "$out/state.bin" ]; then   # resumes, or returns at once if finished
    "$bin" train --resume "$out" --threads "$threads"
  else
    "$bin" train --model convnet --data fashion-mnist --method "$m" --eps 0.1 --epochs 5 \
      --batch 128 --lr 0.2 --schedule cyclic --seed 0 --val-n 1000 --threads "$threads" --out "$out"
  fi
  for ck in model best; do
    [ -f "$out/$ck.onnx" ] || continue
    "$bin" eval --model "$out/$ck.onnx" --data fashion-mnist --eps 0.1 --attacks pgd-50-10 \
      --test-n 1000 --eval-batch 250 --threads "$threads" --out "$out/eval-$ck.json"
  done
done
