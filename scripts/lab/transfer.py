"""Pretrained backbone against scratch on 1,000 MNIST images, and resnet18's training speed: python scripts/lab/transfer.py --help."""

import sys

from litvision_lab.transfer import main

if __name__ == "__main__":
    sys.exit(main())
