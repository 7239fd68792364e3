"""Decoding, memory and epochs of a large image folder on each data path: python scripts/lab/data_scale.py --help."""

import sys

from litvision_lab.data_scale import main

if __name__ == "__main__":
    sys.exit(main())
