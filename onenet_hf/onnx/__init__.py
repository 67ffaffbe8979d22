"""ONNX: the export, the export as onnxruntime loads it (manifest, checks, the torch-free gallery encoder), and
the onnxruntime backend."""
