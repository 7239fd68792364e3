"""Sweeps and scale-out: run records, Optuna search space and pruning, DDP strategy choice, summaries.

The modules import neither torch nor optuna at the top level: Hydra imports the sweeper plugins (which
use them) at every start, and ``scripts/summarize.py`` should answer in a blink.
"""
