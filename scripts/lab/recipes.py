"""Issue 27's measurements (augmentation cost, recipe ablation, LR finder pick): python scripts/lab/recipes.py --help."""

import sys

from litvision_lab.recipes import main

if __name__ == "__main__":
    sys.exit(main())
