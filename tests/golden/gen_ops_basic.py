"""PyTorch reference fixtures for the elementwise, selection, reduction,
loss and normalisation ops a PyTorch user reaches for first (clamp, abs,
sqrt, pow, SiLU, leaky ReLU, max/min/argmax, where, masked_fill, gather,
MSE/BCE losses, GroupNorm, BatchNorm1d), read by tests/test_ops_basic.c.

Run with Debian's PyTorch (not the python3 first on PATH):

    /usr/bin/python3 tests/golden/gen_ops_basic.py

It writes tests/golden/fixtures/ops_basic.safetensors (committed). The
conventions are gen_ops.py's: float64 computation stored as float32,
gradients as vector-Jacobian products of a random "dout" (d loss = 1 for
the scalar losses), images NHWC, integer tensors I64.
"""
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_ops import nhwc, write  # noqa: E402

torch.set_default_dtype(torch.float64)


def vjp(out, f, inputs, g, prefix):
    """Run y = f(*inputs), backpropagate a random dout (or 1 for a scalar)."""
    for t in inputs:
        t.grad = None
    y = f(*inputs)
    if y.numel() == 1:
        y.backward()
        out[prefix + "out"] = y.reshape(1)
    else:
        dout = torch.randn(y.shape, generator=g)
        (y * dout).sum().backward()
        out[prefix + "out"] = y
        out[prefix + "dout"] = dout
    return y


def gen_unary(out, g):
    # Values away from the kinks (0 for abs / leaky_relu, the clamp bounds).
    x = torch.randn(5, 7, generator=g) * 1.5
    x = torch.where(x.abs() < 0.05, x + 0.1, x)
    x = torch.where((x + 0.5).abs() < 0.03, x + 0.07, x)
    x = torch.where((x - 0.7).abs() < 0.03, x + 0.07, x)
    x.requires_grad_()
    positive = (torch.rand(5, 7, generator=g) * 3 + 0.2).requires_grad_()
    out["x"] = x
    out["positive"] = positive
    cases = {
        "silu": (F.silu, x),
        "abs": (torch.abs, x),
        "sqrt": (torch.sqrt, positive),
        "pow3": (lambda t: t.pow(3.0), x),
        "pow_frac": (lambda t: t.pow(-1.5), positive),
        "clamp": (lambda t: t.clamp(-0.5, 0.7), x),
        "leaky_relu": (lambda t: F.leaky_relu(t, 0.2), x),
    }
    for name, (f, t) in cases.items():
        vjp(out, f, [t], g, name + ".")
        out[name + ".grad_x"] = t.grad


def gen_reduce(out, g):
    x = torch.randn(3, 5, 4, generator=g)
    x[1, 3, 2] = x[1, 1, 2] = 5.0    # a tie for the max: the first index wins
    x[2, 0, 1] = x[2, 4, 1] = -5.0   # and for the min
    x.requires_grad_()
    out["reduce.x"] = x
    for name, f in (("max", torch.max), ("min", torch.min)):
        x.grad = None
        values, indices = f(x, dim=1)
        dout = torch.randn(values.shape, generator=g)
        (values * dout).sum().backward()
        out.update({f"{name}.out": values, f"{name}.dout": dout, f"{name}.grad_x": x.grad,
                    f"{name}.indices": indices})


def gen_select(out, g):
    a = torch.randn(3, 5, 4, generator=g).requires_grad_()
    b = torch.randn(3, 5, 4, generator=g).requires_grad_()
    mask = torch.rand(3, 1, 4, generator=g) > 0.5   # broadcast over dim 1
    out.update({"select.a": a, "select.b": b, "select.mask": mask.double()})
    vjp(out, lambda p, q: torch.where(mask, p, q), [a, b], g, "where.")
    out["where.grad_a"], out["where.grad_b"] = a.grad, b.grad
    vjp(out, lambda p: p.masked_fill(mask, -2.0), [a], g, "masked_fill.")
    out["masked_fill.grad_x"] = a.grad
    index = torch.randint(0, 5, (3, 7, 4), generator=g)  # longer than dim 1: repeats
    out["gather.index"] = index
    vjp(out, lambda p: torch.gather(p, 1, index), [a], g, "gather.")
    out["gather.grad_x"] = a.grad


def gen_losses(out, g):
    x = torch.randn(4, 6, generator=g).requires_grad_()
    t = torch.rand(4, 6, generator=g).requires_grad_()
    p = torch.sigmoid(torch.randn(4, 6, generator=g)).detach().requires_grad_()
    out.update({"loss.x": x, "loss.t": t, "loss.p": p})
    for name, f, inp in (("mse", F.mse_loss, x), ("bce", F.binary_cross_entropy, p),
                         ("bce_logits", F.binary_cross_entropy_with_logits, x)):
        vjp(out, f, [inp, t], g, name + ".")
        out[name + ".grad_input"], out[name + ".grad_target"] = inp.grad, t.grad


def gen_norms(out, g):
    groups, eps = 3, 1e-5
    x = (torch.randn(2, 6, 3, 4, generator=g) * 2 + 0.5).requires_grad_()
    w = (torch.rand(6, generator=g) + 0.5).requires_grad_()
    b = torch.randn(6, generator=g).requires_grad_()
    y = F.group_norm(x, groups, w, b, eps)
    dout = torch.randn(y.shape, generator=g)
    (y * dout).sum().backward()
    out.update({"group_norm.x": nhwc(x), "group_norm.weight": w, "group_norm.bias": b,
                "group_norm.out": nhwc(y), "group_norm.dout": nhwc(dout),
                "group_norm.grad_x": nhwc(x.grad), "group_norm.grad_weight": w.grad,
                "group_norm.grad_bias": b.grad})

    bn = torch.nn.BatchNorm1d(5)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(5, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(5, generator=g))
    state0 = {k: v.clone() for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    x = (torch.randn(8, 5, generator=g) * 3 - 1).requires_grad_()
    bn.train()
    y = bn(x)
    dout = torch.randn(y.shape, generator=g)
    (y * dout).sum().backward()
    out.update({f"batch_norm1d.init.{k}": v for k, v in state0.items()})
    out.update({"batch_norm1d.x": x, "batch_norm1d.out": y, "batch_norm1d.dout": dout,
                "batch_norm1d.grad_x": x.grad, "batch_norm1d.grad_weight": bn.weight.grad,
                "batch_norm1d.grad_bias": bn.bias.grad,
                "batch_norm1d.running_mean": bn.running_mean.clone(),
                "batch_norm1d.running_var": bn.running_var.clone()})
    bn.eval()
    out["batch_norm1d.eval_out"] = bn(x)


if __name__ == "__main__":
    generator = torch.Generator().manual_seed(16)
    tensors = {}
    gen_unary(tensors, generator)
    gen_reduce(tensors, generator)
    gen_select(tensors, generator)
    gen_losses(tensors, generator)
    gen_norms(tensors, generator)
    write("ops_basic.safetensors", tensors, {"group_norm.groups": "3", "eps": "1e-05",
                                             "leaky_relu.slope": "0.2"})
