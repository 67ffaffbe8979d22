"""Echoed input is shortened; file names are escaped so that each result stays on one line."""

from __future__ import annotations

from onenet_hf.utils.messages import escape_controls, shorten


def test_long_input_is_shortened_when_echoed():
    assert shorten("beach") == "'beach'"
    assert shorten("x" * 10_000) == repr("x" * 40) + "…"


def test_control_characters_and_backslashes_are_escaped():
    assert escape_controls("/photos/a b/été.jpg") == "/photos/a b/été.jpg"
    assert escape_controls("new\nline\ttab\r\x1b[31m.png") == "new\\nline\\ttab\\r\\x1b[31m.png"
    assert escape_controls("back\\slash") == "back\\\\slash"  # so an escaped name and a real one never meet
