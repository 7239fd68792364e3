"""The data modules' option checks, run when a module is built, before any file is looked at (the folder's
class options are compared with its class folders): each bad option is one line."""

from __future__ import annotations

from collections.abc import Sequence

from litvision.data.augment import AUGMENT_KEYS, POLICIES
from litvision.data.folder_classes import class_root, folder_class_names
from litvision.support.errors import DataError


def _whole(value, lowest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lowest


def check_data_options(
    dataset: str,
    native_shape: tuple[int, int],
    in_channels: int | None,
    image_size: int | None,
    num_classes: int,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
) -> None:
    """What an ImageDataModule's arguments must agree on (each alone is checked by its annotation): the
    files' channels, and one class name per class and one mean and std per channel."""
    native_channels, _ = native_shape
    channels = in_channels or native_channels
    if channels != native_channels:
        raise DataError(f"{dataset} has {native_channels} channel(s); data.in_channels={in_channels}")
    if len(class_names) != num_classes or len(mean) != channels or len(std) != channels:
        raise DataError(f"{dataset}: num_classes, class_names, mean and std disagree in the data config")
    if any(not value > 0 for value in std):
        raise DataError(f"data.std must be > 0 in every channel (got {list(std)})")


def check_augment(augment: dict, image_size: int) -> None:
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


def check_folds(num_folds, fold) -> None:
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
    num_classes: int | None,
    class_names: Sequence[str] | None,
    val_fraction: float,
    test_fraction: float,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    memory_budget: float,
) -> list[str]:
    """The folder's fractions and budget, and its class options against its class folders; returns their names."""
    if not data_dir:
        raise DataError("data=folder needs data.data_dir=<folder with one subfolder of images per class>")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise DataError(f"data.{name} must be in [0, 1) (got {value!r})")
    if val_fraction + test_fraction >= 1:
        raise DataError(f"data.val_fraction + data.test_fraction must be < 1 (got {val_fraction + test_fraction})")
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
