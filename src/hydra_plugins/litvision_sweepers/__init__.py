"""litvision's Hydra sweepers (found by Hydra through the ``hydra_plugins`` namespace package).

- ``hydra/sweeper=litvision_grid`` (the default in conf/hydra/default.yaml): Hydra's grid sweeper that
  runs every job even when some fail and ends with a short report instead of the first traceback.
- ``hydra/sweeper=litvision_optuna``: an Optuna (>= 4) search that resumes from SQLite, prunes from
  per-epoch metrics and runs trials in parallel through the configured launcher.

Importing this package must stay cheap (Hydra imports every plugin at each start): optuna is imported
only when a search runs.
"""
