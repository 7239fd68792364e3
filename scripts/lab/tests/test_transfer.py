"""litvision_lab.transfer: the seeded, stratified MNIST subset it trains on, and its section of the results page."""

from __future__ import annotations

import numpy as np

from litvision.data import MNISTDataModule
from litvision_lab.transfer import END, START, read_idx, stratified, write_mnist_subset, write_section


def test_the_subset_is_stratified_seeded_and_read_by_the_template(tmp_path):
    folder = write_mnist_subset(tmp_path / "a", train=100, val=10, test=50, seed=0)
    raw = folder / "MNIST" / "raw"
    labels = read_idx(raw / "train-labels-idx1-ubyte")
    assert (
        np.bincount(labels).tolist() == [11] * 10
        and np.bincount(read_idx(raw / "t10k-labels-idx1-ubyte")).tolist() == [5] * 10
    )
    again = write_mnist_subset(tmp_path / "b", train=100, val=10, test=50, seed=0) / "MNIST" / "raw"
    assert (again / "train-images-idx3-ubyte").read_bytes() == (raw / "train-images-idx3-ubyte").read_bytes()
    assert not np.array_equal(stratified(labels, 50, seed=1), stratified(labels, 50, seed=2))
    facts = dict(num_classes=10, class_names=[str(i) for i in range(10)], mean=[0.13], std=[0.31])
    datamodule = MNISTDataModule(data_dir=str(folder), val_size=10, download=False, **facts)
    datamodule.setup("fit")
    assert len(datamodule.splits["train"][0]) == 100 and len(datamodule.splits["test"][0]) == 50


def test_its_section_is_replaced_in_place_and_the_rest_of_the_page_kept(tmp_path):
    page = tmp_path / "results.md"
    page.write_text("# Results\n\nthe table\n")
    write_section(page, f"{START}\nfirst\n{END}\n")
    write_section(page, f"{START}\nsecond\n{END}\n")
    assert page.read_text() == f"# Results\n\nthe table\n\n{START}\nsecond\n{END}\n"


def test_reproduce_s_rewrite_of_the_page_keeps_the_section(tmp_path):
    from litvision_lab.reproduce_page import kept_sections

    page = tmp_path / "results.md"
    page.write_text(f"# Results\n\nthe old table\n\n{START}\nmeasured\n{END}\n")
    assert kept_sections(page.read_text()) == [f"\n{START}\nmeasured\n{END}\n"]
