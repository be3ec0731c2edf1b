"""White-box check: the smallest margin a float64 PGD on the margin (3 restarts x 100 steps,
cosine step size) finds for given test samples at several eps.
Usage: /usr/bin/python3 pgd_probe.py MODEL.onnx 72,94,134,199"""
import sys
import torch
from onnxtorch import Net, fmnist_test
torch.set_num_threads(1)
net = Net(sys.argv[1])
ids = [int(v) for v in sys.argv[2].split(',')]
x, y = fmnist_test(200)
x, y = x[ids].double(), y[ids]
def margin(xx):
    z = net(xx)
    zy = z.gather(1, y[:, None])[:, 0]
    zo = z.scatter(1, y[:, None], -1e9).max(1)[0]
    return zy - zo
for eps in [0.04, 0.06, 0.08, 0.1]:
    best = torch.full((len(ids),), 1e9, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for rs in range(3):
        d = (torch.rand(x.shape, generator=g, dtype=torch.float64) * 2 - 1) * eps
        for k in range(100):
            d.requires_grad_(True)
            m = margin(torch.clamp(x + d, 0, 1))
            best = torch.minimum(best, m.detach())
            gr, = torch.autograd.grad(m.sum(), d)
            a = eps / 4 * (0.5 * (1 + torch.cos(torch.tensor(k / 100 * 3.14159))))
            d = torch.clamp(d.detach() - a * gr.sign(), -eps, eps)
            d = torch.clamp(x + d, 0, 1) - x
    print(f'eps {eps}: PGD margin-min per sample', [round(v, 3) for v in best.tolist()])
