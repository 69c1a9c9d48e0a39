"""Decode + train transform throughput on large JPEGs (phone/camera photos), full decode vs libjpeg draft mode.

    .venv/bin/python benchmarks/bench_decode.py [--n 24] [--size 4000x3000]

Writes --n synthetic photos (smooth colour fields + texture, JPEG q=90) to a temp folder, then times
open_rgb + TrainPreset for two recipes -- RandomResizedCrop 224 (draft to 915 px) and the seed's
Resize(560x560) -> CenterCrop(512) (draft to 560 px) -- each with draft_size=None (baseline, full decode) and
with the preset's draft_size, interleaved, single thread. Prints medians and the ratio against the baseline.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from foldertune.data import TrainPreset, open_rgb  # noqa: E402


def photos(folder, n, w, h):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(n):
        base = np.stack([np.sin(xx / (200 + 40 * c) + i) * np.cos(yy / (300 + 30 * c)) for c in range(3)], -1)
        img = (base * 80 + 128 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        p = os.path.join(folder, f"p{i}.jpg")
        Image.fromarray(img).save(p, quality=90)
        paths.append(p)
    return paths


def rate(paths, preset, draft):
    t0 = time.perf_counter()
    for p in paths:
        preset(open_rgb(p, draft_size=draft))
    return len(paths) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    w, h = map(int, args.size.split("x"))
    mean = std = (0.5, 0.5, 0.5)
    recipes = {
        "RandomResizedCrop 224": TrainPreset(size=224, mean=mean, std=std),
        "seed 560->512 + aug": TrainPreset(size=512, mean=mean, std=std, crop="center", resize=(560, 560),
                                           color_jitter=(0.2, 0.2, 0.2, 0.1), translate=(0.1, 0.1), rotation=20,
                                           random_erasing=0.5),
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = photos(tmp, args.n, w, h)
        print(f"{args.n} JPEGs of {w}x{h}, median of {args.repeats} interleaved passes, 1 thread")
        for name, preset in recipes.items():
            full, draft = [], []
            for _ in range(args.repeats):
                full.append(rate(paths, preset, None))
                draft.append(rate(paths, preset, preset.draft_size))
            f, d = statistics.median(full), statistics.median(draft)
            print(f"{name:24s} full decode {f:6.1f} img/s | draft to {preset.draft_size} px {d:6.1f} img/s | "
                  f"{d / f:.2f}x")


if __name__ == "__main__":
    main()
