"""The duplicate count and cost page of scripts/lab/audit_datasets.py, on tiny real-format files."""

from __future__ import annotations

from litvision_lab.audit_datasets import measure, page


def test_audit_page_counts_the_files_images_and_times_setup(tiny_data_dir):
    row = measure("mnist", tiny_data_dir / "MNIST" / "raw", tiny_data_dir, repeats=1, val_size=100)
    assert (row["train"], row["test"], row["distinct"]) == (600, 200, 800)
    assert row["result"].across["test~train"] == 0 and row["setup_on"] > 0 and row["setup_off"] > 0
    text = page([row], "python scripts/lab/audit_datasets.py")
    assert "| mnist |" in text and "| 600 | 200 | 0 | 0 | 0 | 800 |" in text and "commit " in text
