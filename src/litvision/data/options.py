"""The data modules' option checks, run when a module is built, before any file is looked at (the folder's
class options are compared with its class folders): each bad option is one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from litvision.data.augment import AUGMENT_KEYS, POLICIES
from litvision.data.folder_classes import class_root, folder_class_names
from litvision.data.images import RESIZE_MODES
from litvision.support.errors import DataError


def _whole(value, lowest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lowest


def check_data_options(
    dataset: str,
    native_shape: tuple[int, int],
    *,
    in_channels: int | None,
    image_size: int | None,
    batch_size: int,
    eval_batch_size: int | None,
    val_size: int,
    split_seed: int,
    shuffle_seed: int,
    num_classes: int,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    augment: Mapping | None,
    loader: str,
    num_workers: int,
    flags: Mapping[str, object],
    num_folds: int | None,
    fold: int,
) -> None:
    """ImageDataModule's options as given (null: the files' own channels and size), against its ``native_shape``."""
    native_channels, native_side = native_shape
    channels = in_channels or native_channels
    if channels != native_channels:
        raise DataError(f"{dataset} has {native_channels} channel(s); data.in_channels={in_channels}")
    counts = {"batch_size": (batch_size, 1), "val_size": (val_size, 0)}
    counts["image_size"] = (native_side if image_size is None else image_size, 1)
    counts.update(split_seed=(split_seed, 0), num_workers=(num_workers, 0))
    counts["shuffle_seed"] = (shuffle_seed, 0)  # ${seed} by default: train.py draws one for seed=null
    if eval_batch_size is not None:
        counts["eval_batch_size"] = (eval_batch_size, 1)
    for name, (value, lowest) in counts.items():
        if not _whole(value, lowest):
            raise DataError(f"data.{name} must be an integer >= {lowest} (got {value!r})")
    if loader not in ("tensor", "dataloader"):
        raise DataError(f"data.loader must be 'tensor' or 'dataloader', got {loader!r}")
    if len(class_names) != num_classes or len(mean) != channels or len(std) != channels:
        raise DataError(f"{dataset}: num_classes, class_names, mean and std disagree in the data config")
    if any(not value > 0 for value in std):
        raise DataError(f"data.std must be > 0 in every channel (got {list(std)})")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise DataError(f"data.{name} must be true or false (got {value!r})")
    _check_augment(dict(augment or {}), counts["image_size"][0])
    _check_folds(num_folds, fold)


def _check_augment(augment: dict, image_size: int) -> None:
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise DataError(f"data.augment has unknown key(s) {', '.join(unknown)}; known: {', '.join(AUGMENT_KEYS)}")
    if not isinstance(augment.get("flip", False), bool):
        raise DataError(f"data.augment.flip must be true or false (got {augment['flip']!r})")
    # Reflect padding needs less than the image side; a cutout square no larger than the image.
    for name, below in (("crop_padding", image_size), ("cutout_size", image_size + 1)):
        value = augment.get(name, 0)
        if not _whole(value, 0) or value >= below:
            raise DataError(f"data.augment.{name} must be an integer in [0, {below}) (got {value!r})")
    policy = augment.get("policy")
    if policy is not None and policy not in POLICIES:
        raise DataError(f"data.augment.policy must be null or one of {', '.join(POLICIES)} (got {policy!r})")
    probabilities = (("erasing", 1), ("mix_switch_prob", 1), ("mix_prob", 1))
    for name, highest in (*probabilities, ("mixup_alpha", None), ("cutmix_alpha", None)):
        value = augment.get(name, 0)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or value < 0 or (highest is not None and value > highest):
            bounds = f"in [0, {highest}]" if highest is not None else ">= 0 (0: off)"
            raise DataError(f"data.augment.{name} must be a number {bounds} (got {value!r})")


def _check_folds(num_folds, fold) -> None:
    if num_folds is None:
        if fold != 0:
            raise DataError(f"data.fold={fold!r} needs data.num_folds=<K> (k-fold cross-validation)")
        return
    if not _whole(num_folds, 2):
        raise DataError(f"data.num_folds must be null or an integer >= 2 (got {num_folds!r})")
    if not _whole(fold, 0) or fold >= num_folds:
        raise DataError(
            f"data.fold must be an integer in [0, {num_folds}) for data.num_folds={num_folds} (got {fold!r})"
        )


def check_folder_options(
    data_dir: str | None,
    *,
    num_classes: int | None,
    class_names: Sequence[str] | None,
    in_channels: int,
    image_size: int,
    resize: str,
    val_fraction: float,
    test_fraction: float,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    on_bad_image: str,
    decode_workers: int | None,
    in_memory: str | bool,
    memory_budget: float,
) -> list[str]:
    """FolderDataModule's own options, and its class options against the folder; returns the class folders' names."""
    if not data_dir:
        raise DataError("data=folder needs data.data_dir=<folder with one subfolder of images per class>")
    if in_channels not in (1, 3):
        raise DataError(f"data.in_channels must be 1 or 3 for data=folder (got {in_channels!r})")
    if not _whole(image_size, 1):
        raise DataError(f"data.image_size must be an integer >= 1 (got {image_size!r})")
    if resize not in RESIZE_MODES:
        raise DataError(f"data.resize must be one of {', '.join(RESIZE_MODES)} (got {resize!r})")
    if on_bad_image not in ("skip", "error"):
        raise DataError(f"data.on_bad_image must be 'skip' or 'error' (got {on_bad_image!r})")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise DataError(f"data.{name} must be in [0, 1) (got {value!r})")
    if val_fraction + test_fraction >= 1:
        raise DataError(f"data.val_fraction + data.test_fraction must be < 1 (got {val_fraction + test_fraction})")
    if decode_workers is not None and not _whole(decode_workers, 1):
        raise DataError(f"data.decode_workers must be null or an integer >= 1 (got {decode_workers!r})")
    if in_memory not in ("auto", True, False) or isinstance(in_memory, int) and not isinstance(in_memory, bool):
        raise DataError(f"data.in_memory must be auto, true or false (got {in_memory!r})")
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)) or not memory_budget > 0:
        raise DataError(
            f"data.memory_budget must be a share of the free memory in (0, 1] or bytes > 1 (got {memory_budget!r})"
        )
    found, root = folder_class_names(data_dir), class_root(data_dir)
    if len(found) < 2:
        raise DataError(f"{root} has one class folder ({found[0]}); classification needs two or more")
    if num_classes is not None and num_classes != len(found):
        raise DataError(
            f"data.num_classes={num_classes} but {root} has {len(found)} class folders "
            f"({', '.join(found)}); leave data.num_classes unset to take it from the folder"
        )
    if class_names and list(class_names) != found:
        raise DataError(
            f"data.class_names {list(class_names)} differ from the class folders of {root} "
            f"({found}); leave data.class_names unset to take them from the folder"
        )
    if (mean is None) != (std is None):
        raise DataError("data.mean and data.std: give both or neither (neither: computed from the training split)")
    return found
