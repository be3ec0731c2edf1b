"""Tiny float64 interpreter of slatrun's forward ONNX graph (the ops convnet uses) in PyTorch."""
import gzip
import struct
import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn.functional as F


class Net:
    def __init__(self, path, dtype=torch.float64):
        m = onnx.load(path)
        self.g = m.graph
        self.dtype = dtype
        self.w = {}
        for i in self.g.initializer:
            a = numpy_helper.to_array(i).copy()
            self.w[i.name] = torch.tensor(a, dtype=dtype) if a.dtype.kind == 'f' else torch.tensor(a)

    def __call__(self, x):
        env = dict(self.w)
        env[self.g.input[0].name] = x
        for n in self.g.node:
            a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
            i = [env[k] for k in n.input]
            op = n.op_type
            if op == 'Constant':
                out = torch.tensor(numpy_helper.to_array(a['value']).copy(), dtype=self.dtype)
            elif op == 'Sub':
                out = i[0] - i[1]
            elif op == 'Div':
                out = i[0] / i[1]
            elif op == 'Add':
                out = i[0] + i[1]
            elif op == 'Relu':
                out = torch.relu(i[0])
            elif op == 'Conv':
                p = list(a.get('pads', [0, 0, 0, 0]))
                assert p[0] == p[2] and p[1] == p[3]
                assert a.get('group', 1) == 1 and list(a.get('dilations', [1, 1])) == [1, 1]
                out = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, stride=list(a.get('strides', [1, 1])), padding=(p[0], p[1]))
            elif op == 'BatchNormalization':
                out = F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get('epsilon', 1e-5))
            elif op == 'GlobalAveragePool':
                out = i[0].mean(dim=(2, 3), keepdim=True)
            elif op == 'Flatten':
                out = i[0].flatten(a.get('axis', 1))
            elif op == 'Gemm':
                A, B = i[0], i[1]
                if a.get('transA', 0): A = A.t()
                if a.get('transB', 0): B = B.t()
                out = a.get('alpha', 1.0) * (A @ B)
                if len(i) > 2: out = out + a.get('beta', 1.0) * i[2]
            else:
                raise NotImplementedError(op)
            env[n.output[0]] = out
        return env[self.g.output[0].name]


def read_idx(path):
    with gzip.open(path, 'rb') as f:
        data = f.read()
    _, _, nd = struct.unpack('>HBB', data[:4])
    dims = struct.unpack('>' + 'I' * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def fmnist_test(n, root='/usr/share/datasets/fashion-mnist'):
    x = read_idx(root + '/t10k-images-idx3-ubyte.gz')[:n].astype(np.float32) / 255.0
    y = read_idx(root + '/t10k-labels-idx1-ubyte.gz')[:n].astype(np.int64)
    return torch.tensor(x).view(n, 1, 28, 28), torch.tensor(y)
