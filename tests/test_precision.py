"""litvision.support.precision: what /proc/cpuinfo says about bfloat16, and the warning for a CPU that emulates it."""

from __future__ import annotations

import logging

import pytest

import litvision.support.precision
from conftest import QUIET, compose_train
from litvision.support.precision import choose_precision, has_bfloat16_instructions
from litvision.tasks.train import train

WARNING = "on a CPU without bfloat16 instructions (AVX512-BF16 or AMX)"


def _cpuinfo(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def cpuinfos(tmp_path):
    """cpuinfo files in the kernel's format: two processors (the first counts), and an ARM one."""
    second = "\nprocessor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\n"
    return {
        "native": _cpuinfo(
            tmp_path, "zen4", "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
        ),
        "amx": _cpuinfo(tmp_path, "spr", "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n"),
        "emulated": _cpuinfo(
            tmp_path, "zen3", "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2\n" + second
        ),
        "arm": _cpuinfo(tmp_path, "arm", "processor\t: 0\nFeatures\t: fp asimd evtstrm\nCPU part\t: 0xd0c\n"),
    }


def test_cpuinfo_tells_whether_bfloat16_is_native(cpuinfos, tmp_path):
    assert has_bfloat16_instructions(cpuinfos["native"]) is True
    assert has_bfloat16_instructions(cpuinfos["amx"]) is True
    assert has_bfloat16_instructions(cpuinfos["emulated"]) is False  # the second processor does not count
    assert has_bfloat16_instructions(cpuinfos["arm"]) is None  # no x86 flags: unknown, no warning
    assert has_bfloat16_instructions(tmp_path / "missing") is None  # no /proc/cpuinfo (macOS)


def test_a_bf16_training_run_on_such_a_cpu_warns_and_still_runs(cpuinfos, tiny_data_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(litvision.support.precision, "CPUINFO", cpuinfos["emulated"])
    overrides = ["data=mnist", "model=mlp", "debug=fdr", "trainer.precision=bf16-mixed", "logger=none"]
    cfg = compose_train([f"data.data_dir={tiny_data_dir}", "data.val_size=100", *QUIET, *overrides], tmp_path)
    with caplog.at_level(logging.WARNING, logger="litvision.support.precision"):
        metrics = train(cfg)
    assert f"trainer.precision=bf16-mixed {WARNING}" in caplog.text
    assert "test/acc" in metrics


@pytest.mark.parametrize(("cpu", "chosen"), [("native", "bf16-mixed"), ("amx", "bf16-mixed"), ("emulated", "32-true")])
def test_auto_picks_bfloat16_only_on_a_cpu_that_computes_it(cpuinfos, cpu, chosen, caplog):
    with caplog.at_level(logging.INFO, logger="litvision.support.precision"):
        assert choose_precision("auto", "cpu", cpuinfos[cpu]) == chosen
    assert f"trainer.precision=auto: {chosen}" in caplog.text
    assert choose_precision("auto", "cpu", cpuinfos["arm"]) == "32-true"  # unknown flags: the safe choice


def test_16_mixed_on_a_cpu_says_what_was_asked_and_what_runs(cpuinfos, caplog):
    with caplog.at_level(logging.WARNING, logger="litvision.support.precision"):
        assert choose_precision("16-mixed", "cpu", cpuinfos["native"]) == "bf16-mixed"
        assert choose_precision("16-mixed", "cpu", cpuinfos["emulated"]) == "bf16-mixed"
    first, second = caplog.messages
    assert first.startswith("trainer.precision=16-mixed runs as bf16-mixed") and WARNING not in first
    assert second.startswith("trainer.precision=16-mixed runs as bf16-mixed") and WARNING in second
    assert "trainer.precision=bf16-mixed" not in caplog.text  # never a spelling the user did not write
    assert choose_precision("32-true", "cpu", cpuinfos["emulated"]) == "32-true"


def test_onednn_capped_below_bfloat16_counts_as_a_cpu_without_it(cpuinfos, monkeypatch, caplog):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN emulate bfloat16 on any CPU: auto then picks float32 and says why."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert has_bfloat16_instructions(cpuinfos["native"]) is False
    with caplog.at_level(logging.INFO, logger="litvision.support.precision"):
        assert choose_precision("auto", "cpu", cpuinfos["native"]) == "32-true"
    assert "ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN off the CPU's bfloat16 instructions" in caplog.text
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # a cap above bfloat16 changes nothing
    assert choose_precision("auto", "cpu", cpuinfos["native"]) == "bf16-mixed"


def test_an_auto_training_run_on_a_cpu_without_bfloat16_trains_in_float32(
    cpuinfos, tiny_data_dir, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(litvision.support.precision, "CPUINFO", cpuinfos["emulated"])
    overrides = ["data=mnist", "model=mlp", "debug=fdr", "trainer.precision=auto", "logger=none"]
    cfg = compose_train([f"data.data_dir={tiny_data_dir}", "data.val_size=100", *QUIET, *overrides], tmp_path)
    with caplog.at_level(logging.INFO, logger="litvision.support.precision"):
        train(cfg)
    assert "trainer.precision=auto: 32-true (a CPU without bfloat16 instructions)" in caplog.messages
    assert cfg.trainer.precision == "32-true"
