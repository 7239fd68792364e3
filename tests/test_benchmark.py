"""scripts/benchmark.py: the three-way table, the ways' separate random streams, its option checks."""

from __future__ import annotations

import pytest
import torch

from benchmark_ways import RandomStream
from conftest import QUIET, run_main


@pytest.mark.slow
def test_benchmark_script_prints_and_saves_the_three_way_table(tmp_path):
    # On synthetic CIFAR-10 from its script, as a session without the real files times it (with crop and flip).
    data_dir, run_dir = tmp_path / "synthetic", tmp_path / "bench"
    written = run_main("synthetic_data.py", "cifar10", str(data_dir), "--train", "400", "--test", "50")
    assert f"data.data_dir={data_dir}" in written.stdout
    result = run_main(
        "benchmark.py",
        "model=small_cnn",
        "data=cifar10",
        f"data.data_dir={data_dir}",
        "data.val_size=100",
        "data.batch_size=32",
        "epochs=2",
        "turn_batches=2",
        f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={run_dir}",
        f"record_to={tmp_path / 'performance.md'}",
        *QUIET,
    )
    table = (run_dir / "benchmark.md").read_text()
    assert table.strip() in result.stdout
    # record_to appends the run: when, the commit, the command, the machine, then the table.
    page = (tmp_path / "performance.md").read_text()
    assert page.startswith("\n### ") and ", commit " in page.splitlines()[1] and table.strip() in page
    assert "`python scripts/benchmark.py model=small_cnn data=cifar10 " in page
    assert "Machine: " in page and "threads (torch uses " in page
    assert "SYNTHETIC" in table.splitlines()[0] and "take turns every 2 training batches" in table.splitlines()[0]
    accuracies = {}
    for way in ("(a) litvision Trainer.fit", "(b) plain PyTorch loop", "(c) torchvision Dataset + DataLoader"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {way}"))
        seconds, rate, memory, train_acc, val_acc, epochs = (cell.strip() for cell in row.strip("|").split("|")[1:])
        assert len(epochs.split()) == 2
        assert float(seconds) > 0 and float(rate.replace(",", "")) > 0 and memory.endswith("GiB")
        accuracies[way[:3]] = float(train_acc), float(val_acc)
    assert "(a)/(b) =" in table and "(c)/(a) =" in table
    assert "(a)/(b) epoch by epoch (epochs 2+" in table
    # Same seed, same data order, each way on its own random stream although they take turns:
    # Trainer.fit and the bare loop over the same tensors train the same net, batch for batch, with
    # the same random crops and flips.
    assert accuracies["(a)"] == pytest.approx(accuracies["(b)"], abs=0.005)


def test_records_name_the_cpu_with_its_vector_instructions(tmp_path):
    from machine_info import cpu

    flags = "fpu sse2 avx avx2 avx512f avx512_bf16"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        f"processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
        f"flags\t\t: {flags}\n\nprocessor\t: 1\nmodel name\t: another\nflags\t\t: sse2\n\n"
    )
    assert cpu(cpuinfo) == "AMD EPYC (family 25 model 17; AVX2, AVX-512, AVX512-BF16)"
    cpuinfo.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: sse2 avx2\n")
    assert cpu(cpuinfo) == "AMD EPYC (family 25 model 1; AVX2)"
    import platform

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
    [("ways=[plain,bogus]", "unknown ways ['bogus']"), ("turn_batches=0", "turn_batches must be a whole number >= 1")],
)
def test_benchmark_refuses_bad_options_in_one_line(override, expected, tmp_path):
    result = run_main("benchmark.py", override, f"paths.root_dir={tmp_path}", check=False)
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr + result.stdout
