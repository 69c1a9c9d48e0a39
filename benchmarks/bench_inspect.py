"""`data_prep.py inspect` throughput on real photos: one process (the baseline) against all cores, same run.

    .venv/bin/python benchmarks/bench_inspect.py [--images ../shared/data/hymenoptera] [--workers N]

Each pass decodes every file with the loader's open_rgb, hashes it (bytes + perceptual hash) and checks it; no
thumbnails or report files. The first pool start pays for the fork server importing the package (a few seconds,
once per process), so the parallel pass is measured after a warm-up pass. Prints images/s and the speed-up.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from foldertune.inspection import analyse_dataset  # noqa: E402


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=os.path.join(root, "..", "shared", "data", "hymenoptera"))
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()

    analyse_dataset(args.images, workers=args.workers, progress=False)  # warm-up: fork server + page cache
    rates = {}
    for workers in (1, args.workers):
        t0 = time.perf_counter()
        report = analyse_dataset(args.images, workers=workers, progress=False)
        seconds = time.perf_counter() - t0
        rates[workers] = report["summary"]["files"] / seconds
        print(f"{workers} process(es): {report['summary']['files']} files in {seconds:.2f} s = "
              f"{rates[workers]:.0f} images/s")
    print(f"speed-up {rates[args.workers] / rates[1]:.2f}x on {args.workers} processes")


if __name__ == "__main__":
    main()
