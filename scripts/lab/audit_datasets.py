"""Count the exact duplicates in the built-in datasets and time the data audit: python scripts/lab/audit_datasets.py --help."""

import sys

from litvision_lab.audit_datasets import main

if __name__ == "__main__":
    sys.exit(main())
