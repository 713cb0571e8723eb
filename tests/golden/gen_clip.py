#!/usr/bin/python3
"""PyTorch twin of mmchain's CLIP towers, written from the architecture's
published description (Radford et al. 2021; Hugging Face CLIPModel naming),
not from mmchain's code.

  gen_clip.py            write the small committed fixtures
                         tests/golden/fixtures/clip_tiny.{model,io}.safetensors
  gen_clip.py --full DIR write a random-weight ViT-B/32 and its outputs into
                         DIR (used at test time when PyTorch is installed)

The io file holds the inputs, both towers' embeddings, the symmetric InfoNCE
loss between them (learnable logit_scale) and the gradient of that loss for
every parameter ("grad.<name>").

Run with Debian's PyTorch: /usr/bin/python3 tests/golden/gen_clip.py
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

LN_EPS = 1e-5


def make_params(cfg, gen):
    """Random weights in Hugging Face names. LayerNorm weights/biases and all
    biases are perturbed so that a swapped or ignored tensor shows."""
    p = {}

    def normal(shape, std):
        return torch.randn(shape, generator=gen) * std

    def block(prefix, width, mlp):
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            p[f"{prefix}.self_attn.{proj}.weight"] = normal((width, width), width ** -0.5)
            p[f"{prefix}.self_attn.{proj}.bias"] = normal((width,), 0.1)
        p[f"{prefix}.layer_norm1.weight"] = 1 + normal((width,), 0.1)
        p[f"{prefix}.layer_norm1.bias"] = normal((width,), 0.1)
        p[f"{prefix}.mlp.fc1.weight"] = normal((mlp, width), width ** -0.5)
        p[f"{prefix}.mlp.fc1.bias"] = normal((mlp,), 0.1)
        p[f"{prefix}.mlp.fc2.weight"] = normal((width, mlp), mlp ** -0.5)
        p[f"{prefix}.mlp.fc2.bias"] = normal((width,), 0.1)
        p[f"{prefix}.layer_norm2.weight"] = 1 + normal((width,), 0.1)
        p[f"{prefix}.layer_norm2.bias"] = normal((width,), 0.1)

    t = cfg["text"]
    p["text_model.embeddings.token_embedding.weight"] = normal((t["vocab"], t["width"]), 0.02 * 10)
    p["text_model.embeddings.position_embedding.weight"] = normal((t["context"], t["width"]), 0.01 * 10)
    for i in range(t["layers"]):
        block(f"text_model.encoder.layers.{i}", t["width"], t["mlp"])
    p["text_model.final_layer_norm.weight"] = 1 + normal((t["width"],), 0.1)
    p["text_model.final_layer_norm.bias"] = normal((t["width"],), 0.1)

    v = cfg["vision"]
    grid = v["image"] // v["patch"]
    p["vision_model.embeddings.class_embedding"] = normal((v["width"],), v["width"] ** -0.5)
    p["vision_model.embeddings.patch_embedding.weight"] = normal((v["width"], 3, v["patch"], v["patch"]), 0.05)
    p["vision_model.embeddings.position_embedding.weight"] = normal((grid * grid + 1, v["width"]), 0.1)
    p["vision_model.pre_layrnorm.weight"] = 1 + normal((v["width"],), 0.1)
    p["vision_model.pre_layrnorm.bias"] = normal((v["width"],), 0.1)
    for i in range(v["layers"]):
        block(f"vision_model.encoder.layers.{i}", v["width"], v["mlp"])
    p["vision_model.post_layernorm.weight"] = 1 + normal((v["width"],), 0.1)
    p["vision_model.post_layernorm.bias"] = normal((v["width"],), 0.1)
    p["visual_projection.weight"] = normal((cfg["embed"], v["width"]), v["width"] ** -0.5)
    p["text_projection.weight"] = normal((cfg["embed"], t["width"]), t["width"] ** -0.5)
    p["logit_scale"] = torch.tensor([math.log(1 / 0.07)])
    return p


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def attention(p, prefix, x, heads, causal):
    b, t, w = x.shape
    d = w // heads

    def proj(name):
        return F.linear(x, p[f"{prefix}.self_attn.{name}.weight"], p[f"{prefix}.self_attn.{name}.bias"])

    q = proj("q_proj").view(b, t, heads, d).transpose(1, 2)
    k = proj("k_proj").view(b, t, heads, d).transpose(1, 2)
    v = proj("v_proj").view(b, t, heads, d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if causal:
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(mask, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, w)
    return F.linear(out, p[f"{prefix}.self_attn.out_proj.weight"], p[f"{prefix}.self_attn.out_proj.bias"])


def block(p, prefix, x, heads, causal):
    w = x.shape[-1]
    h = F.layer_norm(x, (w,), p[f"{prefix}.layer_norm1.weight"], p[f"{prefix}.layer_norm1.bias"], LN_EPS)
    x = x + attention(p, prefix, h, heads, causal)
    h = F.layer_norm(x, (w,), p[f"{prefix}.layer_norm2.weight"], p[f"{prefix}.layer_norm2.bias"], LN_EPS)
    h = F.linear(quick_gelu(F.linear(h, p[f"{prefix}.mlp.fc1.weight"], p[f"{prefix}.mlp.fc1.bias"])),
                 p[f"{prefix}.mlp.fc2.weight"], p[f"{prefix}.mlp.fc2.bias"])
    return x + h


def encode_image(p, cfg, pixels):
    v = cfg["vision"]
    w = v["width"]
    x = F.conv2d(pixels, p["vision_model.embeddings.patch_embedding.weight"], stride=v["patch"])
    x = x.flatten(2).transpose(1, 2)  # (N, G*G, W)
    cls = p["vision_model.embeddings.class_embedding"].expand(x.shape[0], 1, w)
    x = torch.cat([cls, x], dim=1) + p["vision_model.embeddings.position_embedding.weight"]
    x = F.layer_norm(x, (w,), p["vision_model.pre_layrnorm.weight"], p["vision_model.pre_layrnorm.bias"], LN_EPS)
    for i in range(v["layers"]):
        x = block(p, f"vision_model.encoder.layers.{i}", x, v["heads"], False)
    pooled = F.layer_norm(x[:, 0], (w,), p["vision_model.post_layernorm.weight"],
                          p["vision_model.post_layernorm.bias"], LN_EPS)
    return pooled @ p["visual_projection.weight"].t()


def encode_text(p, cfg, ids):
    t = cfg["text"]
    w = t["width"]
    x = p["text_model.embeddings.token_embedding.weight"][ids] + p["text_model.embeddings.position_embedding.weight"]
    for i in range(t["layers"]):
        x = block(p, f"text_model.encoder.layers.{i}", x, t["heads"], True)
    x = F.layer_norm(x, (w,), p["text_model.final_layer_norm.weight"], p["text_model.final_layer_norm.bias"], LN_EPS)
    feature = x[torch.arange(x.shape[0]), ids.argmax(dim=-1)]
    return feature @ p["text_projection.weight"].t()


def symmetric_infonce(image, text, logit_scale):
    image = F.normalize(image, dim=-1)
    text = F.normalize(text, dim=-1)
    logits = logit_scale.exp() * image @ text.t()
    labels = torch.arange(image.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def random_ids(gen, n, context, vocab, lengths):
    """Rows like the tokenizer's: sot, ids, eot (the largest id), zero padding."""
    ids = torch.zeros(n, context, dtype=torch.int64)
    sot, eot = vocab - 2, vocab - 1
    for i in range(n):
        length = lengths[i % len(lengths)]
        ids[i, 0] = sot
        ids[i, 1:1 + length] = torch.randint(1, vocab - 2, (length,), generator=gen)
        ids[i, 1 + length] = eot
    return ids


def generate(cfg, n, seed, with_grads):
    gen = torch.Generator().manual_seed(seed)
    params = make_params(cfg, gen)
    for t in params.values():
        t.requires_grad_(True)
    v = cfg["vision"]
    pixels = torch.randn(n, 3, v["image"], v["image"], generator=gen)
    ids = random_ids(gen, n, cfg["text"]["context"], cfg["text"]["vocab"], [3, 9, 1, 20, 5])
    image = encode_image(params, cfg, pixels)
    text = encode_text(params, cfg, ids)
    io = {"pixel_values": pixels, "input_ids": ids, "image_embeds": image.detach(),
          "text_embeds": text.detach()}
    if with_grads:
        loss = symmetric_infonce(image, text, params["logit_scale"])
        loss.backward()
        io["loss"] = loss.detach().reshape(1)
        for name, t in params.items():
            io["grad." + name] = t.grad
    return {k: t.detach() for k, t in params.items()}, io


TINY = {  # heads = width / 64, as the loader derives them; mlp 2*width to test its derivation
    "embed": 48,
    "vision": {"width": 64, "layers": 2, "heads": 1, "mlp": 128, "patch": 8, "image": 32},
    "text": {"width": 64, "layers": 2, "heads": 1, "mlp": 128, "context": 77, "vocab": 600},
}
VIT_B_32 = {
    "embed": 512,
    "vision": {"width": 768, "layers": 12, "heads": 12, "mlp": 3072, "patch": 32, "image": 224},
    "text": {"width": 512, "layers": 12, "heads": 8, "mlp": 2048, "context": 77, "vocab": 49408},
}


def main():
    torch.set_num_threads(2)
    if len(sys.argv) == 3 and sys.argv[1] == "--full":
        out = sys.argv[2]
        os.makedirs(out, exist_ok=True)
        with torch.no_grad():
            params, io = generate(VIT_B_32, 2, 7, with_grads=False)
        safetensors_io.save(params, os.path.join(out, "clip_vit_b32.model.safetensors"))
        safetensors_io.save(io, os.path.join(out, "clip_vit_b32.io.safetensors"))
        return
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    params, io = generate(TINY, 4, 1, with_grads=True)
    safetensors_io.save(params, os.path.join(here, "clip_tiny.model.safetensors"),
                        {"generator": "tests/golden/gen_clip.py", "torch": torch.__version__})
    safetensors_io.save(io, os.path.join(here, "clip_tiny.io.safetensors"),
                        {"generator": "tests/golden/gen_clip.py", "loss": "symmetric InfoNCE, learnable logit_scale"})


if __name__ == "__main__":
    main()
