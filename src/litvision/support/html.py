"""Small HTML building blocks for the report pages: no template engine, no JavaScript, images inline."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from html import escape

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-top: .6em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: .8em; }
img { max-width: 100%; } .note { color: #666; font-size: .9em; } .warn { color: #b30000; }
nav a { margin-right: .8em; }
"""


def png_data_uri(picture: Figure | np.ndarray) -> str:
    """A matplotlib figure or an (H, W, 3) uint8 picture as a ``data:image/png;base64`` URI."""
    buffer = io.BytesIO()
    if isinstance(picture, np.ndarray):
        Image.fromarray(picture).save(buffer, format="png")
    else:
        FigureCanvasAgg(picture)
        picture.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image(picture: Figure | np.ndarray, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="{png_data_uri(picture)}">'


def table(header: Sequence[str], rows: Sequence[Sequence[object]], text_columns: int = 1) -> str:
    """A table whose first ``text_columns`` columns are left-aligned text, the rest right-aligned numbers."""

    def cells(values, tag):
        return "".join(
            f'<{tag} class="text">{escape(str(v))}</{tag}>' if i < text_columns else f"<{tag}>{escape(str(v))}</{tag}>"
            for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    return f"<table><tr>{cells(header, 'th')}</tr>{body}</table>"


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>\n{body}\n</section>'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def page(title: str, sections: Sequence[tuple[str, str, str]], intro: str = "") -> str:
    """A whole page: the title, links to each (anchor, title, body) section, and the sections."""
    links = " ".join(f'<a href="#{anchor}">{escape(name)}</a>' for anchor, name, _ in sections)
    parts = "\n".join(section(anchor, name, body) for anchor, name, body in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body><h1>{escape(title)}</h1>\n{intro}\n<nav>{links}</nav>\n{parts}\n"
        "</body></html>\n"
    )
