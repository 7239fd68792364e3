"""The one normalization: the training batches, prediction and export turn the same pixels into the same floats."""

from __future__ import annotations

import torch
from torch import nn

from litvision.data import CIFAR10DataModule
from litvision.data.normalization import Normalization
from litvision.tasks.predict import ProbabilityModel

MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


def pixels(n: int = 6, side: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_normalize_is_x_over_255_minus_mean_over_std_and_denormalize_undoes_it():
    images = pixels()
    normalize = Normalization(MEAN, STD)
    out = normalize(images)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and images.dtype == torch.uint8  # the input is left as it was
    torch.testing.assert_close(out, (images.float() / 255 - mean) / std, atol=1e-5, rtol=0)
    torch.testing.assert_close(normalize.denormalize(out) * 255, images.float(), atol=1e-3, rtol=0)
    assert normalize.stats() == {"mean": torch.tensor(MEAN).tolist(), "std": torch.tensor(STD).tolist()}


class _Inputs(nn.Module):
    """A stand-in net that keeps what it was given (and answers uniform logits)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.clone()
        return torch.zeros(len(x), 10)


def test_training_batches_and_the_prediction_model_see_the_same_floats(tmp_path):
    facts = dict(num_classes=10, class_names=[f"c{i}" for i in range(10)], mean=MEAN, std=STD)
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), download=False, **facts)
    images = pixels()
    batch = datamodule.prepare_batch(images, augment=False)
    net = _Inputs()
    ProbabilityModel(net, MEAN, STD)(images)
    assert torch.equal(net.seen, batch)  # bit for bit, not merely close
    torch.testing.assert_close(datamodule.denormalize(batch) * 255, images.float(), atol=1e-3, rtol=0)
