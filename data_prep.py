"""Dataset tools to run before train_hf.py: inspect, clean, split, preview and publish image folders.

DIR is a dataset root with train/ [val/ or validation/] [test/] folders (class sub-folders; test may be flat), or
a single folder of class sub-folders (then it is the train split). Nothing in DIR is ever written.

    python data_prep.py inspect data/raw --out inspection/raw     # summary, inspection.json, chart, index.html
    python data_prep.py prepare data/raw data/clean --max-side 1024 [--crop 0.05] [--link]
    python data_prep.py preview-aug configs/seed_resnet152.yaml data/clean --out aug.png [-- --image_size 384]
    python data_prep.py save data/clean data/clean_hf              # parquet + card: datasets.load_dataset(...)
    python data_prep.py push data/clean me/my-dataset --private    # token: HF_TOKEN or `hf auth login`
    python data_prep.py demo data/demo                             # the embedded digits dataset
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from foldertune.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="find problems; write inspection.json, class chart and a viewer page")
    p.add_argument("dir", help="dataset root (train/ val/ test/) or a folder of class folders")
    p.add_argument("--out", help="report folder (default: inspection/<name of DIR>)")
    p.add_argument("--min-side", type=int, default=32, help="images with a shorter side (pixels) are 'tiny'")
    p.add_argument("--near-threshold", type=int, default=6,
                   help="max differing bits (of 64) between perceptual hashes for a near duplicate")
    p.add_argument("--imbalance-ratio", type=float, default=10.0, help="flag largest/smallest class over this")
    p.add_argument("--samples", type=int, default=24, help="sample thumbnails per class on the viewer page")

    p = sub.add_parser("prepare", help="write a clean, training-ready copy with a manifest and quarantine list")
    p.add_argument("dir", help="source dataset (never modified)")
    p.add_argument("out", help="output folder: new, empty, or written by an earlier prepare (then replaced)")
    p.add_argument("--link", action="store_true", help="hard-link unchanged files instead of copying them")
    p.add_argument("--crop", type=float, default=0.0, help="border crop, fraction of width/height per side")
    p.add_argument("--max-side", type=int, default=0, help="downscale so the longer side is at most this (px)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="per-class val fraction when DIR has no val")
    p.add_argument("--seed", type=int, default=0, help="seed of that split")
    p.add_argument("--keep-duplicates", action="store_true", help="write every exact duplicate too")
    p.add_argument("--jpeg-quality", type=int, default=95, help="quality of re-encoded JPEGs")
    p.add_argument("--min-side", type=int, default=32, help="as in inspect (reported only)")

    p = sub.add_parser("preview-aug", help="grid of images x augmented versions from a recipe's train transform",
                       epilog="Further train_hf.py flags (after --) override the recipe, e.g. -- --image_size 384")
    p.add_argument("config", help="recipe YAML (as train_hf.py --config)")
    p.add_argument("dir", help="dataset root or train folder")
    p.add_argument("--out", default="aug_preview.png", help="PNG to write")
    p.add_argument("--images", type=int, default=6, help="rows: images, spread over the classes")
    p.add_argument("--versions", type=int, default=5, help="columns: augmented versions per image")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("save", help="write the DatasetDict as Hub-style parquet + dataset card to a folder")
    p.add_argument("dir")
    p.add_argument("out")
    p.add_argument("--title", help="card title (default: the folder name)")

    p = sub.add_parser("push", help="push the DatasetDict (parquet with image bytes + card) to the Hub")
    p.add_argument("dir")
    p.add_argument("repo_id", help="user/name or org/name")
    p.add_argument("--private", action="store_true")
    p.add_argument("--title", help="card title (default: the repo name)")

    p = sub.add_parser("demo", help="write scikit-learn's digits (1,797 images, 10 classes) as image folders")
    p.add_argument("out", help="output folder (train/ val/ test/ and test_labels.csv)")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (the scans are 8x8)")

    for name in ("inspect", "prepare"):
        sub.choices[name].add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
        sub.choices[name].add_argument("--no-progress", action="store_true", help="no progress bar")
    for name, func in (("inspect", cmd_inspect), ("prepare", cmd_prepare), ("preview-aug", cmd_preview_aug),
                       ("save", cmd_save), ("push", cmd_push), ("demo", cmd_demo)):
        sub.choices[name].set_defaults(func=func)
    args, extra = parser.parse_known_args(argv)  # preview-aug passes train_hf.py flags on to the recipe parser
    args.overrides = [a for a in extra if a != "--"]
    if args.overrides and args.command != "preview-aug":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)

    try:
        args.func(args)
        return 0
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def cmd_inspect(args: argparse.Namespace) -> None:
    from foldertune.inspection import format_summary, inspect_dataset

    out = args.out or os.path.join("inspection", os.path.basename(os.path.abspath(args.dir)))
    report = inspect_dataset(args.dir, out_dir=out, workers=args.workers, min_side=args.min_side,
                             near_threshold=args.near_threshold, imbalance_ratio=args.imbalance_ratio,
                             samples_per_class=args.samples, progress=not args.no_progress)
    print(format_summary(report))
    print(f"report: {os.path.join(out, 'index.html')} (open in a browser), inspection.json, class_distribution.png")


def cmd_prepare(args: argparse.Namespace) -> None:
    from foldertune.prep import prepare_dataset

    summary = prepare_dataset(args.dir, args.out, link=args.link, crop=args.crop, max_side=args.max_side,
                              val_fraction=args.val_fraction, seed=args.seed, drop_duplicates=not args.keep_duplicates,
                              jpeg_quality=args.jpeg_quality, workers=args.workers, min_side=args.min_side,
                              progress=not args.no_progress)
    print(json.dumps({k: summary[k] for k in ("source_files", "written", "actions", "counts")}, indent=1))
    print(f"wrote {args.out}: manifest.csv (every source file), quarantine.csv, prepare.json")


def cmd_preview_aug(args: argparse.Namespace) -> None:
    from foldertune.prep import preview_augmentation

    path = preview_augmentation(args.config, args.dir, out=args.out, images=args.images, versions=args.versions,
                                seed=args.seed,
                                extra_args=args.overrides)
    print(f"wrote {path}")


def cmd_save(args: argparse.Namespace) -> None:
    from foldertune.hf_dataset import save_dataset

    counts = save_dataset(args.dir, args.out, title=args.title)
    print(f"wrote {args.out}: {counts}; load it with datasets.load_dataset({args.out!r})")


def cmd_push(args: argparse.Namespace) -> None:
    from foldertune.hf_dataset import push_dataset

    print(f"pushed {push_dataset(args.dir, args.repo_id, private=args.private, title=args.title)}")


def cmd_demo(args: argparse.Namespace) -> None:
    from foldertune.demo import write_digits_demo

    counts = write_digits_demo(args.out, size=args.size)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    sys.exit(main())
