"""Rerun the experiments over several seeds and write docs/results.md: python scripts/lab/reproduce.py --help."""

import sys

from litvision_lab.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
