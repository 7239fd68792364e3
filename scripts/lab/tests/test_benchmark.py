"""scripts/lab/benchmark.py: the three-way table, its JSONL record, the ways' separate random streams, its option checks."""

from __future__ import annotations

import json
import platform
import re

import pytest
import torch

from litvision_lab.benchmark_meters import RandomStream
from litvision_lab.machine_info import cpu
from litvision_lab.paths import ROOT

from .helpers import QUIET, run_lab


@pytest.mark.slow
def test_benchmark_script_prints_saves_and_records_the_three_way_table(tmp_path):
    # On synthetic CIFAR-10 from its script, as a session without the real files times it (with crop and flip).
    data_dir, run_dir, history = tmp_path / "synthetic", tmp_path / "bench", tmp_path / "history.jsonl"
    written = run_lab("synthetic_data.py", "cifar10", str(data_dir), "--train", "400", "--test", "50")
    assert f"data.data_dir={data_dir}" in written.stdout
    history.write_text('{"an earlier run": true}\n')
    args = ["model=small_cnn", "data=cifar10", f"data.data_dir={data_dir}", "data.val_size=100", "data.batch_size=32"]
    args += ["epochs=2", "turn_batches=2", f"paths.root_dir={tmp_path}", f"hydra.run.dir={run_dir}"]
    result = run_lab("benchmark.py", *args, f"record_to={history}", *QUIET)
    table = (run_dir / "benchmark.md").read_text()
    assert table.strip() in result.stdout
    assert "SYNTHETIC" in table.splitlines()[0] and "take turns every 2 training batches" in table.splitlines()[0]
    accuracies, table_seconds = {}, {}
    for way in ("(a) litvision Trainer.fit", "(b) plain PyTorch loop", "(c) torchvision Dataset + DataLoader"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {way}"))
        seconds, rate, memory, train_acc, val_acc, epochs = (cell.strip() for cell in row.strip("|").split("|")[1:])
        assert len(epochs.split()) == 2
        assert float(seconds) > 0 and float(rate.replace(",", "")) > 0 and memory.endswith("GiB")
        accuracies[way[:3]] = float(train_acc), float(val_acc)
        table_seconds[way[:3]] = float(seconds)
    assert "(a)/(b) =" in table and "(c)/(a) =" in table and "(a)/(b) epoch by epoch (epochs 2+" in table
    # Same seed, same data order, each way on its own random stream although they take turns:
    # Trainer.fit and the bare loop over the same tensors train the same net, batch for batch, with
    # the same random crops and flips.
    assert accuracies["(a)"] == pytest.approx(accuracies["(b)"], abs=0.005)

    # record_to appends one JSON line: when, the commit, the command, the machine, and the table's numbers.
    earlier, line = history.read_text().splitlines()
    assert json.loads(earlier) == {"an earlier run": True}, "the runs recorded before stay"
    run = json.loads(line)
    assert run["command"].startswith("python scripts/lab/benchmark.py model=small_cnn data=cifar10 ")
    assert run["commit"] and isinstance(run["uncommitted_changes"], bool) and run["when"].endswith("Z")
    assert "threads (torch uses " in run["machine"] and run["synthetic"] is True
    assert (run["model"], run["data"], run["batch"], run["epochs"]) == ("SmallCNN", "CIFAR10DataModule", 32, 2)
    assert list(run["ways"]) == ["trainer", "plain", "dataloader"]
    trainer, plain = run["ways"]["trainer"], run["ways"]["plain"]
    # The table shows 2 decimals of the measured time, the record keeps 3: x.xx5 rounds to either neighbour.
    assert table_seconds["(a)"] == pytest.approx(trainer["seconds_per_epoch"], abs=0.0051)
    assert len(trainer["epoch_seconds"]) == 2
    assert (trainer["train_acc"], trainer["val_acc"]) == accuracies["(a)"]
    # The record's seconds are rounded, the ratio is not: on a run this short that rounding moves it by up to ~1%.
    assert run["a_over_b"] == pytest.approx(trainer["seconds_per_epoch"] / plain["seconds_per_epoch"], rel=0.02)
    # The record keeps 4 decimals of each ratio, the table shows 3 and 2: compared as numbers, within that rounding.
    shown = {
        name: float(re.search(rf"\({name[0]}\)/\({name[-1]}\) = ([0-9.]+)", table).group(1)) for name in ("a/b", "c/a")
    }
    assert shown["a/b"] == pytest.approx(run["a_over_b"], abs=0.00051)
    assert shown["c/a"] == pytest.approx(run["c_over_a"], abs=0.0051)
    assert set(run["a_over_b_by_epoch"]) == {"median", "min", "max"}


def test_the_recorded_history_holds_one_run_per_line():
    runs = [json.loads(line) for line in (ROOT / "docs" / "benchmark_history.jsonl").read_text().splitlines()]
    assert runs and all({"when", "commit", "command", "machine"} <= run.keys() for run in runs)


def test_benchmark_composes_the_template_groups_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the template's conf/ is found by its absolute path, not from the working folder
    shown = run_lab("benchmark.py", "--cfg", "job", "model=mlp", "data=mnist", "runtime=cpu_tuned").stdout
    assert "litvision.models.mlp.MLP" in shown and "litvision.data.MNISTDataModule" in shown
    assert "malloc_mmap_threshold_mb: 32" in shown and "record_to: null" in shown


def test_records_name_the_cpu_with_its_vector_instructions(tmp_path):
    flags = "fpu sse2 avx avx2 avx512f avx512_bf16"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        f"processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
        f"flags\t\t: {flags}\n\nprocessor\t: 1\nmodel name\t: another\nflags\t\t: sse2\n\n"
    )
    assert cpu(cpuinfo) == "AMD EPYC (family 25 model 17; AVX2, AVX-512, AVX512-BF16)"
    cpuinfo.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: sse2 avx2\n")
    assert cpu(cpuinfo) == "AMD EPYC (family 25 model 1; AVX2)"
    # No /proc/cpuinfo (macOS, Windows): the platform's own name, with nothing made up.
    assert cpu(tmp_path / "missing") == (platform.processor() or platform.machine() or "CPU")


def test_random_streams_of_ways_taking_turns_do_not_mix():
    torch.manual_seed(0)
    alone = torch.rand(6)
    torch.manual_seed(0)
    stream = RandomStream()  # a way built now starts from this state
    outer_first = torch.rand(2)
    with stream.active():
        inner_first = torch.rand(3)
    outer_second = torch.rand(4)
    with stream.active():
        inner_second = torch.rand(3)
    assert torch.equal(torch.cat([inner_first, inner_second]), alone)
    assert torch.equal(torch.cat([outer_first, outer_second]), alone)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("ways=[plain,bogus]", "unknown ways ['bogus']"),
        ("turn_batches=0", "turn_batches must be a whole number >= 1"),
        ("runtime.malloc_mmap_threshold_mb=64", "runtime.malloc_mmap_threshold_mb must be in (0, 32]"),
        ("runtime=null", "config group runtime takes one of cpu_tuned, default; to turn it off: ~runtime"),
    ],
)
def test_benchmark_refuses_bad_options_in_one_line(override, expected, tmp_path):
    result = run_lab("benchmark.py", override, f"paths.root_dir={tmp_path}", check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true", "32-true"])
def test_a_cpu_trainer_in_bfloat16_warns_only_where_the_cpu_emulates_it(precision, tmp_path, caplog):
    import logging

    from lightning import Trainer

    from litvision_lab.benchmark_ways import warn_if_bfloat16_is_emulated

    native, emulated = tmp_path / "zen4", tmp_path / "zen3"
    native.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    emulated.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    trainer = Trainer(accelerator="cpu", precision=precision, logger=False, enable_checkpointing=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="litvision_lab.benchmark_ways"):
        assert not warn_if_bfloat16_is_emulated(trainer, native)
        assert "trainer.precision=" not in caplog.text
        warned = warn_if_bfloat16_is_emulated(trainer, emulated)
    assert warned == precision.startswith("bf16")
    assert ("trainer.precision=32-true" in caplog.text) == warned  # the fix, named
