"""``<sweep dir>/report.html``: a sweep's runs compared on one page.

The table is ``scripts/summarize.py``'s (:mod:`litvision.sweeps.results_table`), with numbers rounded
to what a reader compares: accuracies in percent to 2 decimals, losses to 4, numeric settings (a
learning rate drawn by Optuna) to 3 significant digits. Below it, every run's val/acc curve on one
plot (from each run's ``report_data.json``) with a legend naming the settings that differ, and a link
to each run's own report. Everything read from the run folders is shown as text: names and settings
HTML-escaped, links relative and quoted, a run whose files are not litvision's listed as unreadable.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from urllib.parse import quote

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from litvision.support import atomic
from litvision.support.errors import printable
from litvision.support.html import image, note, page
from litvision.support.records import OK, UnreadableFile, is_number, load_json_object
from litvision.sweeps.results_table import (
    Run,
    read_runs,
    seed_groups,
    shared_settings,
    sort_runs,
    varying_keys,
)

SHOWN = ("val/acc_best", "test/acc", "test/loss")

# The sweep's page, and each run's report and its data where the run has one (the report feature writes
# them; without it the page links no run report and draws no curves).
REPORT_FILE, DATA_FILE = "report.html", "report_data.json"


def write_sweep_page(sweep_dir: str | Path, metric: str = "val/acc_best", ascending: bool = False) -> Path:
    sweep_dir = Path(sweep_dir)
    runs = read_runs(sweep_dir)
    return atomic.write_text(sweep_dir / REPORT_FILE, sweep_page(sweep_dir, runs, metric, ascending))


def sweep_page(sweep_dir: Path, runs: list[Run], metric: str, ascending: bool) -> str:
    keys = varying_keys(runs)
    shown = [m for m in dict.fromkeys([metric, *SHOWN]) if any(m in run.metrics for run in runs)]
    ordered = sort_runs(runs, metric, ascending)
    header = ["run", *keys, *shown, "epochs", "wall", "status", "report"]
    rows = []
    for run in ordered:
        link = f'<a href="{escape(run_link(run.name))}">report</a>' if _has_report(sweep_dir / run.name) else ""
        status = run.status if run.status == OK or not run.error else f"{run.status}: {run.error}"
        cells = [
            escape(printable(run.name)),
            *(escape(printable(setting(run.settings.get(key, "")))) for key in keys),
            *(escape(number(m, run.metrics.get(m))) for m in shown),
            "" if run.epochs is None else str(run.epochs),
            "" if run.wall_s is None else f"{run.wall_s:.0f} s",
            escape(printable(status)),
            link,
        ]
        # The run and its settings, and its status and link, read as text; the numbers align right.
        text = [i <= len(keys) or i >= len(cells) - 2 for i in range(len(cells))]
        rows.append("<tr>" + "".join(_cell(c, t) for c, t in zip(cells, text)) + "</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    shared = shared_settings(runs)
    intro = f"<p>{len(runs)} runs in {escape(str(sweep_dir))}, best {escape(metric)} first.</p>"
    if shared:
        intro += "<p>Shared overrides: " + " ".join(f"<code>{escape(setting_override(s))}</code>" for s in shared)
        intro += "</p>"
    body = f'<table id="runs"><tr>{head}</tr>{"".join(rows)}</table>' + _groups(runs, keys, shown)
    sections = [("runs", "Runs", body), ("curves", "Validation accuracy", _curves(sweep_dir, ordered, keys))]
    return page(f"Sweep report: {sweep_dir.name}", sections, intro=intro)


def _cell(content: str, text: bool) -> str:
    return f'<td class="text">{content}</td>' if text else f"<td>{content}</td>"


def _groups(runs: list[Run], keys: list[str], shown: list[str]) -> str:
    groups = seed_groups(runs, shown)
    if not groups:
        return ""
    header = "".join(
        f"<th>{escape(h)}</th>" for h in [*(k for k in keys if k not in ("seed", "data.fold")), "runs", *shown]
    )
    rows = []
    for group in groups:
        cells = [escape(setting(group["settings"].get(k, ""))) for k in keys if k not in ("seed", "data.fold")]
        cells.append(escape(",".join(group["seeds"])))
        for m in shown:
            stats = group[m]
            cells.append("" if not stats else f"{number(m, stats[0])} ± {number(m, stats[1])}")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<p>Mean ± std over repeats:</p><table><tr>{header}</tr>{''.join(rows)}</table>"


def _has_report(run_dir: Path) -> bool:
    try:
        return (run_dir / REPORT_FILE).is_file()
    except OSError:  # a folder that cannot be looked into
        return False


def run_link(name: str) -> str:
    """The link to a run's report: a relative path whatever the folder is called (``javascript:``, quotes...)."""
    return "./" + quote(f"{name}/{REPORT_FILE}")


def _curves(sweep_dir: Path, runs: list[Run], keys: list[str]) -> str:
    fig = Figure(figsize=(11, 4.5), dpi=100)
    ax = fig.subplots()
    drawn, unreadable = 0, []
    for index, run in enumerate(runs):
        try:
            curve = val_curve(sweep_dir / run.name / DATA_FILE)
        except UnreadableFile:
            unreadable.append(run.name)
            continue
        if curve is None:
            continue
        label = f"{run.name}: " + " ".join(f"{k}={setting(run.settings.get(k, ''))}" for k in keys)
        style = "-" if index < 10 else ("--" if index < 20 else ":")  # ten colours, then other line styles
        ax.plot(*curve, style, color=f"C{index % 10}", marker="o", markersize=3, label=_legend_text(label[:80]))
        drawn += 1
    skipped = note(f"curves left out, {DATA_FILE} unreadable: {', '.join(unreadable)}") if unreadable else ""
    if not drawn:
        return note(f"no run has val/acc curves saved ({DATA_FILE})") + skipped
    ax.set(xlabel="epoch", ylabel="val/acc")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if drawn <= 20 else 2)
    fig.tight_layout()
    return image(fig, "validation accuracy of every run") + skipped


def val_curve(path: Path) -> tuple[list[float], list[float]] | None:
    """(epochs, val/acc) from a run's report_data.json; None without one; UnreadableFile when it is not numbers."""
    data = load_json_object(path)
    curves = (data or {}).get("curves", {})
    if not isinstance(curves, dict):
        raise UnreadableFile(f"{path}: 'curves' is not a mapping")
    if "val/acc" not in curves:
        return None
    curve = curves["val/acc"]
    if (
        not isinstance(curve, list)
        or len(curve) != 2
        or not all(isinstance(axis, list) and all(is_number(v) for v in axis) for axis in curve)
        or len(curve[0]) != len(curve[1])
    ):
        raise UnreadableFile(f"{path}: 'curves.val/acc' is not two equally long lists of numbers")
    return curve[0], curve[1]


def _legend_text(label: str) -> str:
    """A legend entry as literal text: ``$`` would start matplotlib's math mode, a leading ``_`` hides the entry."""
    label = printable(label).replace("$", r"\$")  # outside math mode matplotlib turns only \$ back into $
    return f" {label}" if label.startswith("_") else label


def number(metric: str, value) -> str:
    """Accuracies in percent (2 decimals), anything else to 4 significant digits."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return ""
    if metric.split("/")[-1].startswith("acc"):
        return f"{100 * value:.2f}%"
    return f"{value:.4g}"


def setting(value: str) -> str:
    """An override's value as typed, numbers with more digits than matter cut to 3 significant digits."""
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        return str(value)
    if value.lstrip("-").isdigit():  # integers (epochs, seeds) stay whole
        return value
    return f"{parsed:.3g}"


def setting_override(override: str) -> str:
    key, _, value = override.partition("=")
    return f"{key}={setting(value)}"
