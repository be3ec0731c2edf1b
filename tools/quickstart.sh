#!/usr/bin/env bash
# Sets everything up and runs the main job on the default data: SLAT training
# of the zoo convnet on Fashion-MNIST (ε = 0.1, 3 epochs on 30,000 images),
# then FGSM and PGD-20 on 1000 test images, with a results table. About a
# minute on an idle 2-core machine once set up. The run lands in runs/quickstart (replaced each time).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bin/slatrun version
out=runs/quickstart
bin/slatrun train --model convnet --data fashion-mnist --method slat --eps 0.1 \
  --epochs 3 --train-n 30000 --val-n 500 --log-every 0 --out "$out" --overwrite
bin/slatrun eval --model "$out/model.onnx" --data fashion-mnist --eps 0.1 \
  --attacks fgsm,pgd-20 --test-n 1000 --out "$out/eval.json"
