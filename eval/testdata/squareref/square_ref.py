"""Float64 re-implementation of AutoAttack's untargeted L-inf Square (standard version:
p_init 0.8, 5000 queries, margin loss, no schedule rescaling, 1 restart), written from the
reference's semantics, run on a slatrun ONNX model through onnxtorch."""
import argparse
import json
import math
import sys
import time
import torch
from onnxtorch import Net, fmnist_test

torch.set_num_threads(1)


def p_sel(it, p_init, n_queries, rescale):
    if rescale:
        it = int(it / n_queries * 10000)
    for k, edge in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)):
        if it <= edge:
            return p_init / 2 ** k
    return p_init / 512


def margin(net, x, y):
    z = net(x)
    zy = z.gather(1, y[:, None])[:, 0]
    z = z.clone()
    z.scatter_(1, y[:, None], -math.inf)
    return zy - z.max(1)[0]


def square(net, x, y, eps, n_queries, p_init, gen, rescale=False, per_sample=False, traj_at=()):
    n, c, h, w = x.shape
    sgn = lambda shape: torch.sign(2 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1)
    xb = torch.clamp(x + eps * sgn([n, c, 1, w]), 0, 1)
    mm = margin(net, xb, y)
    q = torch.ones(n)
    traj = {0: mm.clone()}
    for it in range(n_queries):
        idx = (mm > 0).nonzero()[:, 0]
        if idx.numel() == 0:
            break
        m = idx.numel()
        p = p_sel(it, p_init, n_queries, rescale)
        s = min(max(int(round(math.sqrt(p * h * w))), 1), min(h, w))
        nd = torch.zeros([m, c, h, w], dtype=torch.float64)
        if per_sample:
            vh = (torch.rand(m, generator=gen, dtype=torch.float64) * (h - s)).long()
            vw = (torch.rand(m, generator=gen, dtype=torch.float64) * (w - s)).long()
            sg = sgn([m, c, 1, 1])
            for r in range(m):
                nd[r, :, vh[r]:vh[r] + s, vw[r]:vw[r] + s] = 2 * eps * sg[r]
        else:
            vh = int(torch.rand(1, generator=gen, dtype=torch.float64) * (h - s))
            vw = int(torch.rand(1, generator=gen, dtype=torch.float64) * (w - s))
            nd[:, :, vh:vh + s, vw:vw + s] = 2 * eps * sgn([c, 1, 1])
        xc = x[idx]
        xn = torch.clamp(torch.min(torch.max(xb[idx] + nd, xc - eps), xc + eps), 0, 1)
        mn = margin(net, xn, y[idx])
        imp = (mn < mm[idx]) | (mn <= 0)
        mm[idx] = torch.where(imp, mn, mm[idx])
        xb[idx] = torch.where(imp[:, None, None, None], xn, xb[idx])
        q[idx] += 1
        if it + 1 in traj_at:
            traj[it + 1] = mm.clone()
    return mm, q, xb, traj


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', required=True)
    ap.add_argument('--n', type=int, default=200)
    ap.add_argument('--eps', type=float, default=0.1)
    ap.add_argument('--queries', type=int, default=5000)
    ap.add_argument('--p-init', type=float, default=0.8)
    ap.add_argument('--restarts', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--rescale', action='store_true')
    ap.add_argument('--per-sample', action='store_true', help='one window per sample (as slatrun), not one per batch')
    ap.add_argument('--only', default='', help='comma-separated sample indices')
    ap.add_argument('--float32', action='store_true')
    args = ap.parse_args()
    dt = torch.float32 if args.float32 else torch.float64
    net = Net(args.model, dt)
    x, y = fmnist_test(args.n)
    x = x.to(dt)
    ids = torch.arange(args.n)
    if args.only:
        ids = torch.tensor([int(v) for v in args.only.split(',')])
    x, y = x[ids], y[ids]
    with torch.no_grad():
        clean = margin(net, x, y)
        ok = clean > 0
        print(f'clean {ok.sum().item()}/{len(ids)}', file=sys.stderr)
        gen = torch.Generator().manual_seed(args.seed)
        robust = ok.clone()
        t0 = time.time()
        out = {}
        for r in range(args.restarts):
            sel = robust.nonzero()[:, 0]
            if sel.numel() == 0:
                break
            mm, q, xb, traj = square(net, x[sel], y[sel], args.eps, args.queries, args.p_init, gen,
                                     args.rescale, args.per_sample, traj_at=(10, 50, 200, 500, 1000, 2000, 3000, 4000, 5000))
            # the final check, as AutoAttack's perturb does
            assert (xb - x[sel]).abs().max() <= args.eps + 1e-9 and xb.min() >= 0 and xb.max() <= 1
            fin = margin(net, xb, y[sel])
            robust[sel] = fin > 0
            for j, i in enumerate(sel.tolist()):
                if fin[j] > 0:
                    out[int(ids[i])] = {'clean_margin': clean[i].item(), 'final_margin': fin[j].item(),
                                        'traj': {k: v[j].item() for k, v in traj.items()}}
            print(f'restart {r}: robust {robust.sum().item()}/{len(ids)}  {time.time() - t0:.1f}s', file=sys.stderr)
        print(json.dumps({'robust_acc': robust.float().mean().item(), 'robust': [int(ids[i]) for i in robust.nonzero()[:, 0]],
                          'survivors': out}, indent=1))


if __name__ == '__main__':
    main()
