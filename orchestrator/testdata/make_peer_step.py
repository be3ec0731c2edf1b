#!/usr/bin/python3
"""Generate peer_step.json: one TRADES step and one GradAlign step of the
PyTorch peer (tools/peer/peer.py), in float64, for TestPeerStep.

The model is the zoo convnet at width 4 with 10 classes (peer.Net), its
weights drawn in float32 (PyTorch's default init, then non-trivial BN affine
parameters and running statistics) and trained for PRETRAIN standard SGD
steps on other images; the batch is the first 8 Fashion-MNIST training
images. Every number the two sides share is float32-representable: weights,
images (k/255 in float32), the random draws and the hyperparameters (ε, α, λ,
lr, weight decay are rounded to float32 first). The step itself runs in
float64: peer.Trainer.trades_step and peer.Trainer.gradalign_step on a
.double() copy of the model, unchanged, except for their one random draw,
which is recorded and handed to the Go side: GradAlign's η is drawn in
float32 (peer.uniform_like is replaced for the call), and TRADES's start
0.001·z (float32 in the peer already) has z TRADES_START times wider than
N(0, I) (torch.randn is wrapped for the call; see TRADES_START).

A draw is kept only if a float32 run of the same peer code makes the same
sign steps (the same x′ for TRADES, the same x+δ for GradAlign) as the
float64 run, so that a float32 implementation cannot land on a different
adversarial input by a rounding-level sign flip; the script tries draw seeds
in order and records the one it kept.

Needs PyTorch (1.13 made the committed file) and Debian's dataset-fashion-mnist:
    /usr/bin/python3 orchestrator/testdata/make_peer_step.py
It is deterministic: rerunning it with the same PyTorch reproduces the file.
"""

import base64
import copy
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "peer"))
import peer  # noqa: E402

OUT = os.path.join(HERE, "peer_step.json")
DATA = "/usr/share/datasets/fashion-mnist"
WIDTH, CLASSES, BATCH = 4, 10, 8
WEIGHT_SEED = 0
F32 = lambda v: float(np.float32(v))  # noqa: E731
EPS = F32(0.1)
LR = F32(0.05)
MOMENTUM = F32(0.9)
WD = F32(5e-4)
BETA, STEPS, ALPHA = 6.0, 10, F32(EPS / 4)
# GradAlign's λ: docs/methods.md's choice for Fashion-MNIST at ε = 0.1 (the
# default rule would give about 31, where λ·∂R/∂θ is about three times ∇CE
# and the check would see less of the CE part).
LAMBDA = 2.0
# TRADES's start is x + 0.001·z, z ~ N(0, I). At that scale the first inner
# gradient is the difference of two nearly equal softmaxes, which float32
# resolves to ~3e-3 relative: about ten of the 6272 first signs differ from
# float64, and ten sign steps spread that to ~200 pixels of x′ (PyTorch's own
# float32 run does the same). The fixture's draw is z times TRADES_START, so
# that the sign steps are well conditioned; the code path is the same.
TRADES_START = 20.0
PRETRAIN = 300
DRAW_SEEDS = range(1, 50)  # tried in order; the first without float32 sign flips is kept


def b64(t, dtype):
    a = np.ascontiguousarray(t.detach().cpu().numpy().astype(dtype).reshape(-1))
    return base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode()


def make_model():
    torch.manual_seed(WEIGHT_SEED)
    model = peer.Net("convnet", width=WIDTH, classes=CLASSES)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, peer.BN):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


def pretrain(model):
    """PRETRAIN standard SGD steps (float32, batch 64, lr 0.1) on Fashion-MNIST
    training images other than the fixture's batch: weights from the middle
    of a run rather than from the init, whose near-uniform outputs make
    TRADES's KL gradients tiny and their signs fragile in float32."""
    xs, ys = peer.load_fmnist(DATA, "train")
    tr = peer.Trainer(model, "standard", EPS)
    g = torch.Generator().manual_seed(WEIGHT_SEED)
    for _ in range(PRETRAIN):
        idx = torch.randint(BATCH, len(ys), (64,), generator=g)
        tr.step(xs[idx], ys[idx], 0.1, 0.9)


def load_batch():
    x = peer.read_idx(os.path.join(DATA, "train-images-idx3-ubyte.gz"))[:BATCH]
    y = peer.read_idx(os.path.join(DATA, "train-labels-idx1-ubyte.gz"))[:BATCH]
    xf = torch.from_numpy(x.astype(np.float32)).div_(255.0).unsqueeze(1)  # float32 k/255
    return xf, torch.from_numpy(y.astype(np.int64))


def run(model32, dtype, method, x32, y, draw_seed):
    """One peer step of method on a copy of model32 cast to dtype. Returns the
    trainer, the model after the step, the loss, the draw (float32) and the
    adversarial input the train pass saw."""
    model = copy.deepcopy(model32).to(dtype)
    model.train()
    tr = peer.Trainer(model, method, EPS, weight_decay=WD, trades_beta=BETA,
                      trades_steps=STEPS, gradalign_lambda=LAMBDA)
    tr.gen.manual_seed(draw_seed)
    x = x32.to(dtype)
    seen = {}
    if method == "trades":
        orig_randn, inner = torch.randn, tr.trades_perturb

        def randn(shape, generator=None):  # trades_perturb's one draw, TRADES_START times wider
            z = TRADES_START * orig_randn(shape, generator=generator)
            seen["draw"] = 0.001 * z  # float32, as trades_perturb scales it
            return z

        def perturb(xx):
            xa = inner(xx)
            seen["xadv"] = xa
            return xa
        tr.trades_perturb = perturb
        torch.randn = randn
        try:
            loss, _ = tr.step(x, y, LR, MOMENTUM)
        finally:
            torch.randn = orig_randn
        assert seen["draw"].dtype == torch.float32
    else:
        orig_uniform, orig_box = peer.uniform_like, peer.box

        def uniform32(xx, r, gen):
            eta = torch.empty(xx.shape, dtype=torch.float32).uniform_(-r, r, generator=gen)
            seen["draw"] = eta
            return eta.to(xx.dtype)

        def box(xx, xa, eps):
            out = orig_box(xx, xa, eps)
            seen.setdefault("xadv", out)  # the first box is FGSM's x+δ
            return out
        peer.uniform_like, peer.box = uniform32, box
        try:
            loss, _ = tr.step(x, y, LR, MOMENTUM)
        finally:
            peer.uniform_like, peer.box = orig_uniform, orig_box
    return tr, model, float(loss), seen["draw"], seen["xadv"]


def main():
    torch.set_num_threads(1)
    model32 = make_model()
    pretrain(model32)
    x, y = load_batch()
    state0 = {k: v.clone() for k, v in model32.state_dict().items()}
    out = {
        "notes": ("One TRADES and one GradAlign step of tools/peer/peer.py (PyTorch %s), float64, "
                  "on the zoo convnet (width %d, %d classes) with the weights in params/stats and the "
                  "first %d Fashion-MNIST training images (x_u8: pixels k, x = float32(k)/255). "
                  "Tensors are base64 little-endian: float32 for inputs, float64 for results. "
                  "grads are the parameter gradients of the step's loss (no weight decay; the "
                  "peer's SGD step, the first, leaves p - lr*(grad + weight_decay*p)); "
                  "stats_next the BN running statistics after the step; loss is what the peer's "
                  "step returns (TRADES: CE + beta*KL; GradAlign: CE at x+delta, reg is R); "
                  "draw is the step's random draw (TRADES: the start x'-x, %g times the "
                  "reference's 0.001*N(0,I) scale; GradAlign: eta); x_adv is the input the "
                  "train pass saw (TRADES: x'; GradAlign: x+delta)." %
                  (torch.__version__, WIDTH, CLASSES, BATCH, TRADES_START)),
        "torch": torch.__version__,
        "model": "convnet", "width": WIDTH, "classes": CLASSES, "batch": BATCH,
        "eps": EPS, "lr": LR, "momentum": MOMENTUM, "weight_decay": WD,
        "x_u8": base64.b64encode((x * 255).round().to(torch.uint8).numpy().tobytes()).decode(),
        "y": [int(v) for v in y],
        "params": {}, "stats": {},
    }
    for k, v in state0.items():
        if k in ("mean", "std") or k.endswith("num_batches_tracked"):
            continue
        group = "stats" if "running" in k else "params"
        out[group][peer.zoo_name(k)] = b64(v, np.float32)
    for method in ("trades", "gradalign"):
        for draw_seed in DRAW_SEEDS:
            tr64, m64, loss, draw, xadv = run(model32, torch.float64, method, x, y, draw_seed)
            _, _, _, draw32, xadv32 = run(model32, torch.float32, method, x, y, draw_seed)
            assert torch.equal(draw, draw32)
            flips = int(((xadv32.double() - xadv).abs() > 1e-5).sum())
            print("%s: draw seed %d, %d inputs differ between the float32 and float64 runs" %
                  (method, draw_seed, flips))
            if flips == 0:
                break
        else:
            raise SystemExit("%s: no draw seed without float32 sign flips" % method)
        rec = {"draw_seed": draw_seed, "draw": b64(draw, np.float32), "loss": loss,
               "x_adv": b64(xadv, np.float32),
               "grads": {peer.zoo_name(k): b64(p.grad, np.float64) for k, p in m64.named_parameters()},
               "stats_next": {peer.zoo_name(k): b64(v, np.float64) for k, v in m64.state_dict().items()
                              if "running" in k}}
        if method == "trades":
            rec.update(beta=BETA, steps=STEPS, alpha=ALPHA)
        else:
            rec.update({"lambda": LAMBDA, "reg": tr64.last_reg})
        out[method] = rec
        print("%s: loss %.10g%s" % (method, loss, ", R %.10g" % tr64.last_reg if method == "gradalign" else ""))
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote %s (%d bytes)" % (OUT, os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
