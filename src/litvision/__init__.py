"""litvision: image classification with PyTorch Lightning, Hydra and TensorBoard."""

__version__ = "0.1.0"
