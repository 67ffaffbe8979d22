"""Peak memory of loading one large image (`load_image`), each case in a fresh subprocess.

python bench/image_memory.py [--megapixels 88.4 40 24]
Writes test images to a temporary folder: RGBA PNGs (the worst common case: decoded at 4 bytes a pixel),
a palette PNG and a large JPEG; prints each case's peak resident memory above the process's baseline
(Linux VmHWM, reset after importing onenet_hf) and the time, from this one run.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

PROBE = """
import sys, time
from onenet_hf.image_processing_onenet import ImageLoadError, load_image

def status(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

open("/proc/self/clear_refs", "w").write("5")  # Linux: reset the peak (VmHWM) to the current resident size
before = status("VmRSS:")
start = time.perf_counter()
try:
    image = load_image(sys.argv[1]); outcome = f"loaded as {image.width}x{image.height}"
except ImageLoadError as error:
    outcome = f"refused: {str(error).split(': ', 1)[1][:90]}"
seconds = time.perf_counter() - start
peak = status("VmHWM:")
print(f"peak {(peak - before) / 1024:5.0f} MB above the {before / 1024:.0f} MB before, {seconds:5.2f} s, {outcome}")
"""


def side(megapixels: float) -> int:
    return int(math.sqrt(megapixels * 1e6))


def make(folder: Path, kind: str, megapixels: float) -> Path:
    """A mostly flat image (tiny file, full decode cost): the decompression bomb's shape."""
    n = side(megapixels)
    path = folder / f"{kind}-{n}x{n}.{'jpg' if kind == 'jpeg' else 'png'}"
    if kind == "rgba":
        image = Image.new("RGBA", (n, n), (200, 30, 30, 255))
    elif kind == "palette":
        image = Image.new("P", (n, n), 1)
    else:
        image = Image.fromarray(np.full((n, n, 3), 127, dtype=np.uint8))
    image.save(path, **({"quality": 90} if kind == "jpeg" else {"compress_level": 1}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megapixels", type=float, nargs="+", default=[88.4, 40.0, 24.0])
    parser.add_argument("--palette-megapixels", type=float, default=40.0)
    parser.add_argument("--jpeg-megapixels", type=float, default=88.4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [make(Path(tmp), "rgba", mp) for mp in args.megapixels]
        cases += [make(Path(tmp), "palette", args.palette_megapixels), make(Path(tmp), "jpeg", args.jpeg_megapixels)]
        for path in cases:
            result = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True)
            size = path.stat().st_size / 1e6
            print(f"{path.name:28s} {size:6.1f} MB file: {(result.stdout or result.stderr).strip()}", flush=True)


if __name__ == "__main__":
    main()
