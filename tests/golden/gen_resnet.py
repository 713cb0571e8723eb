#!/usr/bin/python3
"""PyTorch twin of lib/models/resnet.c: writes the ResNet parity fixtures.

Run with Debian's python3-torch + python3-torchvision (torch 1.13):

    /usr/bin/python3 tests/golden/gen_resnet.py                 # the committed small fixtures
    /usr/bin/python3 tests/golden/gen_resnet.py --full --out DIR  # full-size ResNet-50/18, at test time

Every case writes two safetensors files:

  resnet_<case>_weights.safetensors   a torchvision state_dict (fc kept), exactly what a
                                      user would load: F32 tensors, num_batches_tracked as
                                      I64 scalars. For a case with N != 3 input bands,
                                      conv1.weight is the RGB kernel (C, 3, 7, 7) and the
                                      model derives its N-band kernel (the rule below).
  resnet_<case>_expected.safetensors  what the C test compares against:
      eval<i>.input (B, N, H, W), eval<i>.logits (B, classes), eval<i>.features (B, F)
                                      eval-mode forward with and without fc
      conv1.derived                   the N-band conv1 kernel the model must build
      train.input, train.targets (B, D), train.log_scale (1)
      train.fc.weight (D, F), train.fc.bias (D)
                                      the new head Linear(F, D) (PyTorch default init)
      train.loss (1)                  InfoNCE loss of the first training step
      grad.<name>                     d loss / d parameter, for EVERY parameter
      after.<bn>.running_mean/_var/num_batches_tracked
                                      BN buffers after that step's forward
      train.adam_losses (5)           losses of 5 steps of Adam(lr) from the same start
  and __metadata__ describing the model (block, layers, base_width, bands, ...).

The conv1 rule for N bands (docs/models.md): every band gets the mean of the R, G and B
kernels, scaled by 3/N, so that an image whose bands are all equal gives the same conv1
response as the RGB network on the equal-channel RGB image.

Narrow models use torchvision's own ResNet class, _make_layer, BasicBlock/Bottleneck and
forward; only the stem width and the stage widths (base_width << stage) are changed.
"""
import argparse
import copy
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save  # noqa: E402  (the shared writer: Debian has no safetensors package)

LOG_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature, fixed here
ADAM_LR = 1e-3
ADAM_STEPS = 5
HEAD_DIM = 512
# Every ReLU input of the training forward is at least this far from 0 (see
# draw_train_input).
RELU_MARGIN = 1e-6


# ---- models ----

class NarrowResNet(ResNet):
    """torchvision's ResNet with stem width `base_width` and stage widths base_width << i
    (torchvision: 64, 64/128/256/512), `bands` input channels."""

    def __init__(self, block, layers, base_width, bands, num_classes):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = base_width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # width_per_group: bottleneck width = planes, as in resnet50
        self.conv1 = nn.Conv2d(bands, base_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, base_width, layers[0])
        self.layer2 = self._make_layer(block, base_width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base_width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, base_width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(base_width * 8 * block.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def derive_conv1(rgb_weight, bands):
    """(C, 3, KH, KW) -> (C, bands, KH, KW): mean over RGB, repeated, times 3/bands."""
    mean = rgb_weight.mean(dim=1, keepdim=True)
    return (mean.repeat(1, bands, 1, 1) * (3.0 / bands)).contiguous()


def randomize_batchnorm(model, gen):
    """Random affine parameters and running statistics, so that eval mode is a real test.

    The last BN of every residual branch (bn3 of a bottleneck, bn2 of a basic block) gets a
    small gamma, U(0.1, 0.3), as in trained networks (and in the spirit of torchvision's
    zero_init_residual). Why: with gamma ~ 1 on every branch the residual stream's variance
    grows with depth and train-mode BN backward cancels most of each gradient; PyTorch's
    own float32 gradients of ResNet-50 then differ from its float64 ones by 1-3 %, so no
    float32 implementation could meet a 1e-3 bar against anything. With small branch gammas
    float32 and float64 agree to ~1e-5 and the 1e-3 comparison is meaningful.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                m.num_batches_tracked.fill_(7)
        for m in model.modules():
            last_bn = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
            if last_bn is not None:
                last_bn.weight.copy_(0.1 + 0.2 * torch.rand(last_bn.num_features, generator=gen))


def infonce(embeddings, targets, log_scale):
    """The seed paper's one-directional InfoNCE: cross-entropy over the rows of
    exp(t) * normalize(embeddings) @ normalize(targets)^T with the diagonal as labels."""
    a = F.normalize(embeddings, dim=1)
    b = F.normalize(targets, dim=1)
    logits = math.exp(log_scale) * a @ b.t()
    return F.cross_entropy(logits, torch.arange(a.shape[0]))


def smallest_relu_input(model, x):
    """The smallest |input| of any ReLU in a train-mode forward of x (the model's
    parameters and buffers are left as they were)."""
    smallest = [math.inf]

    def look(module, inputs):
        smallest[0] = min(smallest[0], inputs[0].detach().abs().min().item())

    hooks = [m.register_forward_pre_hook(look) for m in model.modules() if isinstance(m, nn.ReLU)]
    state = copy.deepcopy(model.state_dict())  # a train forward moves the BN running stats
    model.train()
    with torch.no_grad():
        model(x)
    model.load_state_dict(state)
    for hook in hooks:
        hook.remove()
    return smallest[0]


def draw_train_input(model, gen, shape, tries=200):
    """A random training input none of whose ReLU inputs lies within RELU_MARGIN of 0.

    Why: a ReLU's derivative jumps at 0. A pre-activation within float32 rounding of 0
    (one in ~10^6; ResNet-50 at 64x64, batch 4 has 3 million) takes the gradient or
    drops it depending on the order of a sum, and one such flip moves the gradients of
    every layer below it by ~1e-3 - the tolerance. PyTorch's own float32 gradients
    change that much under a 1e-7 perturbation of the input when it happens; with a
    margin they agree with float64 to ~5e-6. Draws until the margin holds (the first
    draw mostly does for the small cases; a few tries for ResNet-50)."""
    for _ in range(tries):
        x = torch.randn(*shape, generator=gen)
        if smallest_relu_input(model, x) >= RELU_MARGIN:
            return x
    raise RuntimeError(f"no input with every ReLU input >= {RELU_MARGIN} from 0 in {tries} draws")


# ---- one case ----

def make_case(out_dir, name, model, meta, bands, eval_sizes, train_batch, train_size, seed):
    gen = torch.Generator().manual_seed(seed)
    randomize_batchnorm(model, gen)
    model.eval()
    rgb_conv1 = model.conv1.weight.detach().clone()
    if bands != 3:
        # The file holds an RGB conv1; the network runs with the derived N-band kernel.
        derived = derive_conv1(rgb_conv1, bands)
        model.conv1 = nn.Conv2d(bands, rgb_conv1.shape[0], 7, 2, 3, bias=False)
        with torch.no_grad():
            model.conv1.weight.copy_(derived)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    weights["conv1.weight"] = rgb_conv1
    expected = {"conv1.derived": model.conv1.weight.detach().clone()}

    # Eval forward, with fc and without it (the pooled features).
    with torch.no_grad():
        for i, (batch, size) in enumerate(eval_sizes):
            x = torch.randn(batch, bands, size, size, generator=gen)
            expected[f"eval{i}.input"] = x
            expected[f"eval{i}.logits"] = model(x)
            fc = model.fc
            model.fc = nn.Identity()
            expected[f"eval{i}.features"] = model(x)
            model.fc = fc

    # Train: fc replaced by a new Linear(F, D), InfoNCE against fixed targets, Adam.
    features = model.fc.in_features
    torch.manual_seed(seed + 1)
    model.fc = nn.Linear(features, HEAD_DIM)
    expected["train.fc.weight"] = model.fc.weight.detach().clone()
    expected["train.fc.bias"] = model.fc.bias.detach().clone()
    x = draw_train_input(model, gen, (train_batch, bands, train_size, train_size))
    targets = torch.randn(train_batch, HEAD_DIM, generator=gen)
    expected["train.input"] = x
    expected["train.targets"] = targets
    expected["train.log_scale"] = torch.tensor([LOG_SCALE], dtype=torch.float32)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=ADAM_LR)
    losses = []
    for step in range(ADAM_STEPS):
        optimizer.zero_grad()
        loss = infonce(model(x), targets, LOG_SCALE)
        loss.backward()
        if step == 0:
            expected["train.loss"] = loss.detach().reshape(1)
            for pname, p in model.named_parameters():
                expected["grad." + pname] = p.grad.detach().clone()
            for bname, b in model.named_buffers():
                expected["after." + bname] = b.detach().clone().float().reshape(-1)
        losses.append(loss.item())
        optimizer.step()
    expected["train.adam_losses"] = torch.tensor(losses, dtype=torch.float32)

    meta = dict(meta)
    meta.update({"bands": bands, "head_dim": HEAD_DIM, "adam_lr": ADAM_LR,
                 "eval_count": len(eval_sizes), "torch": torch.__version__,
                 "torchvision": torchvision.__version__})
    save(weights, os.path.join(out_dir, f"resnet_{name}_weights.safetensors"))
    save(expected, os.path.join(out_dir, f"resnet_{name}_expected.safetensors"), meta)
    print(f"{name}: loss {losses[0]:.6f}, {len(expected)} expected tensors")
    return expected


def small_cases(out_dir):
    torch.manual_seed(0)
    basic = make_case(out_dir, "basic",
              NarrowResNet(BasicBlock, [2, 2, 2, 2], base_width=8, bands=3, num_classes=10),
              {"block": "basic", "layers": "2,2,2,2", "base_width": 8, "num_classes": 10},
              bands=3, eval_sizes=[(2, 48), (1, 37)], train_batch=4, train_size=48, seed=11)
    # For tests/script_cli_embed_resnet.sh: `mmchain embed --model resnet --weights
    # resnet_basic_weights.safetensors --input resnet_cli_input.safetensors` must give
    # these logits ("output") and, with --head 0, these features.
    save({"input": basic["eval0.input"]}, os.path.join(out_dir, "resnet_cli_input.safetensors"))
    save({"output": basic["eval0.logits"]}, os.path.join(out_dir, "resnet_cli_logits.safetensors"))
    save({"output": basic["eval0.features"]}, os.path.join(out_dir, "resnet_cli_features.safetensors"))
    torch.manual_seed(1)
    make_case(out_dir, "bottleneck5",
              NarrowResNet(Bottleneck, [2, 1, 1, 1], base_width=8, bands=3, num_classes=10),
              {"block": "bottleneck", "layers": "2,1,1,1", "base_width": 8, "num_classes": 10},
              bands=5, eval_sizes=[(2, 48)], train_batch=4, train_size=48, seed=12)


def full_cases(out_dir):
    torch.manual_seed(2)
    make_case(out_dir, "full50", torchvision.models.resnet50(),
              {"block": "bottleneck", "layers": "3,4,6,3", "base_width": 64, "num_classes": 1000},
              bands=3, eval_sizes=[(2, 64), (2, 224)], train_batch=4, train_size=64, seed=21)
    torch.manual_seed(3)
    make_case(out_dir, "full18", torchvision.models.resnet18(),
              {"block": "basic", "layers": "2,2,2,2", "base_width": 64, "num_classes": 1000},
              bands=3, eval_sizes=[(2, 64)], train_batch=4, train_size=64, seed=22)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "fixtures"))
    parser.add_argument("--full", action="store_true", help="full-size ResNet-50 and ResNet-18")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("MMCHAIN_THREADS", "2")))
    if args.full:
        full_cases(args.out)
    else:
        small_cases(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
