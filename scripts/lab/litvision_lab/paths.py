"""Where the lab and the template it measures live, and how the lab's entry configs reach the template's groups.

The lab's entry configs (scripts/lab/conf/*.yaml) compose the template's config groups (data, model,
trainer, ...) through ``hydra.searchpath: [file://${litvision_lab.template_conf:}]``. Hydra reads a
relative file:// path from the working directory, so the path comes absolute from this resolver,
registered when this module is imported (the entry scripts and the lab's tests import it first).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

LAB = Path(__file__).resolve().parents[1]  # scripts/lab
ROOT = LAB.parents[1]  # the repository
CONF_DIR = ROOT / "conf"  # the template's configs
LAB_CONF_DIR = LAB / "conf"  # the lab's entry configs and its own groups (runtime/)
# The real-MNIST subset beside the checkout, as CI has it; LITVISION_MNIST17K points elsewhere.
MNIST_17K = Path(os.environ.get("LITVISION_MNIST17K", ROOT.parent / "shared" / "data" / "mnist-17k"))

OmegaConf.register_new_resolver("litvision_lab.template_conf", lambda: str(CONF_DIR), replace=True)
