"""LitData folders from outside are data (issue 33, items 2 and 10): an index of any format but the one
scripts/stream_convert.py writes, a chunk name leaving the folder, a sample of the wrong shape or a
training split too small for one batch are one ``error:`` line, with nothing unpickled.

The folders are written here with LitData's own writer, in the format stream_convert writes (the same
index.json; test_data_scale converts a real folder with stream_convert and trains on it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import litdata
import pytest
import torch
from litdata.streaming.writer import BinaryWriter

from conftest import QUIET, compose_train, run_main
from datafiles import Planted
from litvision.data.streaming import StreamingDataModule
from litvision.support.errors import DataError
from litvision.support.instantiate import build
from test_data_scale import FAST, write_split_folder
from test_faults import one_line_naming

SHAPE = (1, 4, 4)
CLASSES = ["a", "b"]


def image(index: int, shape=SHAPE, dtype=torch.uint8) -> torch.Tensor:
    return torch.full(shape, index % 256, dtype=dtype)


def write_split(folder: Path, samples: list[dict]) -> Path:
    writer = BinaryWriter(str(folder), chunk_bytes="64MB")
    for index, sample in enumerate(samples):
        writer[index] = sample
    writer.done()
    writer.merge()
    return folder


def write_streamed(root: Path, sizes=(8, 4, 4), sample=None, **info) -> Path:
    """A converted dataset as stream_convert leaves it: litvision.json and train/, val/, test/ of LitData chunks."""
    sample = sample or (lambda index: {"image": image(index), "label": index % len(CLASSES)})
    for split, size in zip(("train", "val", "test"), sizes):
        write_split(root / split, [sample(index) for index in range(size)])
    facts = dict(num_classes=2, class_names=CLASSES, in_channels=1, image_size=4, mean=[0.5], std=[0.25])
    facts["splits"] = dict(zip(("train", "val", "test"), sizes))
    (root / "litvision.json").write_text(json.dumps({**facts, **info}))
    return root


def datamodule(root: Path, **kwargs) -> StreamingDataModule:
    return StreamingDataModule(data_dir=str(root), **{"batch_size": 4, "num_workers": 0, "augment": {}, **kwargs})


def edit_index(split: Path, change) -> None:
    index = json.loads((split / "index.json").read_text())
    change(index)
    (split / "index.json").write_text(json.dumps(index))


@pytest.fixture
def litdata_never_opens(monkeypatch):
    """Fails the test if LitData is handed the folder: the index must be refused before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("LitData was given a folder that should have been refused")

    monkeypatch.setattr(litdata, "StreamingDataset", refuse)


def train_line(root: Path, run: Path, *extra: str):
    """train.py on the folder, in this process: its exit status and stderr."""
    args = [a for a in FAST if a != "data.image_size=8"] + ["data=streaming", f"data.data_dir={root}"]
    result = run_main("train.py", *args, "data.num_workers=0", *extra, f"hydra.run.dir={run}", check=False)
    return result.returncode, result.stderr.strip()


# -- what stream_convert writes is read, and read back exactly -------------------------------------------
def test_a_folder_in_stream_converts_format_gives_its_images_and_labels(tmp_path):
    root = write_streamed(tmp_path / "stream")
    data = datamodule(root)
    images, labels = (torch.cat(parts) for parts in zip(*data._loader("val", train=False)))
    assert torch.equal(images, torch.stack([image(i) for i in range(4)])) and labels.tolist() == [0, 1, 0, 1]
    assert sum(len(labels) for _, labels in data._loader("train", train=True)) == 8


# -- the index is checked before LitData sees the folder -------------------------------------------------
def test_a_pickle_index_runs_no_code_and_is_one_line(tmp_path):
    sentinel = tmp_path / "pwned"
    hostile = write_streamed(tmp_path / "stream", sample=lambda index: {"image": Planted(sentinel), "label": 0})
    assert json.loads((hostile / "train" / "index.json").read_text())["config"]["data_format"] == ["pickle", "int"]
    control = shutil.copytree(hostile / "train", tmp_path / "control")
    litdata.StreamingDataset(str(control))[0]  # what LitData alone does with it
    assert sentinel.exists()
    sentinel.unlink()

    status, stderr = train_line(hostile, tmp_path / "run")
    assert status == 2 and "\n" not in stderr, stderr
    assert stderr.startswith(f'error: {hostile / "train"}: index.json\'s data_format is ["pickle", "int"], not'), stderr
    assert not sentinel.exists()


def _set(path: str, value):
    def change(index):
        *parents, last = path.split(".")
        node = index
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _set("chunks.0.filename", "../outside.bin"),
            "names the chunk file '../outside.bin', not chunk-<rank>-<n>.bin",
        ),
        (_set("chunks.0.filename", "/etc/passwd"), "names the chunk file '/etc/passwd'"),
        (_set("chunks.0.chunk_bytes", "1400"), "chunk_bytes and chunk_size must be integers"),
        (_set("chunks.0.chunk_bytes", 10), "chunk-0-0.bin is 232 bytes; index.json says 10 bytes"),
        (_set("chunks.0.filename", "chunk-0-9.bin"), "chunk-0-9.bin is missing"),
        (_set("config.data_format", ["jpeg", "int"]), 'data_format is ["jpeg", "int"]'),
        (_set("config.compression", "zstd"), "compression is 'zstd'; stream_convert writes none"),
        (_set("config.encryption", {"algorithm": "fernet"}), "encryption is"),
        (_set("config.item_loader", "TokensLoader"), "item_loader is 'TokensLoader', not 'PyTreeLoader'"),
        (_set("config.format", "mds"), "has the key 'format', which stream_convert does not write"),
        (_set("config.data_spec", "[1, {}]"), "data_spec is not the {image, label} samples"),
        (_set("chunks.0.chunk_size", 9), "index.json lists 9 examples; litvision.json says 4"),
        (_set("chunks.0.chunk_size", 0), "index.json lists no examples"),
        (lambda index: index.update(shards=[]), "has the key 'shards'"),
        (lambda index: index.update(chunks=[]), "index.json lists no chunks"),
    ],
)
def test_an_index_other_than_stream_converts_is_refused_before_litdata_opens_it(
    change, message, tmp_path, litdata_never_opens
):
    root = write_streamed(tmp_path / "stream")
    edit_index(root / "val", change)
    with pytest.raises(DataError) as caught:
        datamodule(root)._loader("val", train=False)
    one_line_naming(caught.value, str(root / "val"), message, "not a dataset written by scripts/stream_convert.py")


def test_an_unreadable_or_missing_index_is_one_line(tmp_path, litdata_never_opens):
    root = write_streamed(tmp_path / "stream")
    (root / "val" / "index.json").write_text('{"chunks": [NaN]')
    with pytest.raises(DataError) as caught:
        datamodule(root)._loader("val", train=False)
    one_line_naming(caught.value, str(root / "val" / "index.json"), "unreadable index.json")
    (root / "val" / "index.json").unlink()
    (root / "val" / "0.index.json").write_text("{}")  # what LitData would merge into an index.json by itself
    with pytest.raises(DataError, match="index.json is missing"):
        datamodule(root)._loader("val", train=False)
    assert not (root / "val" / "index.json").exists()


# -- each sample is checked as it is read ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (lambda i: {"image": image(i, (1, 5, 5)), "label": 0}, "a sample's image is 1x5x5, not 1x4x4"),
        (lambda i: {"image": image(i, (4, 4)), "label": 0}, "a sample's image is a rank-2 tensor, not 1x4x4"),
        (lambda i: {"image": image(i, dtype=torch.float32), "label": 0}, "has 64 bytes of pixels, not uint8"),
        (lambda i: {"image": image(i, dtype=torch.int8), "label": 0}, "image is torch.int8, not uint8"),
        (lambda i: {"image": image(i), "label": 2}, "a sample's label is 2, not a class index below num_classes=2"),
        (lambda i: {"image": image(i), "label": -1}, "a sample's label is -1"),
    ],
)
def test_a_sample_of_another_shape_type_or_class_is_one_line(sample, message, tmp_path):
    root = write_streamed(tmp_path / "stream", sample=sample)
    with pytest.raises(DataError) as caught:
        list(datamodule(root)._loader("test", train=False))
    one_line_naming(caught.value, str(root / "test"), message)


@pytest.mark.slow
def test_a_wrong_sample_read_in_loader_workers_is_the_same_line(tmp_path):
    root = write_streamed(tmp_path / "stream", sample=lambda i: {"image": image(i, (1, 5, 5)), "label": 0})
    with pytest.raises(DataError) as caught:
        list(datamodule(root, num_workers=2)._loader("train", train=True))
    one_line_naming(caught.value, str(root / "train"), "a sample's image is 1x5x5, not 1x4x4 as litvision.json states")


def test_chunk_bytes_litdata_cannot_parse_are_one_line(tmp_path):
    root = write_streamed(tmp_path / "stream")
    chunk = root / "test" / "chunk-0-0.bin"
    data = bytearray(chunk.read_bytes())
    data[4:8] = (2**31).to_bytes(4, "little")  # the first sample's offset, far past the end of the file
    chunk.write_bytes(bytes(data))
    with pytest.raises(DataError) as caught:
        list(datamodule(root)._loader("test", train=False))
    one_line_naming(caught.value, str(root / "test"))


# -- litvision.json is data too --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"class_names": [1, 2]}, "class_names must be a list of strings"),
        ({"class_names": ["a", "a"]}, "class_names has a name twice"),
        ({"num_classes": "2"}, "num_classes must be an integer >= 1"),
        ({"in_channels": 2}, "in_channels must be 1 or 3"),
        ({"image_size": 4.0}, "image_size must be an integer >= 1"),
        ({"std": [0]}, "std must be > 0"),
        ({"mean": ["0.5"]}, "mean must be a list of numbers"),
        ({"splits": {"train": -1}}, "splits must map train, val, test to numbers of examples"),
    ],
)
def test_a_malformed_info_file_is_one_line(info, message, tmp_path):
    root = write_streamed(tmp_path / "stream", **info)
    with pytest.raises(DataError) as caught:
        datamodule(root)
    one_line_naming(caught.value, str(root / "litvision.json"), message)


def test_an_info_file_with_nan_is_refused(tmp_path):
    root = write_streamed(tmp_path / "stream")
    (root / "litvision.json").write_text((root / "litvision.json").read_text().replace("0.25", "NaN"))
    with pytest.raises(DataError, match="unreadable litvision.json"):
        datamodule(root)


def test_class_names_like_interpolations_stay_literal(tmp_path, monkeypatch):
    monkeypatch.setenv("LITVISION_TEST_SECRET", "hunter2")
    names = ["${oc.env:LITVISION_TEST_SECRET}", "x${y"]
    root = write_streamed(tmp_path / "stream", class_names=names)
    assert datamodule(root).class_names == names
    cfg = compose_train(["data=streaming", f"data.data_dir={root}", *QUIET], tmp_path / "run")
    assert build(cfg.data, "data").class_names == names


# -- a training split smaller than one batch does not "train" 0 steps ---------------------------------------
def test_a_training_split_smaller_than_one_batch_is_one_line(tmp_path):
    root = write_streamed(tmp_path / "stream", sizes=(3, 4, 4))
    with pytest.raises(DataError) as caught:
        datamodule(root)._loader("train", train=True)
    one_line_naming(caught.value, f"{root / 'train'} has 3 training example(s)", "data.batch_size=4", "0 steps")
    one_line_naming(caught.value, "use data.batch_size<=3")
    assert len(list(datamodule(root, batch_size=3)._loader("train", train=True))) == 1


@pytest.mark.slow
def test_training_on_a_converted_split_smaller_than_one_batch_exits_2_not_ok(tmp_path):
    source = write_split_folder(tmp_path / "images", train_per_class=1)  # 3 training images
    stream = tmp_path / "stream"
    convert = ["data=folder", f"data.data_dir={source}", "data.image_size=8", f"output={stream}", "num_workers=1"]
    run_main("stream_convert.py", *convert, f"hydra.run.dir={tmp_path / 'convert'}")
    run = tmp_path / "run"
    status, stderr = train_line(stream, run, "data.batch_size=8", "trainer.max_epochs=1")
    assert status == 2 and "\n" not in stderr, stderr
    assert stderr == (
        f"error: {stream / 'train'} has 3 training example(s): fewer than one batch of data.batch_size=8 per "
        "process (1 process(es)), so an epoch would take 0 steps; use data.batch_size<=3"
    )
    if (run / "status.json").exists():
        assert json.loads((run / "status.json").read_text())["status"] != "ok"
