"""Write a synthetic copy of a dataset, in its real file format, for timing where the real files are missing.

    python scripts/lab/synthetic_data.py cifar10 data/synthetic    # 50,000 + 10,000 images of CIFAR-10's shape
    python scripts/lab/benchmark.py model=resnet data=cifar10 data.data_dir=data/synthetic trainer=gpu \
        trainer.precision=bf16-mixed data.batch_size=512

The files go where torchvision reads them under the folder given (``<folder>/cifar-10-batches-py/``),
with a SYNTHETIC.txt marker, so the benchmark's table says "SYNTHETIC". Images are noise with a bright
square per class (learnable, so accuracies can still be compared between loops) and say nothing about
the real dataset. Existing files are never overwritten.
"""

from __future__ import annotations

import argparse
import sys

from litvision.support.errors import LitvisionError
from litvision_lab.synthetic import DATASETS, write_synthetic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("data_dir", help="folder to pass as data.data_dir (a new one: not your real data folder)")
    parser.add_argument("--train", type=int, help="training images (default: the official count)")
    parser.add_argument("--test", type=int, help="test images (default: the official count)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        folder = write_synthetic(args.dataset, args.data_dir, args.train, args.test, args.seed)
    except LitvisionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write under {args.data_dir}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(f"synthetic {args.dataset} written to {folder}; train with data={args.dataset} data.data_dir={args.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
