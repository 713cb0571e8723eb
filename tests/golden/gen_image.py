#!/usr/bin/python3
"""PyTorch/PIL twin of lib/io/image.c, png.c, jpeg.c: writes the image fixtures.

Run with Debian's python3-torch + python3-torchvision + python3-pil (torch 1.13):

    /usr/bin/python3 tests/golden/gen_image.py

Writes into tests/golden/fixtures/:

  image_resize.safetensors
      input                      (2, 3, 13, 17) uniform 0..1, seed 0
      plain.<h>x<w>              F.interpolate(input, (h, w), mode="bicubic",
                                 align_corners=False)              (antialias off)
      aa.<h>x<w>                 the same with antialias=True     (PIL's bicubic)
      for (h, w) in (31, 29) up, (5, 7) down, (13, 6) mixed, (9, 40)
      small                      (1, 3, 16, 16) uniform, seed 1
      plain.small.56 / aa.small.56   small resized to 56x56 (x3.5, like 64 -> 224)
      clip.input                 (1, 3, 24, 32) uniform, seed 2
      clip.output                torchvision CLIP preprocessing with size 16:
                                 Resize(16, BICUBIC, antialias=True), CenterCrop(16),
                                 Normalize(CLIP mean, std)  -> (1, 3, 16, 16)
  image_photo.jpg                a 20x12 colour JPEG written by PIL (quality 90)
  image_photo_gray.jpg           a 9x7 grey JPEG written by PIL
  image_rgb8.png, image_gray16.png, image_la8.png, image_rgba8.png
                                 PNGs written by PIL (8-bit RGB, 16-bit grey,
                                 8-bit grey+alpha, 8-bit RGBA)
  image_files.safetensors        what PIL decodes from each of those files,
                                 as (C, H, W) F32 in 0..1: jpeg.photo,
                                 jpeg.photo_gray, png.rgb8, png.gray16, png.la8, png.rgba8
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from safetensors_io import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_cases():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 13, 17, generator=g)
    out = {"input": x}
    for h, w in [(31, 29), (5, 7), (13, 6), (9, 40)]:
        out[f"plain.{h}x{w}"] = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
        out[f"aa.{h}x{w}"] = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False,
                                           antialias=True)
    small = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    out["small"] = small
    out["plain.small.56"] = F.interpolate(small, size=(56, 56), mode="bicubic", align_corners=False)
    out["aa.small.56"] = F.interpolate(small, size=(56, 56), mode="bicubic", align_corners=False,
                                       antialias=True)
    clip_in = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    clip = T.Compose([T.Resize(16, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
                      T.CenterCrop(16), T.Normalize(CLIP_MEAN, CLIP_STD)])
    out["clip.input"] = clip_in
    out["clip.output"] = clip(clip_in)
    save(out, os.path.join(OUT, "image_resize.safetensors"))


def chw(array, scale):
    a = np.asarray(array, dtype=np.float32) / scale
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def smooth_picture(h, w, channels, seed):
    """A smooth picture with some edges: JPEG-friendly, not constant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    planes = []
    for c in range(channels):
        p = 128 + 80 * np.sin(xx / (2.0 + c)) * np.cos(yy / (3.0 + c)) + rng.normal(0, 8, (h, w))
        planes.append(np.clip(p, 0, 255))
    a = np.stack(planes, -1).astype(np.uint8)
    return a[:, :, 0] if channels == 1 else a


def file_cases():
    decoded = {}
    photo = Image.fromarray(smooth_picture(12, 20, 3, 3), "RGB")
    path = os.path.join(OUT, "image_photo.jpg")
    photo.save(path, quality=90)
    decoded["jpeg.photo"] = chw(Image.open(path).convert("RGB"), 255.0)
    path = os.path.join(OUT, "image_photo_gray.jpg")
    Image.fromarray(smooth_picture(7, 9, 1, 4), "L").save(path, quality=90)
    decoded["jpeg.photo_gray"] = chw(Image.open(path), 255.0)

    rgb = smooth_picture(5, 6, 3, 5)
    path = os.path.join(OUT, "image_rgb8.png")
    Image.fromarray(rgb, "RGB").save(path)
    decoded["png.rgb8"] = chw(Image.open(path), 255.0)

    gray16 = np.random.default_rng(6).integers(0, 65536, (4, 7)).astype(np.uint16)
    path = os.path.join(OUT, "image_gray16.png")
    Image.fromarray(gray16, "I;16").save(path)
    decoded["png.gray16"] = chw(np.asarray(Image.open(path)).astype(np.float64), 65535.0)

    la = smooth_picture(3, 4, 2, 7)
    path = os.path.join(OUT, "image_la8.png")
    Image.fromarray(la, "LA").save(path)
    decoded["png.la8"] = chw(Image.open(path), 255.0)

    rgba = smooth_picture(4, 3, 4, 8)
    path = os.path.join(OUT, "image_rgba8.png")
    Image.fromarray(rgba, "RGBA").save(path)
    decoded["png.rgba8"] = chw(Image.open(path), 255.0)
    save(decoded, os.path.join(OUT, "image_files.safetensors"))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    resize_cases()
    file_cases()
    print("wrote image fixtures to", OUT)
