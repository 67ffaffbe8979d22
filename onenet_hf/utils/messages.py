"""How user input and file names appear in what OneNet prints: echoed input shortened, one line per result."""

from __future__ import annotations

import os
import re

ECHO_CHARACTERS = 40  # of a user's input quoted back in an error message
REASON_CHARACTERS = 200  # of an underlying error's message quoted as the reason in ours
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


def first_line(error: BaseException) -> str:
    """An underlying error as the reason in a one-line message: its first line, cut to REASON_CHARACTERS, or
    its type's name when it says nothing."""
    text = str(error)
    return text.splitlines()[0][:REASON_CHARACTERS] if text.strip() else type(error).__name__


def printable_path(path: str | os.PathLike) -> str:
    """A path as text: a name that is not valid UTF-8 (Python reads its bytes as surrogate escapes, which SQLite and
    any UTF-8 output refuse) with those bytes written `\\xe9`; any other path as it is."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


__all__ = ["ECHO_CHARACTERS", "REASON_CHARACTERS", "escape_controls", "first_line", "printable_path", "shorten"]
