#!/usr/bin/python3
"""Generate torch_cnn.onnx and torch_cnn_expected.json for package graphs.

A small CNN with BatchNorm, MaxPool (one overlapping), ReLU and Linear,
exported by torch.onnx.export in training mode with BN preserved, plus what
PyTorch computes for one training step on a fixed batch: logits, mean
cross-entropy, d loss/d x, d loss/d every parameter (keyed by its ONNX
initializer name) and the BN running statistics after the step's forward pass.

The reference is computed in float64 from exactly the float32 values stored in
the ONNX file, so a float32 run of the derived graph should match it to about
1e-5 relative.

Needs PyTorch (1.13 is what produced the committed files) and the onnx package:
    /usr/bin/python3 graphs/testdata/make_torch_cnn.py
"""

import copy
import json
import os

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ONNX_PATH = os.path.join(HERE, "torch_cnn.onnx")
JSON_PATH = os.path.join(HERE, "torch_cnn_expected.json")
OPSET = 17  # the highest torch 1.13 exports
SEED = 0
BATCH = 4


class TorchCNN(nn.Module):
    """1×12×12 → conv-bn-relu-maxpool(2) → conv-bn-relu-maxpool(3, s2, p1) → linear(10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool1 = nn.MaxPool2d(2)  # 12 → 6, windows do not overlap
        self.conv2 = nn.Conv2d(4, 8, 3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)  # 6 → 3, windows overlap
        self.fc = nn.Linear(8 * 3 * 3, 10)

    def forward(self, x):
        h = self.pool1(torch.relu(self.bn1(self.conv1(x))))
        h = self.pool2(torch.relu(self.bn2(self.conv2(h))))
        return self.fc(torch.flatten(h, 1))


def flat(t):
    return [float(v) for v in t.detach().double().reshape(-1).tolist()]


def main():
    torch.manual_seed(SEED)
    model = TorchCNN()
    # Non-trivial BN affine parameters and running statistics, so a wrong
    # gradient or update rule for them cannot pass by accident.
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    model.train()
    # Export a copy: tracing runs the model in train mode, which updates the
    # running statistics of the module it traces.
    exported = copy.deepcopy(model)
    x_example = torch.rand(2, 1, 12, 12)
    torch.onnx.export(
        exported,
        x_example,
        ONNX_PATH,
        opset_version=OPSET,
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
    )
    m = onnx.load(ONNX_PATH)
    onnx.checker.check_model(m)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}

    # Map every parameter and BN running statistic to the initializer the
    # exporter gave it: by name where it kept the state_dict name, otherwise
    # by the node input it feeds.
    state = model.state_dict()
    names = {}  # state_dict key → initializer name
    for key in state:
        if key.endswith("num_batches_tracked"):
            continue
        if key in inits:
            names[key] = key
    slots = {  # (op type, ordinal among nodes of that type, input index) → key
        ("Conv", 0, 1): "conv1.weight", ("Conv", 0, 2): "conv1.bias",
        ("Conv", 1, 1): "conv2.weight", ("Conv", 1, 2): "conv2.bias",
        ("Gemm", 0, 1): "fc.weight", ("Gemm", 0, 2): "fc.bias",
    }
    for i, bn in enumerate(("bn1", "bn2")):
        for j, suffix in enumerate(("weight", "bias", "running_mean", "running_var")):
            slots[("BatchNormalization", i, j + 1)] = f"{bn}.{suffix}"
    count = {}
    for node in m.graph.node:
        k = count.get(node.op_type, 0)
        count[node.op_type] = k + 1
        for idx, inp in enumerate(node.input):
            key = slots.get((node.op_type, k, idx))
            if key is None:
                continue
            if inp not in inits:
                raise SystemExit(f"{key} feeds {node.op_type} {node.name} input {idx} as {inp!r}, not an initializer")
            if names.setdefault(key, inp) != inp:
                raise SystemExit(f"{key} maps to both {names[key]} and {inp}")
    missing = [k for k in state if not k.endswith("num_batches_tracked") and k not in names]
    if missing:
        raise SystemExit(f"no initializer for {missing}")
    # Parameters are exported as they are; running statistics as the trace's
    # train-mode forward pass left them. The ONNX file is the truth: load it.
    with torch.no_grad():
        for key, init in names.items():
            have = state[key]
            if tuple(inits[init].shape) != tuple(have.shape):
                raise SystemExit(f"initializer {init} {inits[init].shape} does not fit {key} {tuple(have.shape)}")
            if "running" not in key and not np.array_equal(inits[init], have.numpy()):
                raise SystemExit(f"initializer {init} does not hold {key}")
            have.copy_(torch.from_numpy(np.array(inits[init])))

    # The reference step, in float64, from the exported float32 values.
    ref = copy.deepcopy(model).double()
    ref.train()
    g = torch.Generator().manual_seed(SEED + 1)
    x = torch.rand(BATCH, 1, 12, 12, generator=g).double().requires_grad_(True)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    logits = ref(x)
    loss = nn.functional.cross_entropy(logits, y)
    params = dict(ref.named_parameters())
    grads = torch.autograd.grad(loss, [x] + list(params.values()))
    grad_x, pgrads = grads[0], dict(zip(params.keys(), grads[1:]))
    buffers = dict(ref.named_buffers())

    bn_nodes = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    bn_form = []
    for n in bn_nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        bn_form.append(f"{n.name}: {len(n.input)} inputs, {len(n.output)} outputs {list(n.output)}, attributes {attrs}")
    ops = [n.op_type for n in m.graph.node]
    notes = (
        f"Exported by torch {torch.__version__} with torch.onnx.export(opset_version={OPSET}, "
        f"training=TrainingMode.PRESERVE, do_constant_folding=False); opset import "
        f"{[(o.domain, o.version) for o in m.opset_import]}, IR version {m.ir_version}. "
        f"Node ops in order: {ops}. BatchNormalization nodes: {'; '.join(bn_form)}. "
        "Reference values are float64, computed in PyTorch train mode (BN on batch statistics, "
        "biased variance to normalize) from the float32 initializer values; loss is the mean "
        "cross-entropy over the batch; stats_next is running = 0.9*running + 0.1*batch with "
        "PyTorch's unbiased batch variance (n/(n-1) times the biased one, n = N*H*W) for running_var."
    )
    out = {
        "notes": notes,
        "x": flat(x),
        "x_shape": list(x.shape),
        "y": [int(v) for v in y.tolist()],
        "loss": float(loss.item()),
        "logits": flat(logits),
        "logits_shape": list(logits.shape),
        "grad_x": flat(grad_x),
        "grads": {names[k]: flat(v) for k, v in pgrads.items()},
        "stats_next": {names[k]: flat(v) for k, v in buffers.items() if not k.endswith("num_batches_tracked")},
    }
    with open(JSON_PATH, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")

    print("opset", [(o.domain, o.version) for o in m.opset_import], "ir", m.ir_version)
    print("inputs", [i.name for i in m.graph.input], "outputs", [o.name for o in m.graph.output])
    print("initializers:")
    for t in m.graph.initializer:
        print(f"  {t.name} {list(t.dims)} {onnx.TensorProto.DataType.Name(t.data_type)}")
    print("nodes:")
    for n in m.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        print(f"  {n.op_type} {n.name}: {list(n.input)} -> {list(n.output)} {attrs}")
    print("mapping:", names)
    print("loss", out["loss"])


if __name__ == "__main__":
    main()
