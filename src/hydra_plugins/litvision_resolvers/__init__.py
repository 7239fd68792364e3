"""Registers litvision's OmegaConf resolvers (``${litvision.folder_classes:...}``) before any config resolves.

Hydra imports every module under ``hydra_plugins`` when it starts, ahead of composing the config, so the
data configs' interpolations work in every script without an import of their own.
"""

from litvision.data.folder_classes import register_resolvers

register_resolvers()
