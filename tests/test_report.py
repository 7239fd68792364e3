"""The run report (report.html), provenance, the sweep page and the data audit, on real files and a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchmetrics.classification import MulticlassF1Score, MulticlassPrecision, MulticlassRecall

from conftest import QUIET, compose_train, require_real_data, run_main
from datafiles import write_image_folder
from litvision.report import analysis
from litvision.report.run_page import _audit
from litvision.support import provenance
from litvision.sweeps.page import write_sweep_page
from litvision.tasks.train import train

SECTIONS = ("curves", "test", "highest-loss", "calibration", "model", "data-audit", "provenance", "config")
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def reported_run(tiny_data_dir, tmp_path_factory) -> Path:
    """One short real run (tiny MNIST, 2 epochs, audit on) whose code is a git checkout with an uncommitted edit."""
    code = tmp_path_factory.mktemp("code")
    _git(code, "init", "-q")
    (code / "model.py").write_text("width = 8\n")
    _git(code, "add", "model.py")
    _git(code, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    (code / "model.py").write_text("width = 16\n")
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_train(
        ["data=mnist", f"data.data_dir={tiny_data_dir}", "data.val_size=100", "trainer.max_epochs=2", "data.audit=true"]
        + ["callbacks.report.num_highest_loss=8", *(q for q in QUIET if not q.startswith("callbacks.report"))],
        run_dir,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(provenance, "CODE_DIR", code)
        train(cfg)
    return run_dir


@pytest.mark.slow
def test_report_holds_each_section_with_the_runs_numbers(reported_run):
    page = (reported_run / "report.html").read_text()
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained
    metrics = json.loads((reported_run / "metrics.json").read_text())["metrics"]
    assert f"{100 * metrics['test/acc']:.2f}%" in page

    # The per-class table is torchmetrics' precision/recall/F1 on the saved predictions.
    saved = analysis.Predictions.load(reported_run / "test_predictions.npz")
    probabilities, labels = torch.from_numpy(saved.probabilities), torch.from_numpy(saved.labels)
    assert len(labels) == 200 and sorted(saved.indices.tolist()) == list(range(200))
    assert (probabilities.argmax(1) == labels).float().mean().item() == pytest.approx(metrics["test/acc"], abs=1e-6)
    table = page.split('<div id="per-class">')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:11]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    for metric, column in ((MulticlassPrecision, 1), (MulticlassRecall, 2), (MulticlassF1Score, 3)):
        expected = metric(num_classes=10, average=None)(probabilities, labels)
        assert [float(row[column]) for row in cells] == pytest.approx(expected.tolist(), abs=5e-5)
    assert [int(row[4]) for row in cells] == np.bincount(saved.labels, minlength=10).tolist()

    # The highest-loss images are the 8 examples with the lowest probability of their true class.
    true_probability = saved.probabilities[np.arange(len(labels)), saved.labels]
    assert set(saved.top_indices.tolist()) == set(saved.indices[np.argsort(true_probability)[:8]].tolist())
    assert saved.top_images.shape == (8, 28, 28, 1) and saved.top_images.dtype == np.uint8

    data = json.loads((reported_run / "report_data.json").read_text())
    assert data["curves"]["val/acc"][0] == [1, 2]  # epochs counted from 1
    best = int(np.argmax(data["curves"]["val/acc"][1])) + 1
    assert f"Best epoch (the checkpoint tested): {best}," in page
    assert data["model"]["params"] > 0 and data["model"]["macs"] > 0 and data["timing"]["epochs"] == 2
    assert f"{data['model']['params']:,}" in page
    assert data["audit"]["class_counts"]["test"] == np.bincount(saved.labels, minlength=10).tolist()


@pytest.mark.slow
def test_provenance_names_the_commit_and_saves_the_patch_of_a_dirty_tree(reported_run, tmp_path):
    record = json.loads((reported_run / "provenance.json").read_text())
    code = Path(record["git"]["root"])
    assert record["git"]["commit"] == _git(code, "rev-parse", "HEAD").strip() and record["git"]["dirty"] is True
    patch = (reported_run / "code.patch").read_text()
    assert "-width = 8" in patch and "+width = 16" in patch
    # The patch rebuilds the run's code on a clean copy of the commit.
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(code), str(clone))
    _git(clone, "apply", str(reported_run / "code.patch"))
    assert (clone / "model.py").read_text() == "width = 16\n"
    assert {"torch", "torchvision", "lightning", "hydra-core", "torchmetrics"} <= record["packages"].keys()
    assert record["seed"] == 42 and record["started"] <= record["ended"] and record["machine"]["cpu"]
    assert (reported_run / "resolved_config.yaml").is_file()
    page = (reported_run / "report.html").read_text()
    assert record["git"]["commit"] in page and "code.patch" in page
    # The same record in TensorBoard's text tab.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(reported_run / "tensorboard"))
    events.Reload()
    assert "provenance/text_summary" in events.Tags()["tensors"]


def test_provenance_outside_a_checkout_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CODE_DIR", tmp_path)
    state = provenance.git_state(tmp_path, tmp_path / "code.patch")
    assert "not a git checkout" in state["error"] and "commit" not in state


@pytest.mark.slow
def test_report_script_rebuilds_the_page_from_the_run_folder(reported_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(reported_run, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "report.html"))
    result = run_main("report.py", str(copy))
    assert "wrote" in result.stdout
    rebuilt, original = (copy / "report.html").read_text(), (reported_run / "report.html").read_text()
    assert rebuilt.count("<img") == original.count("<img") and 'id="ece"' in rebuilt
    (copy / "test_predictions.npz").write_bytes(b"not an archive")
    broken = run_main("report.py", str(copy), check=False)
    assert broken.returncode == 2 and broken.stderr.startswith("error: ") and "Traceback" not in broken.stderr


def test_expected_calibration_error_matches_a_hand_computation():
    probabilities = np.array([[0.9, 0.1], [0.62, 0.38], [0.3, 0.7], [0.45, 0.55], [0.97, 0.03]], dtype=np.float32)
    labels = np.array([0, 1, 1, 0, 0])
    predictions = analysis.Predictions(probabilities, labels, np.arange(5), ["a", "b"])
    # 5 bins of 0.2: confidences 0.9 and 0.97 (both right) in (0.8, 1]; 0.62 (wrong), 0.7 (right) in (0.6, 0.8];
    # 0.55 (wrong) in (0.4, 0.6].  ECE = sum over bins of |accuracy - mean confidence| * share of the images.
    hand = (abs(1.0 - 0.935) * 2 + abs(0.5 - 0.66) * 2 + abs(0.0 - 0.55) * 1) / 5
    assert analysis.expected_calibration_error(predictions, bins=5) == pytest.approx(hand, abs=1e-6)
    confidence, accuracy, counts = analysis.reliability_bins(predictions, bins=5)
    assert counts.tolist() == [0, 0, 1, 2, 2] and accuracy[3:].tolist() == [0.5, 1.0]


def test_a_test_image_copied_from_training_is_flagged_and_can_be_dropped(tmp_path, caplog):
    from litvision.data import FolderDataModule

    root = write_image_folder(tmp_path / "train", classes=3, per_class=6).parent
    (root / "test" / "class1").mkdir(parents=True)
    for label in range(3):
        for i in range(2):  # two images of their own per class, and one copy of a training image
            pixels = np.random.default_rng(100 + 3 * label + i).integers(0, 256, (20, 20, 3), dtype=np.uint8)
            (root / "test" / f"class{label}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / "test" / f"class{label}" / f"own{i}.png")
    shutil.copy(root / "train" / "class1" / "2.png", root / "test" / "class1" / "copy.png")
    options = dict(data_dir=str(root), in_channels=3, image_size=20, cache=False, val_fraction=0.2, audit=True)

    with caplog.at_level("WARNING", logger="litvision.data.audit"):
        kept = FolderDataModule(**options)
        kept.setup()
    result = kept.audit_result
    assert result.across["test~train"] == 1 and result.dropped == 0 and len(kept.splits["test"][0]) == 7
    (first, second), *_ = result.examples["test~train"]
    assert first.endswith("test/class1/copy.png") and second.endswith("train/class1/2.png")
    assert "1 test image(s) identical to train images" in caplog.text and "copy.png" in caplog.text
    assert "copy.png" in _audit(result.as_dict())  # listed in the report

    dropped = FolderDataModule(**options, drop_duplicates="test")
    dropped.setup()
    assert dropped.audit_result.dropped == 1 and len(dropped.splits["test"][0]) == 6
    assert dropped.audit_result.class_counts["test"] == [2, 2, 2]


def test_sweep_page_compares_the_runs_and_links_their_reports(tmp_path):
    for job, (lr, accuracies) in enumerate([("0.00123456789", [0.5, 0.7]), ("0.01", [0.6, 0.65])]):
        run = tmp_path / str(job)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.optimizer.lr={lr}", "seed=1"]))
        (run / "metrics.json").write_text(json.dumps({"metrics": {"val/acc_best": max(accuracies)}, "epochs": 2}))
        (run / "status.json").write_text(json.dumps({"status": "ok", "wall_s": 12.3}))
        (run / "report_data.json").write_text(json.dumps({"curves": {"val/acc": [[1, 2], accuracies]}}))
        (run / "report.html").write_text("<html></html>")
    page = write_sweep_page(tmp_path).read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", page.split('<table id="runs">')[1].split("</table>")[0])[1:]
    assert ">0.00123<" in rows[0] and ">70.00%<" in rows[0] and ">0.01<" in rows[1]  # best first, lr 3 digits
    assert 'href="./0/report.html"' in page and 'href="./1/report.html"' in page
    assert page.count("<img") == 1


@pytest.mark.slow
def test_a_real_browser_renders_the_report(reported_run, tmp_path):
    require_real_data(CHROMIUM, "apt-get install chromium")
    # A copy with a tiny check appended: the page itself needs no JavaScript.
    check = (
        "<script>for (const img of document.images) img.setAttribute('data-decoded', "
        "img.complete && img.naturalWidth > 0 ? 'yes' : 'no');</script></body>"
    )
    probe = tmp_path / "report.html"
    probe.write_text((reported_run / "report.html").read_text().replace("</body>", check))
    browser = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    browser += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    browser += [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*browser, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in dom
    decoded = re.findall(r'data-decoded="(\w+)"', dom)
    assert len(decoded) == 4 and set(decoded) == {"yes"}  # curves, confusion, highest loss, reliability
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*browser, f"--screenshot={shot}", "--window-size=1200,3000", (reported_run / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (3000, 1200) and (pixels < 128).mean() > 0.01  # text and figures, not a blank page
