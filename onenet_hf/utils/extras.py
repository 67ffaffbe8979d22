"""Optional extras (onnx, onnxruntime, gradio, ...) are imported only where used; a missing one is one clear line."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import OneNetError


class MissingExtraError(OneNetError, ImportError):
    """A command needs an optional dependency that is not installed; the message names the extra to install."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module` for `purpose`, or raise `MissingExtraError` saying `pip install 'onenet_hf[extra]'`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{purpose} needs {module}: pip install 'onenet_hf[{extra}]'") from None


__all__ = ["MissingExtraError", "require"]
