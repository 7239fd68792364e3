"""The dashboards' pictures: captioned image grids (Pillow), confusion matrices and learning curves (matplotlib).

Figures are built with ``matplotlib.figure.Figure`` and drawn by the Agg canvas directly, never
through pyplot: no GUI backend is picked, no global state changes in the caller's process, and
nothing has to be closed. Inputs are numpy arrays, so ``scripts/plot.py`` needs no torch.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

RIGHT, WRONG = "#1a9850", "#d73027"  # caption colours: green for a right prediction, red for a mistake
_RGB_WRONG = np.array([0xD7, 0x30, 0x27], dtype=np.uint8)
_CAPTION_PX, _TITLE_PX = 11, 13


def image_grid(images: np.ndarray, captions: Sequence[str], mistakes: Sequence[bool] | None = None,
               columns: int = 8, title: str | None = None) -> np.ndarray:
    """A grid of ``images`` (N, H, W, C) in [0, 1], each captioned; mistakes get a red caption and frame.

    Returns the grid as an (H, W, 3) uint8 array (what TensorBoard's image summary takes), drawn with
    Pillow: one mosaic, each image enlarged to about 90 px with nearest-neighbour pixels, and one text
    draw per caption. These grids are drawn during training; the same grid through matplotlib took
    about 120 ms on a 2-core CPU, mostly laying out and rendering the captions' glyphs.
    """
    count, height, width = images.shape[:3]
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    scale = max(1, round(90 / max(height, width)))
    height, width = height * scale, width * scale
    frame = max(2, width // 14)  # the red frame that marks a mistake, with as much white outside it
    font = _font(_CAPTION_PX)
    lines = max((caption.count("\n") + 1 for caption in captions), default=1)
    band = lines * (_CAPTION_PX + 2) + 3  # caption lines above each image
    cell_w, cell_h = width + 4 * frame, band + height + 3 * frame
    top_band = _TITLE_PX + 8 if title else 0
    mosaic = np.full((top_band + rows * cell_h, columns * cell_w, 3), 255, dtype=np.uint8)
    rgb = np.rint(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    rgb = rgb.repeat(scale, axis=1).repeat(scale, axis=2)
    marked = mistakes is not None
    for index in range(count):
        row, col = divmod(index, columns)
        top, left = top_band + row * cell_h + band + frame, col * cell_w + 2 * frame
        if marked and mistakes[index]:
            mosaic[top - frame : top + height + frame, left - frame : left + width + frame] = _RGB_WRONG
        mosaic[top : top + height, left : left + width] = rgb[index]
    canvas = Image.fromarray(mosaic)
    draw = ImageDraw.Draw(canvas)
    for index, caption in enumerate(captions[:count]):
        row, col = divmod(index, columns)
        color = (WRONG if mistakes[index] else RIGHT) if marked else "black"
        draw.multiline_text((col * cell_w + cell_w / 2, top_band + row * cell_h + 2), caption, font=font, fill=color,
                            anchor="ma", align="center", spacing=2)
    if title:
        draw.text((mosaic.shape[1] / 2, 4), title, font=_font(_TITLE_PX), fill="black", anchor="ma")
    return np.asarray(canvas)


@functools.lru_cache(maxsize=None)
def _font(pixels: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans, the font matplotlib ships (and uses by default), so the grids match the other figures."""
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), pixels)


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Counts with true classes as rows; colours are row-normalized so rare classes read as well as common ones."""
    count = len(matrix)
    side = max(3.0, 0.42 * count)  # inches of matrix; the margins below hold the class names
    fig = Figure(figsize=(side + 1.7, side + 1.6), dpi=100)
    ax = fig.add_subplot()
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    if count <= 30:  # beyond that the numbers are unreadable; the colours still tell
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(col, row, str(int(value)), ha="center", va="center", fontsize=7,
                    color="white" if shares[row, col] > 0.5 else "black")
    ax.set_xticks(range(count), labels=class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(count), labels=class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    width, height = fig.get_size_inches()  # fixed margins: tight_layout would cost a second draw
    fig.subplots_adjust(left=1.45 / width, right=1 - 0.2 / width, bottom=1.3 / height, top=1 - 0.3 / height)
    return fig


Curve = tuple[Sequence[float], Sequence[float]]  # (epochs, values)


def curves_figure(runs: Mapping[str, Mapping[str, Curve]], title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, solid for train and dashed for val.

    One run: a colour per stage. Several: a colour per run, named once in a legend under the plots.
    """
    single = len(runs) == 1
    legend_rows = 0 if single else math.ceil(len(runs) / 2)
    height = 4.2 + 0.18 * legend_rows
    fig = Figure(figsize=(11, height), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, quantity in zip(axes, ("loss", "acc")):
        for index, (label, curves) in enumerate(runs.items()):
            named = False
            for offset, (stage, style) in enumerate((("train", "-"), ("val", "--"))):
                epochs, values = curves.get(f"{stage}/{quantity}", ((), ()))
                if not len(values):
                    continue
                color = f"C{offset}" if single else f"C{index % 10}"
                name = stage if single else (None if named or ax is not axes[0] else label)
                ax.plot(epochs, values, style, color=color, marker="o", markersize=3, label=name)
                named = True
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if quantity == "acc" else "loss")
        ax.grid(alpha=0.3)
        if single and ax.has_data():
            ax.legend(fontsize=8)
    if not single:
        fig.legend(loc="lower center", ncol=2, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    # Fixed margins in inches, so the legend rows below never overlap the axes.
    fig.subplots_adjust(left=0.06, right=0.99, wspace=0.18, top=1 - 0.45 / height,
                        bottom=(0.55 + 0.18 * legend_rows + (0.1 if legend_rows else 0)) / height)
    return fig


def to_rgb(fig: Figure) -> np.ndarray:
    """The figure drawn by Agg as a (H, W, 3) uint8 array, what TensorBoard's image summary takes."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` through a temporary file, so an interrupted write never leaves half a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            fig.savefig(stream, format="png")
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    return path
