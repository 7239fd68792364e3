"""The task functions the scripts run: a DictConfig in, metrics (or files) out."""
