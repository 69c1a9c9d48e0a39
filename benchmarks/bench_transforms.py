"""Train-transform throughput of the seed recipe at 512 px, on real photos, single thread (one dataloader worker):

  baseline      the seed's pipeline as written (torchvision v1 on PIL: Resize -> CenterCrop -> flip -> ColorJitter
                -> RandomAffine -> RandomRotation -> ToTensor -> Normalize -> RandomErasing)
  TrainPreset   ours: the same ops in torchvision v2, geometry and colour on the PIL image, tensor at the end
  tensor-first  the alternative we rejected: v2 with ToImage first, every op on uint8 tensors
  bilinear      TrainPreset with warp_interpolation=bilinear (smoother rotations, the cost of it)

    .venv/bin/python benchmarks/bench_transforms.py [--images ../shared/data/hymenoptera/train] [--n 120]

Both pipelines get the same decoded RGB images (decoding is identical and excluded). Prints images/s per
pipeline as the median of --repeats passes, and the ratio ours / baseline measured in the same run.
"""

import argparse
import glob
import os
import statistics
import sys
import time

import torch
from torchvision import transforms as v1
from torchvision.transforms import v2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from foldertune.data import TrainPreset, open_rgb  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def seed_v1():
    return v1.Compose([
        v1.Resize((560, 560)), v1.CenterCrop(512), v1.RandomHorizontalFlip(0.5),
        v1.ColorJitter(0.2, 0.2, 0.2, 0.1), v1.RandomAffine(degrees=0, translate=(0.1, 0.1)),
        v1.RandomRotation(20), v1.ToTensor(), v1.Normalize(MEAN, STD), v1.RandomErasing(p=0.5)])


def ours(warp="nearest"):
    return TrainPreset(size=512, mean=MEAN, std=STD, interpolation="bilinear", crop="center", resize=(560, 560),
                       hflip=0.5, color_jitter=(0.2, 0.2, 0.2, 0.1), translate=(0.1, 0.1), rotation=20,
                       random_erasing=0.5, warp_interpolation=warp)


def tensor_first():
    ops = ours().transforms.transforms
    to_image = [i for i, t in enumerate(ops) if isinstance(t, v2.ToImage)][0]
    return v2.Compose([v2.ToImage()] + ops[:to_image] + ops[to_image + 1:])


def rate(fn, images):
    t0 = time.perf_counter()
    for im in images:
        out = fn(im)
    assert out.shape == (3, 512, 512)
    return len(images) / (time.perf_counter() - t0)


def interleaved(fns, images, repeats):
    """Median images/s of each pipeline, passes alternated (ABAB...) so machine noise hits both alike."""
    rates = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            rates[i].append(rate(fn, images))
    return [statistics.median(r) for r in rates]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                    "hymenoptera", "train"))
    p.add_argument("--n", type=int, default=120)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a dataloader worker uses 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted(glob.glob(os.path.join(args.images, "*", "*.jp*g")))[: args.n]
    images = [open_rgb(f) for f in files]
    torch.manual_seed(0)
    names = ["baseline (seed, v1)", "TrainPreset", "tensor-first v2", "TrainPreset bilinear"]
    rates = interleaved([seed_v1(), ours(), tensor_first(), ours("bilinear")], images, args.repeats)
    print(f"{len(images)} images from {args.images}, median of {args.repeats} interleaved passes, "
          f"{args.threads} thread(s)")
    for name, r in zip(names, rates):
        print(f"{name:22s} {r:7.1f} images/s   {r / rates[0]:.2f}x baseline")


if __name__ == "__main__":
    main()
