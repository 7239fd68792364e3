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
        *QUIET,
    )
    table = (run_dir / "benchmark.md").read_text()
    assert table.strip() in result.stdout
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
