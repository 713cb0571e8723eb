"""PyTorch reference fixtures for the ops whose semantics are easy to get
subtly wrong, read by tests/test_ops_parity.c.

Run with Debian's PyTorch (not the python3 first on PATH):

    /usr/bin/python3 tests/golden/gen_ops.py

It writes tests/golden/fixtures/ops_*.safetensors (committed, so CI needs no
PyTorch). Everything is seeded and computed in float64 (then stored as
float32), so the reference does not depend on float32 rounding order.

Conventions shared with the C test:
  - images: mmchain's ops are NHWC, PyTorch's NCHW. The script computes in
    NCHW and stores NHWC copies ("x", "out", "dout", "grad_x" are NHWC);
    weights keep PyTorch's layouts (conv (OC, C/groups, KH, KW)).
  - gradients come from a fixed random upstream gradient "dout":
    grad_* = d(sum(out * dout)) / d(*), i.e. a vector-Jacobian product, so
    every output element contributes (mc_backward_with_grad in C). Scalar
    losses use d(loss) = 1.
  - integer settings are I64 tensors ("params", "targets").
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_io import save  # noqa: E402

OUT = os.path.join(HERE, "fixtures")
torch.set_default_dtype(torch.float64)


def nhwc(t):
    """(N, C, H, W) -> (N, H, W, C), contiguous."""
    return t.permute(0, 2, 3, 1).contiguous()


def f32(d):
    """Every floating tensor to float32 (integers stay as they are)."""
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()) for k, v in d.items()}


def write(name, tensors, metadata=None):
    path = os.path.join(OUT, name)
    save(f32(tensors), path, metadata=metadata)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


# ---- conv2d ---------------------------------------------------------------

# (N, C, H, W, OC, KH, KW, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, bias)
CONV_CASES = [
    (2, 4, 7, 6, 6, 3, 3, 1, 1, 2, 2, 2, 2, 2, True),    # groups 2, dilation 2
    (2, 3, 9, 8, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, False),   # stride 2, padding 1, no bias
    (1, 4, 6, 7, 8, 3, 2, 2, 1, 0, 1, 1, 2, 4, True),    # depthwise x2, asymmetric everything
    (2, 6, 5, 5, 4, 1, 1, 2, 2, 0, 0, 1, 1, 1, True),    # 1x1 stride 2 (ResNet downsample)
    (2, 3, 12, 12, 4, 7, 7, 2, 2, 3, 3, 1, 1, 1, False),  # 7x7 stride 2 padding 3 (ResNet stem)
]


def gen_conv():
    g = torch.Generator().manual_seed(1)
    out = {}
    for i, (n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups, has_bias) in enumerate(CONV_CASES):
        x = torch.randn(n, c, h, w, generator=g, requires_grad=True)
        weight = torch.randn(oc, c // groups, kh, kw, generator=g).mul_(0.5).requires_grad_()
        bias = torch.randn(oc, generator=g).requires_grad_() if has_bias else None
        y = F.conv2d(x, weight, bias, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups)
        dout = torch.randn(y.shape, generator=g)
        (y * dout).sum().backward()
        p = f"case{i}."
        out[p + "params"] = torch.tensor([sh, sw, ph, pw, dh, dw, groups], dtype=torch.int64)
        out[p + "x"] = nhwc(x)
        out[p + "weight"] = weight
        out[p + "out"] = nhwc(y)
        out[p + "dout"] = nhwc(dout)
        out[p + "grad_x"] = nhwc(x.grad)
        out[p + "grad_weight"] = weight.grad
        if has_bias:
            out[p + "bias"] = bias
            out[p + "grad_bias"] = bias.grad
    write("ops_conv2d.safetensors", out, {"cases": str(len(CONV_CASES))})


# ---- batchnorm2d ----------------------------------------------------------

def gen_batchnorm():
    g = torch.Generator().manual_seed(2)
    n, c, h, w = 4, 6, 3, 5
    momentum, eps = 0.1, 1e-5
    x = (torch.randn(n, c, h, w, generator=g) * 2 + 0.5).requires_grad_()
    weight = (torch.rand(c, generator=g) + 0.5).requires_grad_()
    bias = torch.randn(c, generator=g).requires_grad_()
    running_mean0 = torch.randn(c, generator=g) * 0.1
    running_var0 = torch.rand(c, generator=g) + 0.5
    running_mean, running_var = running_mean0.clone(), running_var0.clone()

    # Training: batch statistics (biased variance to normalise); the running
    # statistics move by momentum, running_var with the unbiased variance.
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training=True,
                     momentum=momentum, eps=eps)
    dout = torch.randn(y.shape, generator=g)
    (y * dout).sum().backward()
    out = {
        "x": nhwc(x), "weight": weight, "bias": bias,
        "running_mean": running_mean0, "running_var": running_var0,
        "train.out": nhwc(y), "train.dout": nhwc(dout),
        "train.grad_x": nhwc(x.grad), "train.grad_weight": weight.grad, "train.grad_bias": bias.grad,
        "train.running_mean": running_mean, "train.running_var": running_var,
    }
    # Evaluation with the updated running statistics (which do not change).
    x.grad, weight.grad, bias.grad = None, None, None
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training=False,
                     momentum=momentum, eps=eps)
    dout = torch.randn(y.shape, generator=g)
    (y * dout).sum().backward()
    out.update({
        "eval.out": nhwc(y), "eval.dout": nhwc(dout), "eval.grad_x": nhwc(x.grad),
        "eval.grad_weight": weight.grad, "eval.grad_bias": bias.grad,
    })
    write("ops_batchnorm2d.safetensors", out, {"momentum": str(momentum), "eps": str(eps)})


# ---- layernorm, gelu ------------------------------------------------------

def gen_layernorm():
    g = torch.Generator().manual_seed(3)
    eps = 1e-5
    x = (torch.randn(2, 5, 16, generator=g) * 3 + 1).requires_grad_()
    weight = (torch.randn(16, generator=g) * 0.5 + 1).requires_grad_()
    bias = torch.randn(16, generator=g).requires_grad_()
    y = F.layer_norm(x, (16,), weight, bias, eps)
    dout = torch.randn(y.shape, generator=g)
    (y * dout).sum().backward()
    write("ops_layernorm.safetensors", {
        "x": x, "weight": weight, "bias": bias, "out": y, "dout": dout,
        "grad_x": x.grad, "grad_weight": weight.grad, "grad_bias": bias.grad,
    }, {"eps": str(eps)})


def gen_gelu():
    g = torch.Generator().manual_seed(4)
    # A sweep over the interesting range plus random values.
    x = torch.cat([torch.linspace(-6, 6, 49), torch.randn(31, generator=g) * 2]).requires_grad_()
    dout = torch.randn(x.shape, generator=g)
    y = F.gelu(x)  # exact erf form: x * Phi(x)
    (y * dout).sum().backward()
    grad_gelu = x.grad.clone()
    x.grad = None
    q = x * torch.sigmoid(1.702 * x)  # CLIP's quick_gelu
    (q * dout).sum().backward()
    write("ops_gelu.safetensors", {
        "x": x, "dout": dout, "gelu.out": y, "gelu.grad_x": grad_gelu,
        "quick_gelu.out": q, "quick_gelu.grad_x": x.grad,
    })


# ---- attention ------------------------------------------------------------

def reference_attention(q, k, v, n_heads, causal):
    """Written out op by op (not F.scaled_dot_product_attention):
    per head, softmax(q k^T / sqrt(d) with -inf above the diagonal) @ v."""
    b, t, d = q.shape
    hd = d // n_heads
    heads = []
    for h in range(n_heads):
        qh, kh, vh = (z[:, :, h * hd:(h + 1) * hd] for z in (q, k, v))
        scores = qh @ kh.transpose(1, 2) / math.sqrt(hd)
        if causal:
            mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
            scores = scores.masked_fill(mask, float("-inf"))
        heads.append(torch.softmax(scores, dim=-1) @ vh)
    return torch.cat(heads, dim=-1)


def gen_attention():
    g = torch.Generator().manual_seed(5)
    b, t, d, n_heads = 2, 5, 16, 4
    out = {}
    q0, k0, v0 = (torch.randn(b, t, d, generator=g) for _ in range(3))
    out.update({"q": q0, "k": k0, "v": v0})
    for causal in (False, True):
        q, k, v = (z.clone().requires_grad_() for z in (q0, k0, v0))
        y = reference_attention(q, k, v, n_heads, causal)
        dout = torch.randn(y.shape, generator=g)
        (y * dout).sum().backward()
        p = "causal." if causal else "full."
        out.update({p + "out": y, p + "dout": dout, p + "grad_q": q.grad,
                    p + "grad_k": k.grad, p + "grad_v": v.grad})
    write("ops_attention.safetensors", out, {"n_heads": str(n_heads)})


# ---- losses ---------------------------------------------------------------

def gen_cross_entropy():
    g = torch.Generator().manual_seed(6)
    logits0 = torch.randn(7, 5, generator=g) * 2
    targets = torch.randint(0, 5, (7,), generator=g)
    out = {"logits": logits0, "targets": targets}
    for name, smoothing in (("plain", 0.0), ("smooth", 0.1)):
        logits = logits0.clone().requires_grad_()
        loss = F.cross_entropy(logits, targets, label_smoothing=smoothing)
        loss.backward()
        out.update({name + ".loss": loss.reshape(1), name + ".grad_logits": logits.grad})
    write("ops_cross_entropy.safetensors", out, {"smooth.label_smoothing": "0.1"})


def reference_infonce(a, b, t, symmetric):
    logits = torch.exp(t) * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    labels = torch.arange(a.shape[0])
    loss = F.cross_entropy(logits, labels)
    if symmetric:  # CLIP: the mean of the a->b and b->a losses
        loss = (loss + F.cross_entropy(logits.T, labels)) / 2
    return loss


def gen_infonce():
    g = torch.Generator().manual_seed(7)
    a0 = torch.randn(6, 8, generator=g)
    b0 = a0 * 0.5 + torch.randn(6, 8, generator=g)  # correlated pairs, like a real batch
    t0 = torch.tensor([math.log(1 / 0.07)])         # CLIP's initial temperature
    out = {"a": a0, "b": b0, "t": t0}
    for name, symmetric in (("one_way", False), ("symmetric", True)):
        a, b, t = (z.clone().requires_grad_() for z in (a0, b0, t0))
        loss = reference_infonce(a, b, t, symmetric)
        loss.backward()
        out.update({name + ".loss": loss.reshape(1), name + ".grad_a": a.grad,
                    name + ".grad_b": b.grad, name + ".grad_t": t.grad})
    write("ops_infonce.safetensors", out)


# ---- optimizers: 10 steps on a small MLP ----------------------------------

OPTIMIZERS = {
    # name: (torch constructor, settings; the C test uses the same numbers)
    "sgd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.0)),
    "sgd_nesterov": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    "adam": (torch.optim.Adam, dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-3)),
    "adamw": (torch.optim.AdamW, dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
}
STEPS = 10


def mlp_params(g):
    """Linear(6, 10) -> tanh -> Linear(10, 3), PyTorch's default init."""
    fc1, fc2 = torch.nn.Linear(6, 10), torch.nn.Linear(10, 3)
    for layer in (fc1, fc2):  # re-draw from our generator for determinism
        bound = 1 / math.sqrt(layer.in_features)
        with torch.no_grad():
            layer.weight.copy_(torch.rand(layer.weight.shape, generator=g) * 2 * bound - bound)
            layer.bias.copy_(torch.rand(layer.bias.shape, generator=g) * 2 * bound - bound)
    return {"fc1.weight": fc1.weight, "fc1.bias": fc1.bias, "fc2.weight": fc2.weight, "fc2.bias": fc2.bias}


def mlp_loss(p, x, targets):
    h = torch.tanh(F.linear(x, p["fc1.weight"], p["fc1.bias"]))
    return F.cross_entropy(F.linear(h, p["fc2.weight"], p["fc2.bias"]), targets)


def gen_optim():
    g = torch.Generator().manual_seed(8)
    init = {k: v.detach().clone() for k, v in mlp_params(g).items()}
    x = torch.randn(16, 6, generator=g)
    targets = torch.randint(0, 3, (16,), generator=g)
    out = {"x": x, "targets": targets}
    out.update({"init." + k: v for k, v in init.items()})
    meta = {"steps": str(STEPS)}
    for name, (make, settings) in OPTIMIZERS.items():
        params = {k: v.clone().requires_grad_() for k, v in init.items()}
        opt = make(list(params.values()), **settings)
        losses = []
        for _ in range(STEPS):
            opt.zero_grad()
            loss = mlp_loss(params, x, targets)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        out[name + ".losses"] = torch.tensor(losses)
        out.update({f"{name}.final.{k}": v for k, v in params.items()})
        meta[name] = " ".join(f"{k}={v}" for k, v in settings.items())
    write("ops_optim.safetensors", out, meta)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    gen_conv()
    gen_batchnorm()
    gen_layernorm()
    gen_gelu()
    gen_attention()
    gen_cross_entropy()
    gen_infonce()
    gen_optim()
