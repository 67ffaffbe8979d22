"""ONNX export of OneNet: `python -m export CHECKPOINT --out DIR` (also `onenet export`)."""

from .onnx_export import MANIFEST_FILE, export_onnx

__all__ = ["MANIFEST_FILE", "export_onnx"]
