"""scripts/lab/recipes.py: its sections replace themselves in a page and leave the rest alone."""

from __future__ import annotations

from litvision_lab.recipes import write_section


def test_a_section_is_appended_once_then_replaced_in_place(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Page\n\nintro\n\n<!-- other:start -->\nkept\n<!-- other:end -->\n")
    write_section(page, "ablation", "first table")
    write_section(page, "ablation", "second table")
    text = page.read_text()
    assert text.count("<!-- ablation:start -->") == 1 and "second table" in text and "first table" not in text
    assert text.startswith("# Page\n\nintro\n") and "<!-- other:start -->\nkept\n<!-- other:end -->" in text
