"""The one base class of user errors (bad input, a missing file or model, an extra not installed), and the one
kind of it a loader names its checkpoint for.

The CLI and the Space catch `OneNetError` and only it, showing its one-line message; any other exception is
a bug and shows a traceback. It subclasses `ValueError`, so `except ValueError` keeps working.
"""

from __future__ import annotations


class OneNetError(ValueError):
    """Something the caller can fix; the message names what and how."""


class ConfigValueError(OneNetError):
    """A config.json value out of its range: a damaged or hostile checkpoint, named as such where it loads."""


__all__ = ["ConfigValueError", "OneNetError"]
