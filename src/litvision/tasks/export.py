"""The export task: a checkpoint as a standalone ONNX or TorchScript file that takes uint8 images.

``python scripts/export.py ckpt_path=<ckpt> format=onnx|torchscript [output=<file>]`` writes the
network wrapped in :class:`~litvision.tasks.predict.ProbabilityModel` (uint8 (N, C, H, W) in, class
probabilities out, the checkpoint's normalization inside; any batch size) and a JSON file beside it
with what a caller needs: class names, channels, image size, mean/std. Before it reports success it
runs the exported file (onnxruntime, torch.jit.load) and compares its outputs with the checkpoint's.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from litvision.data.normalization import Normalization
from litvision.support import atomic
from litvision.support.checkpoint import read_checkpoint, saved_configs
from litvision.support.errors import LitvisionError, first_line
from litvision.support.instantiate import build
from litvision.tasks.predict import load_classifier, probability_model

log = logging.getLogger(__name__)

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-4  # largest difference allowed between the exported model's probabilities and the checkpoint's
CHECK_BATCH = 8  # images in the self-check batch
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"


def export(cfg: DictConfig) -> dict[str, float]:
    """Write the exported model and its JSON; return the self-check's largest difference."""
    fmt = str(cfg.format)
    if fmt not in SUFFIXES:
        raise LitvisionError(f"format must be onnx or torchscript (got {fmt!r})")
    if fmt == "onnx":
        _require_onnx()
    ckpt_path = Path(cfg.ckpt_path).expanduser()
    output = Path(cfg.output).expanduser() if cfg.get("output") else ckpt_path.with_suffix(SUFFIXES[fmt])
    refuse_overwriting(ckpt_path, output)
    checkpoint = read_checkpoint(ckpt_path)
    model, data_config = probability_model(checkpoint)
    channels, size = int(data_config["in_channels"]), int(data_config["image_size"])
    images, source = check_batch(data_config, channels, size, cfg.get("seed", 0))
    log.info("self-check batch: %s", source)

    # Exported and checked under a temporary name: only a file that passed its self-check takes the output's
    # name, so a failed export leaves a previous one in place.
    with atomic.atomic_path(output) as written:
        if fmt == "onnx":
            _export_onnx(model, images, written, int(cfg.opset) if cfg.get("opset") else None)
        else:
            _export_torchscript(model, images, written)
        expected = checkpoint_probabilities(checkpoint, images)
        run = _onnx_runner(written) if fmt == "onnx" else _torchscript_runner(written)
        # The whole batch and a single image: the batch dimension is dynamic in the file.
        difference = max(
            (run(images) - expected).abs().max().item(),
            (run(images[:1]) - expected[:1]).abs().max().item(),
        )
        if not difference <= TOLERANCE:
            raise LitvisionError(
                f"the exported {fmt} model differs from the checkpoint by {difference:.2e} (> {TOLERANCE:g}); "
                f"nothing was written to {output}"
            )
    meta = {
        "format": fmt,
        "file": output.name,
        "checkpoint": str(ckpt_path),
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": ["batch", channels, size, size], "layout": "NCHW"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(data_config["class_names"])]},
        "channels": channels,
        "image_size": size,
        "mean": [float(v) for v in data_config["mean"]],
        "std": [float(v) for v in data_config["std"]],
        "class_names": [str(name) for name in data_config["class_names"]],
        "resize": data_config.get("resize", "crop"),
    }
    meta_path = atomic.write_json(meta_json(output), meta, sort_keys=False)
    log.info("exported %s (largest difference from the checkpoint: %.1e), %s", output, difference, meta_path.name)
    return {"max_abs_diff": difference}


def meta_json(output: Path) -> Path:
    """The JSON beside an exported file: last.onnx.json, last.pt.json (both can sit beside one checkpoint)."""
    return output.with_name(output.name + ".json")


def refuse_overwriting(ckpt_path: Path, output: Path) -> None:
    """An export of m.pt as TorchScript would be m.pt: the checkpoint it reads. Never write over the input."""
    source = ckpt_path.resolve()
    for target in (output, meta_json(output)):
        if target.resolve() == source:
            raise LitvisionError(
                f"exporting to {target} would overwrite the checkpoint {ckpt_path}; pass output=<another file>"
            )


def checkpoint_probabilities(checkpoint: dict, images: torch.Tensor) -> torch.Tensor:
    """The checkpoint's own answer for uint8 ``images``: its ImageClassifier on batches normalized as in training."""
    _, data_config = saved_configs(checkpoint)
    normalize = Normalization(data_config["mean"], data_config["std"])
    with torch.inference_mode():
        return load_classifier(checkpoint).eval_logits(normalize(images)).softmax(dim=1)


def check_batch(data_config: dict, channels: int, size: int, seed: int = 0) -> tuple[torch.Tensor, str]:
    """uint8 (N, C, size, size): test images of the checkpoint's dataset where its files are here, else random."""
    try:
        datamodule = build({**data_config, "download": False}, "data")  # never download for a self-check
        datamodule.prepare_data()
        datamodule.setup("test")
        images = next(iter(datamodule.test_dataloader()))[0][:CHECK_BATCH]
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.shape[1] != channels:
            raise TypeError(f"a test batch of {getattr(images, 'dtype', type(images))}")
        if images.shape[-1] != size or images.shape[-2] != size:  # data.image_size resized the files' images
            images = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
            images = images.round().clamp(0, 255).to(torch.uint8)
        return images.cpu().contiguous(), f"{len(images)} test images from {data_config.get('data_dir')}"
    except Exception as err:  # any reason the data cannot be read here: the check still runs, on random pixels
        reason = first_line(err, limit=160)
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (CHECK_BATCH, channels, size, size), dtype=torch.uint8, generator=generator)
        return images, f"{CHECK_BATCH} random uint8 images (the checkpoint's data is not available here: {reason})"


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise LitvisionError(
            f"format=onnx needs onnx and onnxruntime ({err.name} is missing): pip install 'litvision[export]'"
        ) from None


def _export_onnx(model: torch.nn.Module, images: torch.Tensor, output: Path, opset: int | None) -> None:
    # The TorchScript-based exporter (dynamo=False): the torch.export-based one needs onnxscript as well.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice and tracer warnings
        kwargs = {"opset_version": opset} if opset else {}
        torch.onnx.export(
            model,
            (images,),
            str(output),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            dynamo=False,
            **kwargs,
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(output)))


def _export_torchscript(model: torch.nn.Module, images: torch.Tensor, output: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice and tracer warnings
        traced = torch.jit.trace(model, (images,))
    traced.save(str(output))


def _onnx_runner(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])


def _torchscript_runner(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return loaded(images)

    return run
