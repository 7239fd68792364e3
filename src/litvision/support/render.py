"""The dashboards' pictures: image grids and confusion matrices (Pillow), learning curves (matplotlib).

The pictures drawn during training (grids, confusion matrices) are drawn with Pillow straight into
(H, W, 3) uint8 arrays: ``torchvision.utils.make_grid`` tiles images but writes no captions and frames
no mistakes, and matplotlib takes many times longer for a picture drawn every few epochs. The learning
curves, drawn once at the end, are ``matplotlib.figure.Figure`` objects drawn by the Agg canvas
directly, never through pyplot: no GUI backend is picked, no global state changes in the caller's
process, and nothing has to be closed. Inputs are numpy arrays, so ``scripts/plot.py`` needs no torch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from litvision.support.atomic import atomic_open

RIGHT, WRONG = "#1a9850", "#d73027"  # caption colours: green for a right prediction, red for a mistake
_RGB_WRONG = np.array([0xD7, 0x30, 0x27], dtype=np.uint8)
_CAPTION_PX, _TITLE_PX = 11, 13
# The confusion picture's bounds: classes drawn, characters of a class name, and so pixels a side.
MAX_DRAWN_CLASSES, MAX_NAME_CHARS, MAX_SIDE_PX = 50, 32, 1800


def image_grid(
    images: np.ndarray,
    captions: Sequence[str],
    mistakes: Sequence[bool] | None = None,
    columns: int = 8,
    title: str | None = None,
) -> np.ndarray:
    """A grid of ``images`` (N, H, W, C) in [0, 1], each captioned; mistakes get a red caption and frame.

    Returns the grid as an (H, W, 3) uint8 array (what TensorBoard's image summary takes), drawn with
    Pillow: one mosaic, each image enlarged to about 90 px with nearest-neighbour pixels, and one text
    draw per caption. Hand-written because ``torchvision.utils.make_grid`` tiles images but writes no
    captions or class names; Pillow rather than matplotlib because these grids are drawn during
    training, and matplotlib's text layout costs many times more (docs/dashboards.md).
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
        draw.multiline_text(
            (col * cell_w + cell_w / 2, top_band + row * cell_h + 2),
            caption,
            font=font,
            fill=color,
            anchor="ma",
            align="center",
            spacing=2,
        )
    if title:
        draw.text((mosaic.shape[1] / 2, 4), title, font=_font(_TITLE_PX), fill="black", anchor="ma")
    return np.asarray(canvas)


@functools.cache
def _font(pixels: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans, the font matplotlib ships (and uses by default), so the grids match the other figures."""
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), pixels)


def confusion_picture(matrix: np.ndarray, class_names: Sequence[str], title: str) -> np.ndarray:
    """Counts with true classes as rows, as an (H, W, 3) uint8 picture drawn with Pillow.

    Colours are row-normalized (matplotlib's "Blues"), so rare classes read as well as common ones;
    the counts are written in the cells up to 30 classes. Beyond ``MAX_DRAWN_CLASSES`` only the
    classes with the most mistakes (missed plus wrongly predicted) are drawn, their colours still
    shares of each true class's images, so the picture stays under ``MAX_SIDE_PX`` pixels a side
    whatever the number of classes (names are cut at ``MAX_NAME_CHARS``). Drawn during training
    (every few validation epochs), so with Pillow rather than matplotlib, like the image grids.
    """
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1)
    shown = most_confused(matrix, MAX_DRAWN_CLASSES)
    if len(shown) < len(matrix):
        title = f"{title}: the {len(shown)} most confused of {len(matrix)} classes"
        matrix = matrix[np.ix_(shown, shown)]
    count = len(matrix)
    rows = totals[shown][:, None]
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    cell = 40 if count <= 30 else max(4, 1200 // count)
    label_font, number_font, title_font = _font(12), _font(11), _font(_TITLE_PX)
    names = [_shortened(str(class_names[index])) for index in shown]
    left_w = max(_text_size(name, label_font)[0] for name in names) + 30  # row names, and "true" turned upright
    diagonal = max(sum(_text_size(name, label_font)) for name in names) * 0.7072  # a 45-degree name's height
    top, bottom_h = _TITLE_PX + 16, int(diagonal) + 34
    width = max(left_w + count * cell + 16, _text_size(title, title_font)[0] + 16)
    canvas = Image.new("RGB", (width, top + count * cell + bottom_h), "white")
    colours = (matplotlib.colormaps["Blues"](shares)[..., :3] * 255).round().astype(np.uint8)
    canvas.paste(Image.fromarray(colours.repeat(cell, axis=0).repeat(cell, axis=1)), (left_w, top))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((left_w - 1, top - 1, left_w + count * cell, top + count * cell), outline="#444444")
    if count <= 30:  # beyond that the numbers are unreadable; the colours still tell
        for (row, col), value in np.ndenumerate(matrix):
            draw.text(
                (left_w + col * cell + cell / 2, top + row * cell + cell / 2),
                str(int(value)),
                font=number_font,
                fill="white" if shares[row, col] > 0.5 else "black",
                anchor="mm",
            )
    for index, name in enumerate(names):
        centre = index * cell + cell / 2
        draw.text((left_w - 6, top + centre), name, font=label_font, fill="black", anchor="rm")
        turned = _turned_text(name, label_font, 45)  # its right end at the column, as matplotlib's ha="right"
        canvas.paste(turned, (int(left_w + centre - turned.width + 4), top + count * cell + 4), turned)
    draw.text((left_w + count * cell / 2, canvas.height - 6), "predicted", font=label_font, fill="black", anchor="md")
    upright = _turned_text("true", label_font, 90)
    canvas.paste(upright, (4, int(top + count * cell / 2 - upright.height / 2)), upright)
    draw.text((width / 2, 6), title, font=title_font, fill="black", anchor="ma")
    return np.asarray(canvas)


def most_confused(matrix: np.ndarray, limit: int) -> np.ndarray:
    """The indices of all classes when there are at most ``limit``, else of the ``limit`` classes with the
    most mistakes (images of the class predicted as another, plus images predicted as it wrongly), in
    class order; ties go to the lower index."""
    count = len(matrix)
    if count <= limit:
        return np.arange(count)
    diagonal = np.diagonal(matrix)
    mistakes = matrix.sum(axis=1) + matrix.sum(axis=0) - 2 * diagonal
    return np.sort(np.argsort(-mistakes, kind="stable")[:limit])


def _shortened(name: str) -> str:
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1] + "\u2026"


def _text_size(text: str, font: ImageFont.FreeTypeFont) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return right - left, bottom - top


def _turned_text(text: str, font: ImageFont.FreeTypeFont, degrees: float) -> Image.Image:
    """Black ``text`` on a transparent background, turned anticlockwise."""
    left, top, right, bottom = font.getbbox(text)
    flat = Image.new("RGBA", (right - left + 2, bottom - top + 2), (255, 255, 255, 0))
    ImageDraw.Draw(flat).text((1 - left, 1 - top), text, font=font, fill="black")
    return flat.rotate(degrees, expand=True, resample=Image.Resampling.BICUBIC)


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
        low, high = ax.get_xlim()
        if high - low < 2:  # one epoch: whole-number ticks around it instead of 0.95 ... 1.05
            middle = round((low + high) / 2)
            ax.set_xlim(middle - 1, middle + 1)
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
    fig.subplots_adjust(
        left=0.06,
        right=0.99,
        wspace=0.18,
        top=1 - 0.45 / height,
        bottom=(0.55 + 0.18 * legend_rows + (0.1 if legend_rows else 0)) / height,
    )
    return fig


def save_png(picture: Figure | np.ndarray, path: str | Path) -> Path:
    """Write a figure or an (H, W, 3) uint8 picture to ``path`` atomically (:mod:`litvision.support.atomic`),
    so an interrupted write never leaves half a PNG."""
    with atomic_open(path, "wb") as stream:
        if isinstance(picture, np.ndarray):
            Image.fromarray(picture).save(stream, format="png")
        else:
            FigureCanvasAgg(picture)
            picture.savefig(stream, format="png")
    return Path(path)
