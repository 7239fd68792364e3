"""What a LitData folder may hold for ``data=streaming``: checked as untrusted data before LitData reads it.

LitData decodes each sample as its ``index.json`` says: ``pickle`` unpickles it, other formats decode
video, audio or JPEG, an ``mds`` index switches the reader, a chunk name with ``../`` or an absolute
path reads (or downloads to) a file outside the folder. So only what ``scripts/stream_convert.py``
writes is accepted: uncompressed, unencrypted ``PyTreeLoader`` chunks named ``chunk-<rank>-<n>.bin``
of ``{"image": <uint8 tensor>, "label": <int>}`` samples (:func:`check_index`, before LitData is given
the folder), and each sample is a uint8 ``(C, H, W)`` image of the folder's stated shape with a label
below its class count (:class:`ImageSerializer`, :class:`LabelSerializer`, :func:`refusal`, as it is
read). The folder's ``litvision.json`` is checked too (:func:`check_info`). Anything else is one
:class:`DataError` naming the folder and what is wrong.

Kept free of LitData at import time (an optional extra): the serializers import it when built.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import NoReturn

import torch

from litvision.support.errors import DataError

SPLITS = ("train", "val", "test")
NOT_CONVERTED = "not a dataset written by scripts/stream_convert.py"

# index.json as litdata.optimize writes it for stream_convert's samples; absent keys are allowed (older
# LitData versions write fewer), any other key or value is refused.
TOP_KEYS = {"chunks", "config", "updated_at"}
CHUNK_KEYS = {"chunk_bytes", "chunk_size", "dim", "filename"}
CHUNK_NAME = re.compile(r"chunk-[0-9]{1,9}-[0-9]{1,9}\.bin")  # a plain name: nothing outside the folder
DATA_FORMAT = ["tensor", "int"]
SAMPLE_KEYS = ["image", "label"]  # the leaves of the sample dict, in data_format's order
NULL_KEYS = {"compression", "compression_batch_size", "compression_level", "encryption", "ipc_compression"}
CONFIG_VALUES = {"item_loader": ("PyTreeLoader",), "types": ({"image": "tensor", "label": "int"}, None)}
CONFIG_KEYS = {*NULL_KEYS, *CONFIG_VALUES, "chunk_bytes", "chunk_size", "data_format", "data_spec"}
LEAF_SPEC = {"type": None, "context": None, "children_spec": []}
TENSOR_HEADER = struct.Struct(">II")  # LitData's tensor sample: dtype index, rank, then rank uint32 sizes
MAX_JSON_BYTES = 64 << 20  # an index of a million chunks is well under this


def _whole(value, lowest: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lowest


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_json(path: Path, what: str):
    """``path`` parsed as strict JSON (no NaN or Infinity); :class:`DataError` when it is not."""

    def refuse_constant(name):
        raise ValueError(f"{name} is not a JSON number")

    if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
        raise DataError(f"{path}: not a {what} file of at most {MAX_JSON_BYTES >> 20} MiB; {NOT_CONVERTED}")
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise DataError(f"{path}: unreadable {what} ({reason}); {NOT_CONVERTED}") from None


def check_info(info, path: Path) -> dict:
    """``litvision.json`` (stream_convert's facts of a dataset) checked key by key; the keys it has are returned.

    Class names are kept as the strings they are; the numbers must be what a converted dataset has.
    A missing key is left to the data config (the data module names what is missing).
    """

    def refuse(what: str) -> NoReturn:
        raise DataError(f"{path}: {what}; {NOT_CONVERTED}")

    if not isinstance(info, dict):
        refuse("is not a JSON object")
    if "num_classes" in info and not _whole(info["num_classes"], 1):
        refuse(f"num_classes must be an integer >= 1 (got {info['num_classes']!r:.60})")
    if "class_names" in info:
        names = info["class_names"]
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            refuse("class_names must be a list of strings")
        if len(set(names)) != len(names):
            refuse("class_names has a name twice")
        if "num_classes" in info and len(names) != info["num_classes"]:
            refuse(f"class_names has {len(names)} names for num_classes={info['num_classes']}")
    if "in_channels" in info and not (_whole(info["in_channels"]) and info["in_channels"] in (1, 3)):
        refuse(f"in_channels must be 1 or 3 (got {info['in_channels']!r:.60})")
    if "image_size" in info and not _whole(info["image_size"], 1):
        refuse(f"image_size must be an integer >= 1 (got {info['image_size']!r:.60})")
    for key in ("mean", "std"):
        values = info.get(key, [])
        if not isinstance(values, list) or not all(_number(value) for value in values):
            refuse(f"{key} must be a list of numbers")
        if key in info and "in_channels" in info and len(values) != info["in_channels"]:
            refuse(f"{key} has {len(values)} values for in_channels={info['in_channels']}")
    if any(value <= 0 for value in info.get("std", [])):
        refuse("std must be > 0 in every channel")
    splits = info.get("splits", {})
    if not isinstance(splits, dict) or not all(key in SPLITS and _whole(size) for key, size in splits.items()):
        refuse(f"splits must map {', '.join(SPLITS)} to numbers of examples")
    return info


def _spec_is_samples(text) -> bool:
    """Whether ``data_spec`` (a JSON string) is the tree of a ``{"image": ..., "label": ...}`` sample."""
    try:
        version, root = json.loads(text)
        return (
            version == 1
            and set(root) == {"type", "context", "children_spec"}
            and root["type"] == "builtins.dict"
            and json.loads(root["context"]) == SAMPLE_KEYS
            and root["children_spec"] == [LEAF_SPEC] * len(SAMPLE_KEYS)
        )
    except (TypeError, ValueError, KeyError, RecursionError):
        return False


def check_index(folder: Path, examples: int | None = None, local: bool = True, shown: str | None = None) -> int:
    """``folder/index.json`` checked before LitData reads it; returns the number of examples it lists.

    ``examples``: the split's size that litvision.json states (None: not stated). ``local``: the chunk
    files are in ``folder`` (not in an object store) and must have the sizes listed. ``shown``: the
    split's name in the messages (its URL; default: ``folder``).
    """
    path = folder / "index.json"

    def refuse(what: str) -> NoReturn:
        raise DataError(f"{shown or folder}: {what}; {NOT_CONVERTED}")

    if not path.is_file():
        refuse("index.json is missing")
    index = read_json(path, "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("config"), dict) or "chunks" not in index:
        refuse("index.json has no config and chunks")
    config = index["config"]
    unknown = sorted(set(index) - TOP_KEYS) + sorted(set(config) - CONFIG_KEYS)
    if unknown:
        refuse(f"index.json has the key {unknown[0][:60]!r}, which stream_convert does not write")
    if config.get("data_format") != DATA_FORMAT:
        found = json.dumps(config.get("data_format"))[:80]  # JSON: one line whatever the file holds
        refuse(f"index.json's data_format is {found}, not {json.dumps(DATA_FORMAT)} (uint8 images, int labels)")
    if not _spec_is_samples(config.get("data_spec")):
        refuse("index.json's data_spec is not the {image, label} samples stream_convert writes")
    if "compression" not in config:
        refuse("index.json's config has no compression key")
    for key in sorted(NULL_KEYS & set(config)):
        if config[key] is not None:
            refuse(f"index.json's {key} is {str(config[key])[:60]!r}; stream_convert writes none")
    for key, allowed in CONFIG_VALUES.items():
        if key in config and config[key] not in allowed:
            refuse(f"index.json's {key} is {str(config[key])[:60]!r}, not {allowed[0]!r}")
    for key in ("chunk_bytes", "chunk_size"):
        if config.get(key) is not None and not _whole(config[key]):
            refuse(f"index.json's {key} must be null or an integer >= 0")
    chunks = index["chunks"]
    if not isinstance(chunks, list) or not chunks:
        refuse("index.json lists no chunks")
    seen = set()
    for chunk in chunks:
        if not isinstance(chunk, dict) or set(chunk) - CHUNK_KEYS:
            refuse("index.json has a chunk entry with keys other than chunk_bytes, chunk_size, dim, filename")
        filename = chunk.get("filename")
        if not isinstance(filename, str) or not CHUNK_NAME.fullmatch(filename) or filename in seen:
            refuse(f"index.json names the chunk file {str(filename)[:80]!r}, not chunk-<rank>-<n>.bin in the folder")
        seen.add(filename)
        if not (_whole(chunk.get("chunk_bytes")) and _whole(chunk.get("chunk_size"))) or chunk.get("dim") is not None:
            refuse(f"index.json's entry for {filename}: chunk_bytes and chunk_size must be integers >= 0, dim null")
        file = folder / filename
        if local and (not file.is_file() or file.stat().st_size != chunk["chunk_bytes"]):
            found = f"{file.stat().st_size} bytes" if file.is_file() else "missing"
            refuse(f"{filename} is {found}; index.json says {chunk['chunk_bytes']} bytes")
    listed = sum(chunk["chunk_size"] for chunk in chunks)
    if not listed:
        refuse("index.json lists no examples")
    if examples is not None and listed != examples:
        refuse(f"index.json lists {listed} examples; litvision.json says {examples}")
    return listed


class _Refused(str):
    """A sample that is not what the folder states, in place of its value: the reason, reported in one line."""


class ImageSerializer:
    """LitData's ``tensor`` decoding for the images, each sample's header checked before anything is allocated.

    Only a uint8 tensor of ``shape`` is decoded; anything else becomes a :class:`_Refused` reason, which
    :func:`refusal` reports. (A LitData serializer by interface; picklable, for the loader workers.)
    """

    def __init__(self, shape: tuple[int, int, int]):
        from litdata.streaming.serializers import TensorSerializer

        self.shape, self.decode = tuple(shape), TensorSerializer()

    def setup(self, data_format: str) -> None:
        pass

    def deserialize(self, data: bytes):
        expected = "x".join(map(str, self.shape))
        if len(data) < TENSOR_HEADER.size:
            return _Refused(f"a sample's image has {len(data)} bytes, not a uint8 {expected} tensor")
        _, rank = TENSOR_HEADER.unpack_from(data, 0)
        end = TENSOR_HEADER.size + 4 * len(self.shape)
        shape = struct.unpack_from(f">{rank}I", data, TENSOR_HEADER.size) if rank == len(self.shape) else None
        if shape != self.shape:
            found = "x".join(map(str, shape)) if shape else f"a rank-{rank} tensor"
            return _Refused(f"a sample's image is {found}, not {expected} as litvision.json states")
        if len(data) != end + math.prod(self.shape):
            return _Refused(f"a sample's {expected} image has {len(data) - end} bytes of pixels, not uint8")
        try:
            image = self.decode.deserialize(data)
        except (KeyError, ValueError, RuntimeError):
            image = None
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
            return _Refused(f"a sample's {expected} image is {getattr(image, 'dtype', 'unreadable')}, not uint8")
        return image


class LabelSerializer:
    """LitData's ``int`` decoding (a little-endian int64) for the labels; another length is a :class:`_Refused`."""

    def setup(self, data_format: str) -> None:
        pass

    def deserialize(self, data: bytes):
        if len(data) != 8:
            return _Refused(f"a sample's label has {len(data)} bytes, not an int64")
        return struct.unpack("<q", data)[0]


def refusal(samples: list, num_classes: int) -> str | None:
    """Why ``samples`` (decoded by the serializers above) are not a batch of this dataset; None if they are."""
    for sample in samples:
        if not isinstance(sample, dict) or sorted(sample) != SAMPLE_KEYS:
            return f"a sample is {type(sample).__name__}, not a dict of image and label"
        image, label = sample["image"], sample["label"]
        for value in (image, label):
            if isinstance(value, _Refused):
                return str(value)
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
            return f"a sample's image is {type(image).__name__}, not a uint8 tensor"
        if not _whole(label) or label >= num_classes:
            return f"a sample's label is {label!r:.40}, not a class index below num_classes={num_classes}"
    return None
