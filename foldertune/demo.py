"""The embedded demo dataset: scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes, shipped inside
scikit-learn, so no download) written as train/ val/ test/ image folders."""

from __future__ import annotations

import csv
import os

import numpy as np
from PIL import Image


def write_digits_demo(out_dir: str, *, size: int = 32, val_fraction: float = 0.15, test_fraction: float = 0.15,
                      seed: int = 0) -> dict[str, int]:
    """train/<digit>/, val/<digit>/ (labeled) and test/ (flat, unlabeled) PNGs, upscaled to size x size.
    The test answers go to test_labels.csv beside the folders (file,label), for checking predictions.
    Returns the image count per split. Re-running rewrites the same files (deterministic for a seed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)  # 0..16 ink levels -> 8-bit grey
    idx = np.arange(len(images))
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=digits.target, random_state=seed)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                  stratify=digits.target[rest], random_state=seed)

    def save(i: int, path: str) -> None:
        Image.fromarray(images[i], mode="L").resize((size, size), Image.Resampling.BICUBIC).save(path)

    for split, ids in (("train", train), ("val", val)):
        for i in ids:
            d = os.path.join(out_dir, split, str(digits.target[i]))
            os.makedirs(d, exist_ok=True)
            save(i, os.path.join(d, f"digit_{i:04d}.png"))
    os.makedirs(os.path.join(out_dir, "test"), exist_ok=True)
    with open(os.path.join(out_dir, "test_labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label"])
        for i in sorted(test):
            name = f"digit_{i:04d}.png"
            save(i, os.path.join(out_dir, "test", name))
            w.writerow([name, str(digits.target[i])])
    return {"train": len(train), "val": len(val), "test": len(test)}
