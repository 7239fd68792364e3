"""What the benchmark measures besides time: each way's peak memory and its own random-number stream."""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections import defaultdict

import numpy as np
import torch


class MemoryMeter:
    """Peak memory of each way while it runs: GPU memory allocated (CUDA), else the process's resident memory.

    On the CPU a thread samples /proc/self/statm every 10 ms. The ways share one process, so every
    figure includes the other ways' resident data and models (small next to a training step's working set).
    """

    def __init__(self, device: torch.device):
        self.device, self.peaks = device, defaultdict(int)
        self._current: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_every_10ms, daemon=True)

    def __enter__(self):
        if self.device.type != "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return False

    def begin(self, way: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._current = way

    def end(self) -> None:
        way, self._current = self._current, None
        if way is None:
            return
        if self.device.type == "cuda":
            self.peaks[way] = max(self.peaks[way], torch.cuda.max_memory_allocated(self.device))
        else:
            self.peaks[way] = max(self.peaks[way], _resident_bytes())

    @contextlib.contextmanager
    def measuring(self, way: str):
        self.begin(way)
        try:
            yield
        finally:
            self.end()

    def _sample_every_10ms(self) -> None:
        while not self._stop.wait(0.01):
            way = self._current
            if way is not None:
                self.peaks[way] = max(self.peaks[way], _resident_bytes())


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RandomStream:
    """One way's own random state (torch, CUDA, NumPy, Python), swapped in while that way runs.

    Created right after the way is built from a freshly seeded state, like a run of that way alone.
    """

    def __init__(self):
        self._state = self._capture()

    @staticmethod
    def _capture():
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()

    @staticmethod
    def _restore(state) -> None:
        cpu, cuda, numpy_state, python_state = state
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(numpy_state)
        random.setstate(python_state)

    @contextlib.contextmanager
    def active(self):
        outer = self._capture()
        self._restore(self._state)
        try:
            yield
        finally:
            self._state = self._capture()
            self._restore(outer)
