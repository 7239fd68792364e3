"""``<run dir>/report.html``: one self-contained page that says how a run went and where it came from.

Built from the run folder's files alone (``metrics.json``, ``report_data.json``,
``test_predictions.npz``, ``provenance.json``, ``resolved_config.yaml``), so ``scripts/report.py``
rebuilds it for a finished run without the model, the data or a GPU. A section whose file is missing
says so instead of failing.
"""

from __future__ import annotations

import zipfile
from datetime import datetime
from html import escape
from pathlib import Path

import numpy as np

from litvision.report import analysis
from litvision.support.atomic import write_text
from litvision.support.errors import LitvisionError, first_line
from litvision.support.html import image, note, page, table
from litvision.support.provenance import PATCH_FILE, PROVENANCE_FILE
from litvision.support.records import METRICS_FILE, STATUS_FILE, read_json
from litvision.support.render import confusion_picture, curves_figure, image_grid

PREDICTIONS_FILE = "test_predictions.npz"
DATA_FILE = "report_data.json"
REPORT_FILE = "report.html"
SPLIT_ORDER = ("train", "val", "test")
CONFIG_FILES = ("resolved_config.yaml", ".hydra/config.yaml")  # the second is Hydra's, unresolved


def write_run_page(run_dir: str | Path) -> Path:
    """Write ``report.html`` atomically: a unique temporary name per writer, so two never mix their pages."""
    run_dir = Path(run_dir)
    return write_text(run_dir / REPORT_FILE, run_page(run_dir))


def run_page(run_dir: Path) -> str:
    record, data = read_json(run_dir / METRICS_FILE), read_json(run_dir / DATA_FILE)
    metrics = record.get("metrics", {})
    predictions_path = run_dir / PREDICTIONS_FILE
    predictions = _load_predictions(predictions_path) if predictions_path.is_file() else None
    bins = int(data.get("calibration_bins") or 15)
    sections = [
        ("curves", "Learning curves", _curves(data)),
        ("test", "Test split: confusion and per-class scores", _test(predictions)),
        ("highest-loss", "Highest-loss test images", _highest_loss(predictions)),
        ("calibration", "Calibration", _calibration(predictions, bins)),
        ("model", "Model and timing", _model_and_timing(data, record, run_dir)),
        ("data-audit", "Data audit", _audit(data.get("audit"))),
        ("provenance", "Provenance", _provenance(run_dir)),
        ("config", "Resolved config", _config(run_dir)),
    ]
    status = read_json(run_dir / STATUS_FILE).get("status", "")
    facts = [
        ("test/acc", _percent(metrics.get("test/acc"))),
        ("val/acc_best", _percent(metrics.get("val/acc_best"))),
        ("test/loss", _rounded(metrics.get("test/loss"))),
        ("epochs", record.get("epochs", "")),
        ("seed", record.get("seed", "")),
        ("status", status),
    ]
    facts = [(name, value) for name, value in facts if value != ""]  # status.json comes after the first page
    intro = table([name for name, _ in facts], [[value for _, value in facts]], text_columns=0)
    return page(f"Run report: {run_dir.name}", sections, intro=f"<p>{escape(str(run_dir))}</p>{intro}")


def _load_predictions(path: Path) -> analysis.Predictions:
    try:
        return analysis.Predictions.load(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise LitvisionError(
            f"{path} is unreadable ({first_line(err, typed=True)}); rerun the test to rewrite it"
        ) from err


# -- sections ----------------------------------------------------------------------------------
def _curves(data: dict) -> str:
    curves = {key: (epochs, values) for key, (epochs, values) in data.get("curves", {}).items()}
    if not curves:
        return note("no learning curves saved (the learning_curves callback was off, or no epoch ended)")
    figure = curves_figure({"run": curves}, title="solid: train, dashed: val; epochs counted from 1")
    best = best_epoch(curves, data.get("monitor"), data.get("mode"))
    text = ""
    if best is not None:
        epoch, value = best
        for ax in figure.axes:
            ax.axvline(epoch, color="C2", linestyle=":", linewidth=1.5, label=f"best epoch {epoch}")
            ax.legend(fontsize=8)
        text = f"<p>Best epoch (the checkpoint tested): {epoch}, {data['monitor']} = {value:.4f}.</p>"
    return text + image(figure, "learning curves")


def best_epoch(curves: dict, monitor: str | None, mode: str | None) -> tuple[int, float] | None:
    """(epoch, value) where ``monitor`` was best: the first of equal values, as ModelCheckpoint keeps it."""
    if not monitor or monitor not in curves or not len(curves[monitor][1]):
        return None
    epochs, values = curves[monitor]
    position = int(np.argmin(values) if mode == "min" else np.argmax(values))
    return int(epochs[position]), float(values[position])


def _test(predictions: analysis.Predictions | None) -> str:
    if predictions is None:
        return note("no test predictions saved (test=false, or the run stopped before testing)")
    names = predictions.class_names
    matrix = analysis.confusion(predictions)
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    picture = confusion_picture(matrix, names, f"test confusion matrix (accuracy {accuracy:.2%})")
    scores = analysis.per_class_scores(predictions)
    rows = [
        [
            name,
            f"{scores['precision'][i]:.4f}",
            f"{scores['recall'][i]:.4f}",
            f"{scores['f1'][i]:.4f}",
            int(scores["support"][i]),
        ]
        for i, name in enumerate(names)
    ]
    macro = [float(np.mean(scores[key])) for key in ("precision", "recall", "f1")]
    rows.append(["macro average", *(f"{value:.4f}" for value in macro), int(scores["support"].sum())])
    header = ["class", "precision", "recall", "F1", "support"]
    return (
        f"<p>{len(predictions.labels)} test images, accuracy {accuracy:.2%}. Rows: true class; columns: predicted.</p>"
        + image(picture, "test confusion matrix")
        + '<div id="per-class">'
        + table(header, rows)
        + "</div>"
    )


def _highest_loss(predictions: analysis.Predictions | None) -> str:
    if predictions is None or predictions.top_images is None or not len(predictions.top_images):
        return note("no highest-loss images saved")
    captions, mistakes = analysis.highest_loss_captions(predictions)
    grid = image_grid(predictions.top_images.astype(np.float32) / 255.0, captions, mistakes, columns=8)
    return (
        f"<p>The {len(captions)} test images with the highest cross-entropy loss, highest first: index in the "
        "test split, true class, predicted class and its probability, the probability of the true class. "
        "Mistakes are framed in red.</p>" + image(grid, "highest-loss test images")
    )


def _calibration(predictions: analysis.Predictions | None, bins: int) -> str:
    if predictions is None:
        return note("no test predictions saved")
    ece = analysis.expected_calibration_error(predictions, bins)
    return (
        f'<p>Expected calibration error (torchmetrics, {bins} bins, L1): <b id="ece">{ece:.4f}</b>. '
        "A calibrated model's bars meet the diagonal: among images predicted with confidence 0.8, 80% are "
        "right.</p>"
        + image(analysis.reliability_figure(predictions, bins, ece), "reliability diagram")
        + _bin_table(predictions, bins)
    )


def _bin_table(predictions: analysis.Predictions, bins: int) -> str:
    confidence, accuracy, counts = analysis.reliability_bins(predictions, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = [
        [f"{edges[i]:.2f}-{edges[i + 1]:.2f}", int(counts[i]), f"{confidence[i]:.3f}", f"{accuracy[i]:.3f}"]
        for i in range(bins)
        if counts[i]
    ]
    return table(["confidence bin", "images", "mean confidence", "accuracy"], rows)


def _model_and_timing(data: dict, record: dict, run_dir: Path) -> str:
    model, timing = data.get("model") or {}, data.get("timing") or {}
    provenance = read_json(run_dir / PROVENANCE_FILE)
    rows = []
    if model:
        rows += [
            ["network", model.get("name", "")],
            ["input", "x".join(map(str, model.get("input_shape", [])))],
            ["parameters", f"{model['params']:,} ({model['trainable_params']:,} trainable)"],
            ["MACs per image", f"{model['macs']:,}"],
        ]
    if timing:
        rows += [
            ["epochs in this fit", timing.get("epochs", "")],
            ["fit time", _seconds(timing.get("fit_s"))],
            ["seconds per epoch (fit time / epochs)", _seconds(timing.get("s_per_epoch"))],
            ["last epoch (validation included)", _seconds(timing.get("last_epoch_s"))],
            ["training images/s (last epoch)", _rounded(timing.get("images_per_s"), 1)],
        ]
    if provenance.get("started") and provenance.get("ended"):
        wall = datetime.fromisoformat(provenance["ended"]) - datetime.fromisoformat(provenance["started"])
        rows.append(
            ["wall time of the run", f"{wall.total_seconds():.0f} s ({provenance['started']} to {provenance['ended']})"]
        )
    if not rows:
        return note("no model summary or timing saved")
    text = table(["", ""], rows)
    if model.get("table"):
        text += f"<details><summary>layers</summary><pre>{escape(model['table'])}</pre></details>"
    return text


def _audit(audit: dict | None) -> str:
    if not audit:
        return note("no data audit in this run (data.audit=false)")
    names = audit["class_names"]
    splits = sorted(audit["class_counts"], key=lambda s: SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99)
    rows = [[name, *(audit["class_counts"][s][i] for s in splits)] for i, name in enumerate(names)]
    rows.append(["total", *(sum(audit["class_counts"][s]) for s in splits)])
    text = f"<p>Hashed every decoded image in {audit['seconds']:.2f} s.</p>" + table(["class", *splits], rows)
    for split, ratio in audit.get("imbalanced", {}).items():
        text += f'<p class="warn">{escape(split)}: imbalanced classes (largest / smallest {ratio:.1f})</p>'
    duplicates = [[f"within {split}", count] for split, count in audit["within"].items()]
    duplicates += [[f"{key.split('~')[0]} images also in {key.split('~')[1]}", c] for key, c in audit["across"].items()]
    text += table(["exact duplicates", "images"], duplicates)
    if audit.get("dropped"):
        text += f'<p class="warn">{audit["dropped"]} test images found in train or val were dropped from the test split.</p>'
    for key, pairs in audit.get("examples", {}).items():
        if pairs:
            first, second = key.split("~")
            text += f"<p>{escape(first)} images identical to {escape(second)} images (up to {len(pairs)} listed):</p>"
            text += table([first, second], pairs, text_columns=2)
    return text


def _provenance(run_dir: Path) -> str:
    record = read_json(run_dir / PROVENANCE_FILE)
    if not record:
        return note(f"no {PROVENANCE_FILE} in this run")
    git, machine = record.get("git", {}), record.get("machine", {})
    if "commit" in git:
        code = f"{git['commit']} ({git.get('branch', '')})"
        if git.get("dirty"):
            code += f"; uncommitted changes saved as {git.get('patch', PATCH_FILE)}: git apply it on that commit"
        else:
            code += "; no uncommitted changes to tracked files"
        if git.get("untracked_files"):
            code += f"; {git['untracked_files']} untracked files (not saved)"
    else:
        code = git.get("error", "unknown")
    rows = [
        ["code", code],
        ["command", record.get("command", "")],
        ["overrides", " ".join(record.get("overrides", []))],
        ["working directory", record.get("cwd", "")],
        ["started", record.get("started", "")],
        ["ended", record.get("ended") or "(not recorded: the run did not finish)"],
        ["seed", record.get("seed", "")],
        ["python", record.get("python", "")],
        *([name, version] for name, version in record.get("packages", {}).items()),
        ["cpu", f"{machine.get('cpu', '')} ({machine.get('cpu_count', '')} cores)"],
        ["gpu", ", ".join(machine.get("gpus") or []) or "none"],
        ["platform", machine.get("platform", "")],
    ]
    return table(["", ""], rows, text_columns=2)


def _config(run_dir: Path) -> str:
    for name in CONFIG_FILES:
        path = run_dir / name
        if path.is_file():
            return f"<p>{escape(name)}</p><pre>{escape(path.read_text())}</pre>"
    return note("no saved config in this run")


# -- numbers -----------------------------------------------------------------------------------
def _percent(value) -> str:
    return "" if value is None else f"{100 * float(value):.2f}%"


def _rounded(value, digits: int = 4) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


def _seconds(value) -> str:
    return "" if value is None else f"{float(value):.1f} s"
