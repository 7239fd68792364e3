"""The one-line error text every user-facing error is built from."""

from __future__ import annotations

from litvision.support.errors import first_line


def test_first_line_is_the_first_non_blank_line_cut_to_the_limit():
    error = OSError("\n  cannot identify image file 'x.png'  \nTraceback detail\n")
    assert first_line(error) == "cannot identify image file 'x.png'"
    assert first_line(error, typed=True) == "OSError: cannot identify image file 'x.png'"
    assert first_line(ValueError("x" * 500)) == "x" * 200
    assert first_line(ValueError("x" * 500), limit=None) == "x" * 500


def test_an_empty_message_gives_the_type_name():
    assert first_line(EOFError()) == "EOFError"
    assert first_line(KeyError(""), typed=True) == "KeyError: ''"  # KeyError quotes its key
    assert first_line(RuntimeError("  \n "), typed=True) == "RuntimeError"
