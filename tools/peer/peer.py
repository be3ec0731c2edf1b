#!/usr/bin/python3
"""slatrun's PyTorch peer: the zoo models, the training methods of docs/methods.md and
a reference trainer, written as fast as eager PyTorch honestly gets on a CPU.

Two modes:

  bench (default)  time training steps on synthetic data (fixed seed), one
                   line per method (and memory format), --json for one JSON
                   object per line;
  --train          train convnet on Fashion-MNIST with docs/methods.md's schedule and
                   report clean and PGD-50-10 accuracy on the first --test-n
                   test images: the reference to compare slatrun's numbers with.

Run it with Debian's interpreter, which has torch: /usr/bin/python3.
See tools/peer/README.md.
"""

import argparse
import contextlib
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

METHODS = ("standard", "fgsm", "fgsm-rs", "n-fgsm", "slat", "pgd-7", "free-8", "trades", "gradalign")

# ---------------------------------------------------------------------------
# Models: exactly graphs/zoo (models.go, layers.go). Bias-free convolutions,
# BatchNorm eps 1e-5 momentum 0.1 (ONNX's 0.9), Linear head with bias, and
# PyTorch's default init (U(±1/√fan_in) for conv and linear weights and the
# linear bias; γ=1, β=0). Normalization (x−mean)/std is the first op.
# ---------------------------------------------------------------------------


class BN(nn.BatchNorm2d):
    """BatchNorm2d whose running statistics can be frozen in training mode.

    While BN.update is False a training-mode forward normalizes with the
    batch statistics and leaves running_mean/var (and num_batches_tracked)
    untouched. Attack passes set BN.update to BN.attack_update: True by
    default (--bn-stats all), so every training-mode pass updates the
    statistics in the order it runs, as plain PyTorch train mode does in the
    reference; False with --bn-stats train (the train pass only, slatrun's
    rule before 2026-12)."""

    update = True
    attack_update = True

    def forward(self, x):
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var,
                                self.weight, self.bias, False, 0.0, self.eps)
        if BN.update:
            return F.batch_norm(x, self.running_mean, self.running_var,
                                self.weight, self.bias, True, self.momentum, self.eps)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def conv(cin, cout, k, stride, pad):
    return nn.Conv2d(cin, cout, k, stride, pad, bias=False)


class Block(nn.Module):
    """Pre-activation residual block (layers.go block):
    o = ReLU(BN1(x)); shortcut = Conv1×1/s(o) if s≠1 or cin≠cout else x;
    out = Conv3×3(ReLU(BN2(Conv3×3/s(o)))) + shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = BN(cin)
        self.conv1 = conv(cin, cout, 3, stride, 1)
        self.bn2 = BN(cout)
        self.conv2 = conv(cout, cout, 3, 1, 1)
        self.shortcut = conv(cin, cout, 1, stride, 0) if stride != 1 or cin != cout else None

    def forward(self, x):
        o = F.relu(self.bn1(x), inplace=True)
        sc = x if self.shortcut is None else self.shortcut(o)
        h = self.conv1(o)
        h = self.conv2(F.relu(self.bn2(h), inplace=True))
        return h + sc


def _bounds(h):
    """Per-sample, per-channel min and max of h over H, W, shaped [N,C,1,1]."""
    if h.is_contiguous() or not h.is_contiguous(memory_format=torch.channels_last):
        return h.amin(dim=(2, 3), keepdim=True), h.amax(dim=(2, 3), keepdim=True)
    n, c, hh, ww = h.shape  # NHWC in memory: one pass over an [N, H·W, C] view
    lo, hi = torch.aminmax(h.permute(0, 2, 3, 1).reshape(n, hh * ww, c), dim=1)
    return lo.view(n, c, 1, 1), hi.view(n, c, 1, 1)


class _FusedDomainClip(torch.autograd.Function):
    """Forward clamp(h+δ, lo, hi), backward the identity in h: the same as
    h + stopgrad(clip(δ, lo−h, hi−h)) up to the rounding of h + (hi−h) at
    clipped elements, in two elementwise passes and one allocation."""

    @staticmethod
    def forward(ctx, h, delta):
        lo, hi = _bounds(h)
        return torch.add(h, delta).clamp_(lo, hi)

    @staticmethod
    def backward(ctx, g):
        return g, None


DOMAIN_CLIP = "exact"


def _domain_clip(h, delta):
    """ĥ = h + stopgrad(clip(δ, lo−h, hi−h)), lo/hi the per-sample,
    per-channel min/max of h over H, W in this pass (docs/methods.md, SLAT step 3)."""
    if DOMAIN_CLIP == "fused":
        return _FusedDomainClip.apply(h, delta)
    with torch.no_grad():
        lo, hi = _bounds(h)
        a = torch.sub(lo, h)
        b = torch.sub(hi, h)
        torch.maximum(delta, a, out=a)
        torch.minimum(a, b, out=a)
    return h + a


class Net(nn.Module):
    """convnet (1×28×28, width 16: stem, stage1..3) or preactresnet18
    (3×32×32, width 64: conv1, layer1..4) with the zoo's head
    BN → ReLU → GlobalAveragePool → Linear(classes).

    forward(x, taps=list) appends the two tap tensors (convnet: stem, stage1;
    preactresnet18: conv1, layer1) to the list; forward(x, deltas=[δ0, δ1])
    applies SLAT's domain-clipped latent perturbation at them."""

    def __init__(self, model, width=None, classes=10):
        super().__init__()
        self.model = model
        if model == "convnet":
            w = width or 16
            mean, std, cin = [0.2860], [0.3530], 1
            self.stem = conv(cin, w, 3, 1, 1)
            self.stage1 = Block(w, w, 1)
            self.rest = nn.Sequential(Block(w, 2 * w, 2), Block(2 * w, 4 * w, 2))
            feat = 4 * w
            self.tap_names = ("stem", "stage1")
        elif model == "preactresnet18":
            w = width or 64
            mean, std, cin = [0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616], 3
            self.stem = conv(cin, w, 3, 1, 1)  # "conv1"
            self.stage1 = nn.Sequential(Block(w, w, 1), Block(w, w, 1))  # "layer1"
            rest, c = [], w
            for cout in (2 * w, 4 * w, 8 * w):  # layer2..layer4
                rest += [Block(c, cout, 2), Block(cout, cout, 1)]
                c = cout
            self.rest = nn.Sequential(*rest)
            feat = 8 * w
            self.tap_names = ("conv1", "layer1")
        else:
            raise ValueError("unknown model %r" % model)
        self.input_shape = (cin, 28, 28) if model == "convnet" else (cin, 32, 32)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.bn = BN(feat)
        self.fc = nn.Linear(feat, classes)

    def forward(self, x, taps=None, deltas=None):
        h = self.stem((x - self.mean) / self.std)
        if taps is not None:
            taps.append(h)
        if deltas is not None:
            h = _domain_clip(h, deltas[0])
        h = self.stage1(h)
        if taps is not None:
            taps.append(h)
        if deltas is not None:
            h = _domain_clip(h, deltas[1])
        h = self.rest(h)
        h = F.relu(self.bn(h), inplace=True)
        return self.fc(h.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------
# Training steps (docs/methods.md). Every attack pass runs in training mode
# (updating the BN running statistics unless --bn-stats train) with the
# parameters not requiring gradients, and asks autograd only for ∂ℓ/∂x (and
# the taps): no parameter gradient is ever computed outside the training pass.
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def attack_pass(params):
    BN.update = BN.attack_update
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        BN.update = True


def input_grad(model, x, y):
    """∂ℓ/∂x at x (ℓ = batch-mean cross-entropy)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (g,) = torch.autograd.grad(loss, [x])
    return g


def box(x, xa, eps):
    """Project xa onto the ε-ball around x and the box [0,1]."""
    if eps is not None and math.isfinite(eps):
        xa = torch.min(torch.max(xa, x - eps), x + eps)
    return xa.clamp_(0.0, 1.0)


def uniform_like(x, r, gen):
    return torch.empty_like(x).uniform_(-r, r, generator=gen)


class Trainer:
    """One model, one SGD optimizer, one method; step(x, y, lr, momentum)
    performs one optimizer step and returns the loss and logits of the
    training pass."""

    def __init__(self, model, method, eps, eta=None, seed=0, input_step=0.9,
                 latent_step=1.8, latent_radius=1.0, fgsm_rs_alpha=1.25,
                 pgd_alpha=2.5, weight_decay=5e-4, trades_beta=6.0, trades_steps=10,
                 trades_step=0.25, gradalign_lambda=None):
        self.model = model
        self.method = method
        self.eps = eps
        self.eta = eps if eta is None else eta
        self.params = [p for p in model.parameters()]
        self.opt = torch.optim.SGD(self.params, lr=0.0, momentum=0.9,
                                   weight_decay=weight_decay, foreach=True)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.input_step = input_step * eps
        self.latent_step = latent_step * self.eta
        self.latent_radius = latent_radius * self.eta  # 0: no ±η clip
        self.fgsm_rs_alpha = fgsm_rs_alpha * eps
        if method.startswith("pgd-"):
            self.pgd_k = int(method[4:])
            self.pgd_alpha = pgd_alpha * eps / self.pgd_k
        if method.startswith("free-"):
            self.free_m = int(method[5:])
        self.free_delta = None
        self.trades_beta = trades_beta
        self.trades_k = trades_steps
        self.trades_alpha = trades_step * eps
        # GradAlign's λ: the reference's rule 0.02·10^(ε/(8/255)), held at its
        # value for 16/255 (λ = 2) beyond, unless given (slatrun's default).
        self.gradalign_lambda = (0.02 * 10 ** (min(eps, 16 / 255) / (8 / 255))
                                 if gradalign_lambda is None else gradalign_lambda)
        self.track_l1 = False  # SLAT: log mean ‖∂ℓ/∂h_l‖₁ per sample, per tap
        self.grad_l1 = None

    # -- perturbation of one minibatch (no parameter gradients) --
    def perturb(self, x, y):
        m, eps = self.method, self.eps
        if m == "standard":
            return x, None
        with attack_pass(self.params):
            if m == "fgsm":
                g = input_grad(self.model, x, y)
                return box(x, x + eps * g.sign(), eps), None
            if m == "fgsm-rs":
                xa = box(x, x + uniform_like(x, eps, self.gen), eps)
                g = input_grad(self.model, xa, y)
                return box(x, xa.add_(g.sign_(), alpha=self.fgsm_rs_alpha), eps), None
            if m == "n-fgsm":
                xa = x + uniform_like(x, 2 * eps, self.gen)  # start not boxed
                g = input_grad(self.model, xa, y)
                return box(x, xa.add_(g.sign_(), alpha=eps), None), None
            if m.startswith("pgd-"):
                xa = box(x, x + uniform_like(x, eps, self.gen), eps)
                for _ in range(self.pgd_k):
                    g = input_grad(self.model, xa, y)
                    xa = box(x, xa.add_(g.sign_(), alpha=self.pgd_alpha), eps)
                return xa, None
            if m == "slat":
                return self.slat_pass1(x, y)
        raise ValueError("unknown method %r" % m)

    def slat_pass1(self, x, y):
        xg = x.detach().requires_grad_(True)
        taps = []
        loss = F.cross_entropy(self.model(xg, taps=taps), y)
        grads = torch.autograd.grad(loss, [xg] + taps)
        with torch.no_grad():
            gx, gl = grads[0], grads[1:]
            eps = self.eps
            xa = box(x, x + torch.clamp(self.input_step * gx.sign(), -eps, eps), None)
            deltas = []
            for g in gl:
                d = g.sign().mul_(self.latent_step)
                if self.latent_radius > 0:
                    d.clamp_(-self.latent_radius, self.latent_radius)
                deltas.append(d)
            if self.track_l1:
                self.grad_l1 = [float(g.abs().sum()) / x.shape[0] for g in gl]
        return xa, deltas

    def set_lr(self, lr, momentum):
        for g in self.opt.param_groups:
            g["lr"] = lr
            g["momentum"] = momentum

    def train_pass(self, xa, y, deltas=None):
        out = self.model(xa, deltas=deltas)
        loss = F.cross_entropy(out, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach(), out.detach()

    def step(self, x, y, lr, momentum):
        self.set_lr(lr, momentum)
        if self.method.startswith("free-"):
            return self.free_step(x, y)
        if self.method == "trades":
            return self.trades_step(x, y)
        if self.method == "gradalign":
            return self.gradalign_step(x, y)
        xa, deltas = self.perturb(x, y)
        loss, out = self.train_pass(xa, y, deltas)
        return loss, out

    def free_step(self, x, y):
        """One replay of Free-m (Shafahi et al.): train on x+δ, and with the
        same backward get ∂ℓ/∂x to advance δ by ε·sign, projected and boxed.
        δ is carried across replays and minibatches."""
        eps = self.eps
        if self.free_delta is None or self.free_delta.shape != x.shape:
            self.free_delta = torch.zeros_like(x)
        with torch.no_grad():  # boxed against this minibatch's x
            xa = box(x, x + self.free_delta, eps)
        xa.requires_grad_(True)
        out = self.model(xa)
        loss = F.cross_entropy(out, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            xn = box(x, xa.detach().add_(xa.grad.sign(), alpha=eps), eps)
            self.free_delta = xn.sub_(x)
        return loss.detach(), out.detach()


    def trades_perturb(self, x):
        """TRADES's inner maximization (docs/methods.md), as the reference's
        trades_loss: the model in eval mode (BN on the running statistics,
        which nothing updates), p = softmax(f(x)) fixed, x′ = x + 0.001·N(0, I)
        (not boxed), K steps of α·sign(∇ Σ KL(p ‖ softmax(f(x′)))) projected to
        the ε-ball and [0, 1]; no parameter gradients."""
        model = self.model
        model.eval()
        for p in self.params:
            p.requires_grad_(False)
        try:
            with torch.no_grad():
                p_nat = F.softmax(model(x), dim=1)
            xa = x + 0.001 * torch.randn(x.shape, generator=self.gen)
            for _ in range(self.trades_k):
                xa = xa.detach().requires_grad_(True)
                loss = F.kl_div(F.log_softmax(model(xa), dim=1), p_nat, reduction="sum")
                (g,) = torch.autograd.grad(loss, [xa])
                xa = box(x, xa.detach() + self.trades_alpha * g.sign(), self.eps)
        finally:
            for p in self.params:
                p.requires_grad_(True)
            model.train()
        return xa.detach().clamp(0.0, 1.0)

    def trades_step(self, x, y):
        """One TRADES step: CE(f(x), y) + β·KL(f(x) ‖ f(x′)) in training
        mode, the three forwards in the reference's order (x, then x′ and x
        again), each updating the BN running statistics."""
        xa = self.trades_perturb(x)
        model = self.model
        logits = model(x)
        loss_nat = F.cross_entropy(logits, y)
        loss_rob = F.kl_div(F.log_softmax(model(xa), dim=1), F.softmax(model(x), dim=1),
                            reduction="sum") / x.shape[0]
        loss = loss_nat + self.trades_beta * loss_rob
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach(), logits.detach()


    def gradalign_step(self, x, y):
        """One GradAlign step (docs/methods.md), as the reference's FGSM
        recipe: g1 = ∇ℓ(x) (FGSM's gradient, held constant), δ = ε·sign(g1)
        boxed, CE at x+δ, g2 = ∇ℓ(x+η) with η ~ U[−ε, ε] (not boxed) kept in
        the graph (create_graph), R = mean over the examples with nonzero
        gradients of 1 − cos(g1ᵢ, g2ᵢ), and one backward of CE + λ·R. The BN
        statistics see x, x+δ, x+η in that order (x+η not with --bn-stats
        train)."""
        eps, model = self.eps, self.model
        with attack_pass(self.params):
            g1 = input_grad(model, x, y)
        xa = box(x, x + eps * g1.sign(), eps)
        out = model(xa)
        loss = F.cross_entropy(out, y)
        xe = (x + uniform_like(x, eps, self.gen)).requires_grad_(True)
        BN.update = BN.attack_update
        try:
            le = F.cross_entropy(model(xe), y)
        finally:
            BN.update = True
        (g2,) = torch.autograd.grad(le, [xe], create_graph=True)
        a, b = g1.flatten(1), g2.flatten(1)
        na, nb = a.norm(dim=1), b.norm(dim=1)
        keep = (na != 0) & (nb != 0)
        reg = torch.zeros((), dtype=loss.dtype)
        if bool(keep.any()):
            cos = (a[keep] * b[keep]).sum(1) / (na[keep] * nb[keep])
            reg = (1.0 - cos).mean()
        self.opt.zero_grad(set_to_none=True)
        (loss + self.gradalign_lambda * reg).backward()
        self.opt.step()
        self.last_reg = float(reg)
        return loss.detach(), out.detach()


def cyclic(i, total, lr_max, mom_max=0.9, mom_min=0.8, up=0.4):
    """orchestrator/schedule.go At (PyTorch CyclicLR stepped per minibatch):
    step i uses the values after i scheduler steps; 0 → lr_max at up·total
    → 0, momentum the other way."""
    total = float(total)
    ratio = up
    cycle = math.floor(1 + i / total)
    x = 1 + i / total - cycle
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    return lr_max * scale, mom_max - (mom_max - mom_min) * scale


# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------


def to_format(t, fmt):
    return t.contiguous(memory_format=torch.channels_last) if fmt == "channels_last" else t.contiguous()


def stats(args, method, fmt, times, cpu):
    t = np.array(times)
    med = float(np.median(t))
    return {
        "side": "pytorch", "model": args.model, "method": method, "batch": args.batch,
        "threads": args.threads, "median_ms": round(med, 3),
        "p10_ms": round(float(np.percentile(t, 10)), 3),
        "p90_ms": round(float(np.percentile(t, 90)), 3),
        "images_per_s": round(args.batch / (med / 1e3), 2), "steps": len(times),
        "min_ms": round(float(t.min()), 3), "cpu_median_ms": round(float(np.median(cpu)), 3),
        "warmup": args.warmup, "memory_format": fmt, "domain_clip": DOMAIN_CLIP,
        "malloc": os.environ.get("SLATRUN_PEER_MALLOC", "default"), "torch": torch.__version__,
    }


def bench_runs(args, combos):
    """Times each (method, memory format) in combos with their steps
    interleaved (A, B, A, B, ...) so that load on a shared machine hits them
    alike."""
    eps = args.eps if args.eps is not None else (0.1 if args.model == "convnet" else 8 / 255)
    runs = []
    for method, fmt in combos:
        torch.manual_seed(args.seed)
        model = Net(args.model)
        model.train()
        if fmt == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        tr = Trainer(model, method, eps, seed=args.seed)
        rng = np.random.default_rng(args.seed)
        c, h, w = model.input_shape
        batches = []
        for _ in range(4):
            x = torch.from_numpy(rng.random((args.batch, c, h, w), dtype=np.float32))
            y = torch.from_numpy(rng.integers(0, 10, args.batch)).long()
            batches.append((to_format(x, fmt), y))
        runs.append((method, fmt, tr, batches, [], []))
    total = args.warmup + args.steps
    for i in range(total):
        lr, mom = cyclic(i, total, 0.2)
        for _, fmt, tr, batches, times, cpu in runs:
            x, y = batches[i % len(batches)]
            c0, t0 = time.process_time(), time.perf_counter()
            loss, _ = tr.step(x, y, lr, mom)
            float(loss)  # eager CPU ops are synchronous; this only reads the value
            dt, dc = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
            if i >= args.warmup:
                times.append(dt)
                cpu.append(dc)
    return [stats(args, m, fmt, times, cpu) for m, fmt, _, _, times, cpu in runs]


# Defaults measured on the 2-core AMD EPYC dev box (README): channels_last is
# clearly faster for convnet; for preactresnet18 the loaded box could not tell.
DEFAULT_FORMAT = {"convnet": "channels_last", "preactresnet18": "channels_last"}


def bench(args):
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS and not (m.startswith("pgd-") or m.startswith("free-")):
            sys.exit("peer: unknown method %r (known: %s)" % (m, ", ".join(METHODS)))
    fmt = args.memory_format or DEFAULT_FORMAT[args.model]
    fmts = ["contiguous", "channels_last"] if fmt == "both" else [fmt]
    if not args.json:
        print("# pytorch %s, %s, batch %d, threads %d, %d steps after %d warmup, domain clip %s, malloc %s"
              % (torch.__version__, args.model, args.batch, args.threads, args.steps, args.warmup,
                 DOMAIN_CLIP, os.environ.get("SLATRUN_PEER_MALLOC", "default")))
        print("%-9s %-13s %10s %10s %10s %10s %10s %10s" % (
            "method", "format", "median_ms", "p10_ms", "p90_ms", "min_ms", "cpu_ms", "images/s"))
    if args.interleave:
        groups = [[(m, f) for m in methods for f in fmts]]
    else:
        groups = [[(m, f) for f in fmts] for m in methods]
    for g in groups:
        for r in bench_runs(args, g):
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                print("%-9s %-13s %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f" % (
                    r["method"], r["memory_format"], r["median_ms"], r["p10_ms"], r["p90_ms"], r["min_ms"],
                    r["cpu_median_ms"], r["images_per_s"]), flush=True)


# ---------------------------------------------------------------------------
# train (Fashion-MNIST reference)
# ---------------------------------------------------------------------------


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd)
    if arr.size != int(np.prod(dims)):
        raise ValueError("%s: %d bytes of data for shape %s" % (path, arr.size, dims))
    return arr.reshape(dims)


def load_fmnist(root, split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(root, prefix + "-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(root, prefix + "-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(y.astype(np.int64))


def pgd_eval(model, x, y, eps, alpha, steps, restarts, gen):
    """PGD with restarts as eval/attack.go: uniform boxed start, steps of
    α·sign(∇), projection onto the ε-ball and the box; a row stops moving
    once it is misclassified (at any iterate, the start included) and later
    restarts attack only rows not yet misclassified. Returns the mask of rows
    never misclassified."""
    fooled = torch.zeros(len(y), dtype=torch.bool)
    params = list(model.parameters())
    with attack_pass(params):
        for _ in range(restarts):
            live = (~fooled).nonzero().squeeze(1)
            if len(live) == 0:
                break
            x0, y0 = x[live], y[live]
            xa = box(x0, x0 + uniform_like(x0, eps, gen), eps)
            f = torch.zeros(len(live), dtype=torch.bool)
            for k in range(steps + 1):
                xg = xa.detach().requires_grad_(True)
                out = model(xg)
                f |= out.argmax(1) != y0
                if k == steps:
                    break
                loss = F.cross_entropy(out, y0)
                (g,) = torch.autograd.grad(loss, [xg])
                with torch.no_grad():
                    step = (~f).float().view(-1, 1, 1, 1) * alpha
                    xa = box(x0, xa + step * g.sign(), eps)
            fooled[live] |= f
    return ~fooled


# ---------------------------------------------------------------------------
# Twin runs: slatrun's initial weights and data order, so that one seed is the
# same run on both sides (up to float32 rounding) rather than two draws.
# ---------------------------------------------------------------------------

def zoo_name(key):
    """peer.Net state_dict key → graphs/zoo initializer name."""
    return key.replace("rest.0.", "stage2.").replace("rest.1.", "stage3.")


def load_init_onnx(model, path):
    """Copy the initializers of a slatrun forward graph (slatrun export --model
    convnet --seed S: the initial weights and BN statistics of slatrun train
    --seed S) into model, by the zoo's names."""
    import onnx
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    used = set()
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if key.endswith("num_batches_tracked") or key in ("mean", "std"):
                continue
            name = zoo_name(key)
            if name not in inits or tuple(inits[name].shape) != tuple(t.shape):
                raise SystemExit("peer: --init-onnx %s: no initializer %s of shape %s (for %s)" % (
                    path, name, tuple(t.shape), key))
            t.copy_(torch.from_numpy(inits[name].astype(np.float32)))
            used.add(name)
    extra = sorted(set(inits) - used)
    if extra:
        raise SystemExit("peer: --init-onnx %s: initializers the peer's model does not have: %s" % (path, extra))


_M64 = (1 << 64) - 1
_GOLDEN = 0x9e3779b97f4a7c15


def _mix64(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & _M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & _M64
    return z ^ (z >> 31)


def slatrun_order(n, seed, epoch):
    """The order of epoch (from 0) of slatrun's training loader for seed: its
    splitmix64 stream for shuffling (dataset/rng.go, domain 1) driving a
    Fisher-Yates shuffle from the end with Lemire's unbiased bounded draw
    (dataset/loader.go)."""
    h = _mix64((seed + _GOLDEN) & _M64)
    for word, salt in ((1, 0x2545f4914f6cdd1d), (epoch, 0x632be59bd9b4e019), (0, 0x8cb92ba72f3d8dd7)):
        h = _mix64(h ^ _mix64((word + salt) & _M64))
    s = h
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        un = i + 1
        while True:
            s = (s + _GOLDEN) & _M64
            prod = _mix64(s) * un
            lo = prod & _M64
            if lo >= un or lo >= ((1 << 64) - un) % un:
                break
        j = prod >> 64
        order[i], order[j] = order[j], order[i]
    return torch.tensor(order)


def train(args):
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()
    xtr, ytr = load_fmnist(args.data, "train")
    xte, yte = load_fmnist(args.data, "test")
    if args.train_n:
        xtr, ytr = xtr[:args.train_n], ytr[:args.train_n]
    xte, yte = xte[:args.test_n], yte[:args.test_n]
    model = Net("convnet")
    if args.init_onnx:
        load_init_onnx(model, args.init_onnx)
    fmt = args.memory_format if args.memory_format in ("contiguous", "channels_last") else "contiguous"
    if fmt == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    eps = args.eps if args.eps is not None else 0.1
    tr = Trainer(model, args.method, eps, eta=args.eta, seed=args.seed,
                 latent_radius=args.latent_radius, trades_beta=args.trades_beta,
                 trades_steps=args.trades_steps, gradalign_lambda=args.gradalign_lambda)
    tr.track_l1 = True
    n = len(ytr)
    nb = (n + args.batch - 1) // args.batch
    if args.order == "slatrun":
        nb = n // args.batch  # slatrun's loader drops a short last batch
    replays = tr.free_m if args.method.startswith("free-") else 1
    passes = args.epochs if replays == 1 else max(1, math.ceil(args.epochs / replays))
    total = passes * nb * replays
    gen = torch.Generator().manual_seed(args.seed)
    i = 0
    log, steplog = [], []
    for ep in range(passes):
        model.train()
        perm = slatrun_order(n, args.seed, ep) if args.order == "slatrun" else torch.randperm(n, generator=gen)
        tl, tc, seen, t0 = 0.0, 0, 0, time.perf_counter()
        l1 = np.zeros(2)
        for b in range(nb):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            x, y = to_format(xtr[idx], fmt), ytr[idx]
            for _ in range(replays):
                lr, mom = cyclic(i, total, args.lr)
                loss, out = tr.step(x, y, lr, mom)
                i += 1
            tl += float(loss) * len(y)
            seen += len(y)
            if args.step_log:
                steplog.append(round(float(loss), 6))
            tc += int((out.argmax(1) == y).sum())
            if tr.grad_l1 is not None:
                l1 += tr.grad_l1
        rec = {"epoch": ep + 1, "train_loss": tl / seen, "train_acc": 100.0 * tc / seen,
               "seconds": round(time.perf_counter() - t0, 2)}
        if args.method == "slat":
            rec["grad_l1"] = dict(zip(model.tap_names, (l1 / nb).round(4).tolist()))
        log.append(rec)
        if not args.json:
            print("epoch %d: train loss %.4f acc %.2f%% (%.1fs)%s" % (
                rec["epoch"], rec["train_loss"], rec["train_acc"], rec["seconds"],
                "  |∂ℓ/∂h|₁ %s" % rec["grad_l1"] if "grad_l1" in rec else ""), flush=True)
    train_s = time.perf_counter() - t_start
    model.eval()
    if args.save_onnx:
        # The trained model for other evaluators (slatrun eval): inference
        # form, input x in [0,1], output logits.
        torch.onnx.export(model, xte[:1].clone(), args.save_onnx, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, opset_version=13)
    t0 = time.perf_counter()
    clean = robust = 0
    egen = torch.Generator().manual_seed(args.seed + 7)
    for s in range(0, len(yte), 500):
        x, y = to_format(xte[s:s + 500], fmt), yte[s:s + 500]
        with torch.no_grad():
            clean += int((model(x).argmax(1) == y).sum())
        if args.pgd_steps > 0:
            robust += int(pgd_eval(model, x, y, eps, args.pgd_step * eps, args.pgd_steps,
                                   args.pgd_restarts, egen).sum())
    m = len(yte)
    res = {"side": "pytorch", "mode": "train", "model": "convnet", "method": args.method,
           "epochs": args.epochs, "eps": eps, "eta": tr.eta, "seed": args.seed,
           "train_n": n, "test_n": m, "batch": args.batch, "lr": args.lr,
           "clean_acc": round(100.0 * clean / m, 2),
           "pgd": "PGD-%d-%d step %geps" % (args.pgd_steps, args.pgd_restarts, args.pgd_step),
           "pgd_acc": round(100.0 * robust / m, 2) if args.pgd_steps > 0 else None,
           "train_s": round(train_s, 1), "eval_s": round(time.perf_counter() - t0, 1),
           "threads": args.threads, "domain_clip": DOMAIN_CLIP, "bn_stats": args.bn_stats,
           "malloc": os.environ.get("SLATRUN_PEER_MALLOC", "default"), "epochs_log": log,
           "init": args.init_onnx or "torch", "order": args.order}
    if args.step_log:
        res["step_loss"] = steplog
    if args.json:
        print(json.dumps(res), flush=True)
    else:
        print("%s eps %g: clean %.2f%%, %s %s on %d test images; train %.1fs, eval %.1fs" % (
            args.method, eps, res["clean_acc"], res["pgd"],
            "-" if res["pgd_acc"] is None else "%.2f%%" % res["pgd_acc"], m,
            res["train_s"], res["eval_s"]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="convnet", choices=["convnet", "preactresnet18"])
    p.add_argument("--methods", default="standard,fgsm-rs,slat,pgd-7")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eps", type=float, default=None,
                   help="input budget (default 0.1 for convnet, 8/255 for preactresnet18)")
    p.add_argument("--memory-format", default=None,
                   choices=["contiguous", "channels_last", "both"],
                   help="bench: default per model, the faster one measured (%s)" % DEFAULT_FORMAT)
    p.add_argument("--json", action="store_true")
    p.add_argument("--interleave", action="store_true",
                   help="bench: interleave the steps of all methods (not only of the formats of "
                        "one method), so that their ratios see the same load")
    p.add_argument("--domain-clip", default="exact", choices=["exact", "fused"],
                   help="SLAT's domain clip: exact h + stopgrad(clip(δ, lo−h, hi−h)), or fused "
                        "clamp(h+δ, lo, hi) with an identity backward (equal up to rounding)")
    p.add_argument("--malloc", default="tuned", choices=["tuned", "default"],
                   help="tuned: re-exec with glibc malloc kept from returning big blocks to the "
                        "kernel (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_ huge), so activations "
                        "reuse memory instead of page-faulting fresh mmaps every step")
    t = p.add_argument_group("train (Fashion-MNIST reference, convnet)")
    t.add_argument("--train", action="store_true")
    t.add_argument("--bn-stats", default="all", choices=["all", "train"],
                   help="passes that update the BN running statistics: all (every training-mode pass) or train (the train pass only)")
    t.add_argument("--method", default="standard")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--eta", type=float, default=None, help="latent budget (default eps)")
    t.add_argument("--latent-radius", type=float, default=1.0,
                   help="±radius·η clip of the latent step (0: none)")
    t.add_argument("--trades-beta", type=float, default=6.0, help="TRADES: weight β of the KL term")
    t.add_argument("--trades-steps", type=int, default=10, help="TRADES: inner PGD steps (step ε/4)")
    t.add_argument("--gradalign-lambda", type=float, default=None,
                   help="GradAlign: weight λ of 1 − cos (default 0.02·10^(min(ε, 16/255)/(8/255)))")
    t.add_argument("--lr", type=float, default=0.2, help="peak of the cyclic learning rate")
    t.add_argument("--train-n", type=int, default=0, help="first N training images (0: all)")
    t.add_argument("--test-n", type=int, default=1000)
    t.add_argument("--pgd-steps", type=int, default=50)
    t.add_argument("--pgd-restarts", type=int, default=10)
    t.add_argument("--pgd-step", type=float, default=0.25, help="PGD step in units of eps")
    t.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    t.add_argument("--init-onnx", default="", help="initial weights from this slatrun forward graph "
                   "(slatrun export --model convnet --seed S) instead of PyTorch's init")
    t.add_argument("--order", default="torch", choices=["torch", "slatrun"],
                   help="data order: torch.randperm, or slatrun's loader order for --seed (and its dropped last batch)")
    t.add_argument("--step-log", action="store_true", help="--json: also list every step's training loss")
    t.add_argument("--save-onnx", default="", help="also write the trained model (inference form) to this ONNX file")
    args = p.parse_args()
    if args.malloc == "tuned" and os.environ.get("SLATRUN_PEER_MALLOC") != "tuned":
        env = dict(os.environ, SLATRUN_PEER_MALLOC="tuned", MALLOC_MMAP_MAX_="0",
                   MALLOC_TRIM_THRESHOLD_=str(1 << 40))
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    global DOMAIN_CLIP
    DOMAIN_CLIP = args.domain_clip
    BN.attack_update = args.bn_stats == "all"
    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = True
    if args.train:
        train(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
