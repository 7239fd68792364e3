"""An image folder's files and decode cache are data from outside (issue 33, items 4, 7 and 8).

A cache someone else planted is never trained on; a hostile sidecar or array is decoded again; an image
whose header asks for more pixels than Pillow's limit is refused before it is decoded; Ctrl-C, SIGTERM
or a killed worker while a folder decodes leaves no scratch file and no step-0 checkpoint.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import litvision.data.folder_files as folder_files
from conftest import QUIET, ROOT, run_main
from datafiles import Planted
from litvision.data import FolderDataModule, read_image
from litvision.data.folder_cache import FolderCache
from litvision.data.images import read_image_array
from litvision.data.mapped import MappedImages, process_place
from litvision.support.errors import DataError
from test_folder_data import write_colour_folder

SIZE = 8


def folder(root: Path, **kwargs) -> FolderDataModule:
    options = dict(image_size=SIZE, batch_size=16, split_seed=0, shuffle_seed=0, augment={}, audit=False)
    return FolderDataModule(data_dir=str(root), **{**options, **kwargs})


def assert_holds_the_files(data: FolderDataModule) -> None:
    """Every split's rows are its files' own pixels, decoded here: nothing else was trained on."""
    for split, positions in data.split_positions.items():
        images = data.splits[split][0]
        images = images.load() if isinstance(images, MappedImages) else images
        files = [data.files.paths[i] for i in positions.tolist()]
        assert torch.equal(images, torch.stack([read_image(path, 3, SIZE) for path in files])), split


def cache_files(folder_: Path) -> list[str]:
    return sorted(path.name for path in folder_.glob(".litvision-cache-*"))


def plant(root: Path, where: Path) -> Path:
    """The genuine cache of ``root``'s files and its sidecar moved to ``where``, every pixel set to 255: a cache
    a hostile user could leave with exactly the name and the sidecar litvision looks for."""
    folder(root).setup("fit")
    (cache,) = root.glob(".litvision-cache-*.npy")
    where.mkdir(parents=True, exist_ok=True)
    planted = where / cache.name
    shutil.move(cache, planted)
    shutil.move(cache.with_name(cache.name + ".json"), planted.with_name(planted.name + ".json"))
    array = np.load(planted, mmap_mode="r+")
    array[:] = 255
    array.flush()
    del array
    return planted


@pytest.fixture
def read_only(monkeypatch):
    """Makes a folder read-only (chmod 555); as root, whom modes do not stop, creating files there fails the way
    it does for anyone else (EACCES)."""
    made: list[Path] = []

    def make(path: Path) -> None:
        made.append(path)
        path.chmod(0o555)
        if os.geteuid() == 0:
            real = folder_files.create_array

            def refuse(target, shape):
                if Path(target).parent == path:
                    raise PermissionError(errno.EACCES, "Permission denied", str(target))
                return real(target, shape)

            monkeypatch.setattr(folder_files, "create_array", refuse)

    yield make
    for path in made:
        path.chmod(0o755)


@pytest.fixture
def user_cache(tmp_path, monkeypatch) -> Path:
    """A fresh $XDG_CACHE_HOME and temporary directory for this test (the real ones are never touched)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path / "xdg" / "litvision"


# -- where a cache is looked for ----------------------------------------------------------------------
def test_a_cache_planted_in_the_shared_temporary_folder_is_never_read(tmp_path, user_cache, read_only, caplog):
    root = write_colour_folder(tmp_path / "images", per_class=6)
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    planted = plant(root, tmp_path / "tmp" / f"litvision-cache-{os.getuid()}" / digest)  # where litvision looked
    read_only(root)
    data = folder(root)
    data.setup("fit")
    assert_holds_the_files(data)
    # The read-only folder's cache went to the user's own cache folder, made for them alone.
    mine = FolderCache(root, 3, SIZE, "crop", True, 1).user_folder()
    assert cache_files(mine) == [planted.name, planted.name + ".json"] and cache_files(root) == []
    assert oct(mine.stat().st_mode & 0o777) == oct(user_cache.stat().st_mode & 0o777) == "0o700"
    caplog.set_level(logging.INFO)
    again = folder(root)
    again.setup("fit")  # found there, checked, and mapped
    assert f"mapped 18 decoded images from {mine / planted.name}" in caplog.text
    assert_holds_the_files(again)


@pytest.mark.parametrize("hostile", ["others can write it", "another user owns it"])
def test_a_cache_planted_in_a_cache_folder_that_is_not_yours_alone_is_not_used(
    hostile, tmp_path, user_cache, read_only, caplog
):
    if hostile == "another user owns it" and os.geteuid() != 0:
        _skip_outside_ci("only root can give a folder to another user")  # CI runs as root
    root = write_colour_folder(tmp_path / "images", per_class=6)
    place = FolderCache(root, 3, SIZE, "crop", True, 1).user_folder()
    planted = plant(root, place)
    if hostile == "others can write it":
        user_cache.chmod(0o777)  # what `mkdir -m 777` by another user before this one's first run gives
        reason = "other users can write it (mode 777)"
    else:
        os.chown(user_cache, 65534, 65534)
        reason = "it belongs to another user (uid 65534)"
    caplog.set_level(logging.INFO)
    data = folder(root)
    data.setup("fit")  # the folder is writable: the cache is rebuilt beside the data
    assert_holds_the_files(data)
    assert f"not using the cache folder {user_cache}: {reason}" in caplog.text and len(cache_files(root)) == 2

    for stale in root.glob(".litvision-cache-*"):
        stale.unlink()
    read_only(root)
    caplog.clear()
    data = folder(root)
    data.setup("fit")  # nowhere safe to keep a cache: a scratch file of this run's own
    assert_holds_the_files(data)
    assert "decoding into a scratch file of this run" in caplog.text
    assert cache_files(place) == [planted.name, planted.name + ".json"] and np.load(planted).min() == 255  # untouched


def test_a_planted_cache_beside_the_data_is_caught_by_decoding_a_few_files_again(tmp_path, caplog):
    # Whoever can write the folder can change its images too; still, a cache that is not these files'
    # images (all 255 here, with the genuine sidecar) is caught by the random spot check.
    root = write_colour_folder(tmp_path / "images", per_class=6)
    plant(root, root)
    caplog.set_level(logging.WARNING)
    data = folder(root)
    data.setup("fit")
    assert "does not hold the images of its files" in caplog.text and "decodes to other pixels" in caplog.text
    assert_holds_the_files(data)


# -- a sidecar and an array are untrusted input --------------------------------------------------------
def _failure_of(root: Path, position: int) -> str:
    paths = sorted(path for path in root.rglob("*.png"))
    return f"{paths[position]}: not a readable image (x)"


HOSTILE_SIDECARS = {
    "index out of range": lambda record, root: {**record, "failures": [[999, _failure_of(root, 0)]]},
    "negative index": lambda record, root: {**record, "failures": [[-1, _failure_of(root, 0)]]},
    "index as text": lambda record, root: {**record, "failures": [["0", _failure_of(root, 0)]]},
    "index as true": lambda record, root: {**record, "failures": [[True, _failure_of(root, 1)]]},
    "message not text": lambda record, root: {**record, "failures": [[0, 5]]},
    "message of another file": lambda record, root: {**record, "failures": [[0, _failure_of(root, 1)]]},
    "failures not a list": lambda record, root: {**record, "failures": "all of them"},
    "repeated index": lambda record, root: {**record, "failures": [[0, _failure_of(root, 0)]] * 2},
    "shape as text": lambda record, root: {**record, "shape": [str(n) for n in record["shape"]]},
    "version as text": lambda record, root: {**record, "version": str(record["version"])},
    "not an object": lambda record, root: [record],
}


@pytest.mark.parametrize("case", [*HOSTILE_SIDECARS, "nested 100000 deep", "not JSON", "a FIFO"])
def test_a_hostile_sidecar_means_decoding_again_never_a_traceback(case, tmp_path, caplog):
    root = write_colour_folder(tmp_path / "images", per_class=6)
    folder(root).setup("fit")
    (sidecar,) = root.glob(".litvision-cache-*.npy.json")
    record = json.loads(sidecar.read_text())
    sidecar.unlink()
    if case == "nested 100000 deep":
        sidecar.write_text("[" * 100_000 + "]" * 100_000)
    elif case == "not JSON":
        sidecar.write_bytes(b"\xff\xfe{")
    elif case == "a FIFO":
        os.mkfifo(sidecar)  # reading it would wait forever
    else:
        sidecar.write_text(json.dumps(HOSTILE_SIDECARS[case](record, root)))
    caplog.set_level(logging.WARNING)
    data = folder(root)
    data.setup("fit")
    assert "decoding again" in caplog.text and not data.skipped
    assert_holds_the_files(data)
    assert json.loads(sidecar.read_text()) == record  # the cache rebuilt whole


@pytest.mark.parametrize("case", ["pickled objects", "fortran order", "a zip archive"])
def test_a_cache_array_that_is_not_a_plain_uint8_array_is_decoded_again(case, tmp_path, caplog):
    root = write_colour_folder(tmp_path / "images", per_class=6)
    folder(root).setup("fit")
    (cache,) = root.glob(".litvision-cache-*.npy")
    genuine = np.load(cache)
    sentinel = tmp_path / "pwned"
    cache.unlink()
    if case == "pickled objects":
        with open(cache, "wb") as handle:
            np.save(handle, np.array([Planted(sentinel)] * 3, dtype=object), allow_pickle=True)
    elif case == "fortran order":
        np.save(cache, np.asfortranarray(genuine))
    else:
        with open(cache, "wb") as handle:
            np.savez(handle, images=genuine)
    caplog.set_level(logging.WARNING)
    data = folder(root)
    data.setup("fit")
    assert "incomplete or from another version" in caplog.text and not sentinel.exists()
    assert_holds_the_files(data)


# -- a decompression bomb -----------------------------------------------------------------------------
def write_huge_png(path: Path, side: int, bit_depth: int) -> Path:
    """A grayscale PNG of ``side`` x ``side`` black pixels, written with zlib a row at a time: a few kB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" + bytes(-(-side * bit_depth // 8))  # filter type 0, then the packed samples
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, bit_depth, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_a_png_of_100_million_pixels_is_refused_in_one_line_and_skipped(tmp_path, caplog):
    bomb = write_huge_png(tmp_path / "bomb.png", 10_000, 1)  # 100M pixels, over Pillow's 89M limit
    assert bomb.stat().st_size < 20_000
    filters = list(warnings.filters)
    with pytest.raises(DataError) as caught:
        read_image_array(bomb, 3, SIZE)
    message = str(caught.value)
    assert message.startswith(f"{bomb}: too large to decode (10000x10000 = 100000000 pixels") and "\n" not in message
    assert warnings.filters == filters  # the user's own warning filters, untouched

    root = write_colour_folder(tmp_path / "images", per_class=6)
    shutil.copy(bomb, root / "red" / "zz-bomb.png")
    caplog.set_level(logging.WARNING)
    data = folder(root)
    data.setup("fit")  # an unreadable file like any other: left out with one warning naming it
    assert len(data.skipped) == 1 and data.skipped[0].startswith(f"{root / 'red' / 'zz-bomb.png'}: too large")
    assert "skipped 1 unreadable file(s)" in caplog.text


_UNDER_A_MEMORY_LIMIT = """
import resource, sys
from PIL import Image
from litvision.data.images import read_image_array
from litvision.support.errors import DataError

size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
limit = size + 300 * 2**20  # what the interpreter holds now, and 300 MB more: a full decode needs 400 MB
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for path in sys.argv[1:]:
    try:
        read_image_array(path, 3, 32)
    except DataError as err:
        print("refused:", err)
Image.MAX_IMAGE_PIXELS = None  # no limit: the same file decoded in full does not fit
try:
    read_image_array(sys.argv[1], 3, 32)
except MemoryError:
    print("a full decode: MemoryError")
"""


@pytest.mark.slow
def test_a_bomb_png_is_refused_before_decoding_under_an_address_space_limit(tmp_path):
    bombs = [
        write_huge_png(tmp_path / "bomb-1bit.png", 10_000, 1),
        write_huge_png(tmp_path / "bomb-16bit.png", 10_000, 16),
    ]
    result = subprocess.run(
        [sys.executable, "-c", _UNDER_A_MEMORY_LIMIT, *map(str, bombs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split(": too large to decode")[0] for line in lines[:2]] == [f"refused: {bomb}" for bomb in bombs]
    assert lines[2:] == ["a full decode: MemoryError"]  # the limit would have stopped a full decode


# -- Ctrl-C, SIGTERM or a killed worker while decoding ---------------------------------------------------
def _skip_outside_ci(reason: str) -> None:
    """A skip on a developer's machine; in CI, where the case can always run, a failure (never a hidden skip)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run this case")
    pytest.skip(reason)


@pytest.fixture
def signal_handlers():
    """SIGINT and SIGTERM as Python starts them, put back afterwards (Lightning ignores SIGINT after a Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        _skip_outside_ci("signals are handled in the main thread only")
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _signal_at(monkeypatch, name: str, send) -> None:
    """Decoding the file ``name`` (``<class>/<file>``) first calls ``send()``, in whichever process decodes it."""
    real = folder_files.read_image_array

    def decode(path, *args, **kwargs):
        if Path(path).relative_to(Path(path).parents[1]).as_posix() == name:
            send()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(folder_files, "read_image_array", decode)


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_while_decoding_leaves_no_scratch_file_and_no_checkpoint(
    signame, tmp_path, monkeypatch, signal_handlers
):
    root = write_colour_folder(tmp_path / "images", per_class=10)
    signum = signal.Signals[signame]
    _signal_at(monkeypatch, "blue/003.png", lambda: os.kill(os.getpid(), signum))
    run = tmp_path / "run"
    args = ["data=folder", f"data.data_dir={root}", "data.image_size=8", "data.decode_workers=1", "model=mlp"]
    result = run_main("train.py", *args, "logger=none", f"hydra.run.dir={run}", *QUIET, check=False)
    assert result.returncode == 128 + signum, result.stderr[-3000:]
    assert f"{signame}: stopped before training started; nothing was saved, nothing to resume" in result.stderr
    assert "Traceback" not in result.stderr
    assert cache_files(root) == [] and not list(run.rglob("*.ckpt"))  # no scratch file, no step-0 checkpoint
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["ckpt_path"] is None and status["resume"] is None


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["a worker is killed", "Ctrl-C reaches the parent"])
def test_a_fault_in_a_decode_worker_leaves_no_scratch_file(fault, tmp_path, monkeypatch, signal_handlers):
    root = write_colour_folder(tmp_path / "images", per_class=50)  # 150 files: two decode workers
    if fault == "a worker is killed":
        _signal_at(monkeypatch, "blue/010.png", lambda: os.kill(os.getpid(), signal.SIGKILL))
        with pytest.raises(DataError, match="a decode worker process died before the folder was decoded") as caught:
            folder(root, decode_workers=2).setup("fit")
        assert "\n" not in str(caught.value)
    else:
        _signal_at(monkeypatch, "blue/010.png", lambda: os.kill(os.getppid(), signal.SIGINT))
        with pytest.raises(KeyboardInterrupt):
            folder(root, decode_workers=2).setup("fit")
    assert cache_files(root) == []
    monkeypatch.undo()
    data = folder(root, decode_workers=2)
    data.setup("fit")  # the next run decodes the folder whole
    assert_holds_the_files(data)


def test_a_scratch_file_left_by_a_process_that_no_longer_runs_is_removed(tmp_path):
    root = write_colour_folder(tmp_path / "images", per_class=6)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead, here, host = gone.pid, process_place(), socket.gethostname()
    name = ".litvision-cache-3x8-crop-0123456789abcdef0123.npy"
    left = [f"{name}.{dead}@{here}.0badf00d.tmp", f"{name}.{host}-{dead}.tmp"]  # this version's name, the older one
    kept = [f"{name}.{os.getpid()}@{here}.0badf00d.tmp", f"{name}.{dead}@another-host.0badf00d.tmp"]
    kept.append(f"{name}.{dead}@{host}~1.0badf00d.tmp")  # this host's name, another container's process ids
    for scratch in left + kept:
        (root / scratch).write_bytes(b"\0" * 64)
    folder(root).setup("fit")
    assert not any((root / scratch).exists() for scratch in left)
    assert all((root / scratch).exists() for scratch in kept)  # running, or elsewhere: not this run's to judge


def test_the_placeholder_statistics_are_never_part_of_the_saved_state(tmp_path):
    root = write_colour_folder(tmp_path / "images", per_class=6)
    data = folder(root)
    assert "mean" not in data.state_dict()  # not computed yet: nothing a resume could take for the real ones
    data.setup("fit")
    assert data.state_dict()["mean"] == data.normalization.stats()["mean"]
