"""The one rule for the uses' whole-number options (beam size, k, steps, seeds, ...): one test, one message."""

from __future__ import annotations

from numbers import Integral

from ..errors import OneNetError


def check_integer(name: str, value: object, low: int, high: int, low_text: str = "", high_text: str = "") -> int:
    """`value` as an int when it is a whole number (numpy's too, never a bool) from `low` to `high`; otherwise one
    `OneNetError` naming the option, its range (`low_text` / `high_text` where a number says too little) and the
    value given."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not low <= value <= high:
        bounds = f"{low_text or f'{low:,}'} to {high_text or f'{high:,}'}"
        given = str(value) if isinstance(value, Integral) else repr(value)  # "5", the text, shows as '5'
        raise OneNetError(f"{name} must be an integer from {bounds}, got {given[:20]}")
    return int(value)


__all__ = ["check_integer"]
