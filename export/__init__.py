"""ONNX export of OneNet: `python -m export CHECKPOINT --out DIR` (also `onenet export`).

`export_onnx` needs the `onnx` extra; it is imported on first use, so `import export` works without it.
"""

from onenet_hf.onnx_backend import MANIFEST_FILE

__all__ = ["MANIFEST_FILE", "export_onnx"]


def __getattr__(name: str):
    if name == "export_onnx":
        from onenet_hf.extras import require

        require("onnx", "onnx", "ONNX export")
        require("onnxruntime", "onnx", "ONNX export (int8 quantisation)")
        from .onnx_export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'export' has no attribute {name!r}")
