"""What the data holds before a model sees it: class counts and exact duplicates within and across splits.

A test image that is also a training image inflates the test accuracy without anyone noticing. Every
decoded uint8 image is hashed (BLAKE2b of its bytes, 16-byte digests, so a collision is out of reach),
and equal digests are equal images: copies within a split, and test (or val) images identical to a
training image. ``data.drop_duplicates=test`` removes from the test split every image that also
appears in train or val, so the test measures images the model selection never saw.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch

from litvision.support.errors import LitvisionError

log = logging.getLogger(__name__)

DROP_CHOICES = ("none", "test")
IMBALANCE_RATIO = 3.0  # warn when the largest class of a split has this many times the smallest's images
LISTED = 10  # examples named in the log line; the report and audit record list up to MAX_LISTED
MAX_LISTED = 200
CHUNK = 8192  # images hashed per read
CROSS_PAIRS = (("test", "train"), ("test", "val"), ("val", "train"))


@dataclass
class AuditResult:
    class_counts: dict[str, list[int]]  # split -> images per class, in label order
    class_names: list[str]
    imbalanced: dict[str, float] = field(default_factory=dict)  # split -> largest / smallest class count
    within: dict[str, int] = field(default_factory=dict)  # split -> images that copy an earlier one of it
    across: dict[str, int] = field(default_factory=dict)  # "test~train" -> images of the first found in the second
    examples: dict[str, list[list[str]]] = field(default_factory=dict)  # "test~train" -> [[test name, train name]]
    dropped: int = 0  # test images removed (drop_duplicates=test)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def check_drop_duplicates(value: str) -> None:
    if value not in DROP_CHOICES:
        raise LitvisionError(f"data.drop_duplicates={value} is not one of {', '.join(DROP_CHOICES)}")


def image_digests(images) -> list[bytes]:
    """One BLAKE2b digest per image of a uint8 (N, ...) split (a tensor, or a memory-mapped split), over its bytes.

    Read a chunk at a time, so a memory-mapped split is never copied whole into memory.
    """
    chunks = images.chunks() if hasattr(images, "chunks") else images.detach().split(CHUNK)
    digests = []
    for chunk in chunks:
        flat = chunk.cpu().reshape(len(chunk), -1).contiguous().numpy()
        digests += [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]
    return digests


def audit(
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    class_names: Sequence[str],
    names: Mapping[str, Sequence[str]] | None = None,
    digests: Mapping[str, list[bytes]] | None = None,
) -> AuditResult:
    """Class counts and duplicates of ``splits`` ({split: (uint8 images, labels)}).

    ``names`` lists each split's images as a person finds them (file paths); indices into the split
    otherwise. ``digests``: each split's :func:`image_digests`, when the caller has them already.
    """
    started = time.perf_counter()
    num_classes = len(class_names)
    result = AuditResult(class_counts={}, class_names=list(class_names))
    digests = digests or {split: image_digests(images) for split, (images, _) in splits.items()}
    for split, (_, labels) in splits.items():
        counts = torch.bincount(labels.cpu(), minlength=num_classes).tolist()
        result.class_counts[split] = counts
        largest, smallest = max(counts, default=0), min(counts, default=0)
        if largest and largest >= IMBALANCE_RATIO * smallest:  # a class without images counts as imbalance
            result.imbalanced[split] = largest / smallest if smallest else float("inf")
        result.within[split] = len(digests[split]) - len(set(digests[split]))
    for first, second in CROSS_PAIRS:
        if first not in digests or second not in digests:
            continue
        where = {}
        for index, digest in enumerate(digests[second]):
            where.setdefault(digest, index)
        pairs = [(index, where[d]) for index, d in enumerate(digests[first]) if d in where]
        key = f"{first}~{second}"
        result.across[key] = len(pairs)
        result.examples[key] = [[_name(names, first, a), _name(names, second, b)] for a, b in pairs[:MAX_LISTED]]
    result.seconds = time.perf_counter() - started
    return result


def seen_before_test(digests: Mapping[str, list[bytes]]) -> torch.Tensor:
    """A boolean mask over the test split: True where the image also appears in train or val."""
    seen = {digest for split in ("train", "val") for digest in digests.get(split, ())}
    return torch.tensor([digest in seen for digest in digests["test"]], dtype=torch.bool)


def _name(names: Mapping[str, Sequence[str]] | None, split: str, index: int) -> str:
    if names and split in names:
        return str(names[split][index])
    return f"{split}[{index}]"


def log_result(result: AuditResult) -> None:
    """One line of counts, then a warning per finding: imbalance, copies within a split, test images seen in training."""
    totals = ", ".join(f"{split} {sum(counts)}" for split, counts in result.class_counts.items())
    log.info(
        "data audit (%.2f s): %s images; duplicates within splits %s; across %s",
        result.seconds,
        totals,
        _pairs(result.within),
        _pairs(result.across),
    )
    for split, ratio in result.imbalanced.items():
        counts = result.class_counts[split]
        log.warning(
            "data audit: %s classes are imbalanced (largest/smallest %.1f): %s",
            split,
            ratio,
            ", ".join(f"{name} {count}" for name, count in zip(result.class_names, counts)),
        )
    for key, count in result.across.items():
        if count:
            first, second = key.split("~")
            listed = "; ".join(f"{a} = {b}" for a, b in result.examples[key][:LISTED])
            more = f" (and {count - LISTED} more)" if count > LISTED else ""
            log.warning("data audit: %d %s image(s) identical to %s images: %s%s", count, first, second, listed, more)
    if result.dropped:
        log.warning(
            "data audit: dropped %d test image(s) found in train or val (data.drop_duplicates=test)", result.dropped
        )


def _pairs(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key.replace('~', '/')} {value}" for key, value in counts.items()) or "none"


def run(
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    class_names: Sequence[str],
    audit_splits: bool,
    drop_duplicates: str,
    names: Mapping[str, Sequence[str]] | None = None,
) -> tuple[AuditResult | None, torch.Tensor | None]:
    """The audit of a data module's splits (``audit``) and, for ``drop_duplicates=test``, which test images
    to keep (those not found in train or val): (result or None, the test split's keep mask or None).
    The module applies the mask to its own split."""
    if not (audit_splits or drop_duplicates == "test"):
        return None, None
    if not splits:  # loader=dataloader decodes per batch: there is nothing in memory to hash
        log.info("data audit skipped: loader=dataloader holds no decoded splits in memory")
        return None, None
    digests = {split: image_digests(images) for split, (images, _) in splits.items()}
    result = audit(splits, class_names, names, digests)
    keep = None
    if drop_duplicates == "test" and "test" in splits:
        keep = ~seen_before_test(digests)
        result.dropped = int((~keep).sum())
        labels = splits["test"][1]
        result.class_counts["test"] = torch.bincount(labels[keep], minlength=len(result.class_names)).tolist()
    log_result(result)
    return result, keep
