"""Prepare image-folder datasets for train_hf.py.

    python data_prep.py demo data/demo     # the embedded digits dataset as train/ val/ test/ folders
"""

from __future__ import annotations

import argparse
import sys

from foldertune.demo import write_digits_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="write scikit-learn's digits (1,797 images, 10 classes) as image folders")
    p.add_argument("out", help="output folder (train/ val/ test/ and test_labels.csv)")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (the scans are 8x8)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        counts = write_digits_demo(args.out, size=args.size)
        print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
