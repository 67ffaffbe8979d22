"""ONNX export of OneNet: `python -m export CHECKPOINT --out DIR` (also `onenet export`).

`export_onnx` needs the `onnx` extra; it is imported on first use, so `import export` works without it.
"""

from onenet_hf.onnx_backend import MANIFEST_FILE

# photos the static int8 image encoder calibrates its activation scales on (and its bias correction reads the
# first 512 of): 1,024 train photos kept dev captions closer to fp32 than 256 did (README, "Fast embedding")
CALIBRATION_IMAGES = 1_024
MAX_CALIBRATION_IMAGES = 5_000

__all__ = ["CALIBRATION_IMAGES", "MANIFEST_FILE", "MAX_CALIBRATION_IMAGES", "export_onnx"]


def __getattr__(name: str):
    if name == "export_onnx":
        from onenet_hf.extras import require

        require("onnx", "onnx", "ONNX export")
        require("onnxruntime", "onnx", "ONNX export (int8 quantisation)")
        from .onnx_export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'export' has no attribute {name!r}")
