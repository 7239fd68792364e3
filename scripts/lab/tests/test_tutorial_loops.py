"""scripts/lab/tutorial_loops.py: the tutorials' own loops, the control for docs/results.md, on real idx files."""

from __future__ import annotations

import gzip

from litvision_lab import tutorial_loops


def _rows(page: str) -> dict[str, list[str]]:
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")] for line in page.splitlines() if line.startswith("| `")
    ]
    return {row[0]: row for row in rows}


def test_loops_train_repeatably_and_append_their_table(tiny_data_dir, tmp_path):
    page = tmp_path / "loops.md"
    page.write_text("# Runs\n")
    args = ["--tutorials", "seed000,seed004_mlp", "--seeds", "0,0", "--steps", "40", "--record", str(page)]
    args += [
        "--fashion-dir",
        str(tiny_data_dir / "FashionMNIST" / "raw"),
        "--mnist-dir",
        str(tiny_data_dir / "MNIST" / "raw"),
    ]
    assert tutorial_loops.main(args) == 0
    text = page.read_text()
    assert text.startswith("# Runs\n"), "the page's own text stays; the table is appended"
    assert "`python scripts/lab/tutorial_loops.py --tutorials seed000,seed004_mlp" in text and ", commit " in text
    rows = _rows(text)
    assert set(rows) == {"`seed000`", "`seed004_mlp`"}
    fashion, mlp = rows["`seed000`"], rows["`seed004_mlp`"]
    assert fashion[1:3] == ["Fashion-MNIST (600)", "90.18"] and mlp[1:3] == ["MNIST (600)", "97 (whole %)"]
    assert fashion[5:7] == ["0, 0", "40 of 2,115 (cut short)"]
    runs = [float(acc) for acc in fashion[7].split(", ")]
    assert runs[0] == runs[1], "one seed trains the same net twice"
    assert runs[0] > 50, "40 Adam steps learn the tiny data's bright squares (chance: 10%)"
    assert fashion[4].endswith("± 0.00") and mlp[4] == "—", "only seed000 has its train-mode test as written"


def test_missing_or_corrupt_files_are_one_line_and_status_2(tiny_data_dir, tmp_path, capsys):
    args = ["--tutorials", "seed004_mlp", "--seeds", "0", "--steps", "1"]
    assert tutorial_loops.main([*args, "--mnist-dir", str(tmp_path / "nowhere")]) == 2
    assert (
        capsys.readouterr().err.strip() == f"error: {tmp_path / 'nowhere' / 'train-images-idx3-ubyte'}(.gz) not found"
    )

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (broken / f"{name}.gz").write_bytes(gzip.compress(b"\0\0\x08\x03" + b"\xff" * 10))  # a header, no data
    assert tutorial_loops.main([*args, "--mnist-dir", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {broken / 'train-images-idx3-ubyte.gz'}: unreadable") and "\n" not in err
