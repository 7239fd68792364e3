"""litvision's Hydra sweepers (found by Hydra through the ``hydra_plugins`` namespace package).

- ``hydra/sweeper=litvision_grid`` (the default in conf/hydra/default.yaml): Hydra's grid sweeper that
  runs every job even when some fail and ends with a short report instead of the first traceback.
- ``hydra/sweeper=litvision_optuna``: an Optuna (>= 4) search that resumes from SQLite, prunes from
  per-epoch metrics and runs trials in parallel through the configured launcher. Optuna is the
  ``litvision[optuna]`` extra: without it a search stops with one line that says so.
- ``missing_launchers``: while the ``litvision[launchers]`` extra is not installed, stand-ins for its
  launcher configs, so that hydra/launcher=parallel or slurm stops a multirun with one line naming the
  extra instead of Hydra's "Could not load 'hydra/launcher/joblib'".

Importing this package must stay cheap (Hydra imports every plugin at each start): optuna is imported
only when a search runs.
"""
