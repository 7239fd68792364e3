"""The tutorials' own training loops in plain PyTorch, the control for docs/results.md: python scripts/lab/tutorial_loops.py --help."""

import sys

from litvision_lab.tutorial_loops import main

if __name__ == "__main__":
    sys.exit(main())
