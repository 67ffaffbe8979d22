"""How user input and file names appear in what OneNet prints: echoed input shortened, one line per result."""

from __future__ import annotations

import re

ECHO_CHARACTERS = 40  # of a user's input quoted back in an error message
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shorten(text: object, limit: int = ECHO_CHARACTERS) -> str:
    """`text` quoted (repr) for an error message, cut to `limit` characters plus "…": a 10,000-character
    word is not worth echoing back whole."""
    text = str(text)
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def escape_controls(text: str) -> str:
    """`text` with backslashes and control characters (newline, tab, ...) backslash-escaped as in a Python
    string literal (\\\\, \\n, \\t, \\r, \\x1b), so a file name never breaks a `PATH<TAB>...` line format."""
    return _CONTROL.sub(lambda match: _ESCAPES.get(match[0], f"\\x{ord(match[0]):02x}"), text)


__all__ = ["ECHO_CHARACTERS", "escape_controls", "shorten"]
