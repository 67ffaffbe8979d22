"""Peak memory of loading one large image (`load_image`), each case in a fresh subprocess; with --commands, the
peak of whole `onenet` commands on the worst accepted images and at the largest optimisation settings allowed.

python -m bench.speed.image_memory [--megapixels 88.4 40 24] [--commands --model checkpoints/onenet-flickr8k]
Writes test images to a temporary folder: RGBA PNGs (the worst common case: decoded at 4 bytes a pixel),
a palette PNG, a large JPEG and elongated images (a float TIFF, an RGBA PNG and a JPEG, each about 40
megapixels on a short side of 1,000 pixels or less); prints each case's peak resident memory above the process's
baseline (Linux VmHWM, reset after importing onenet_hf) and the time, from this one run. --commands runs each
command in a child process and prints its whole peak resident memory (the child's ru_maxrss, from wait4), then
the fit points of the optimisation uses' memory estimate (`fit_points`, run past the memory check).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PROBE = """
import sys, time
from onenet_hf.images import ImageLoadError, load_image

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
print(f"peak {(peak - before) / 1024:5.0f} MiB above the {before / 1024:.0f} MiB before, {seconds:5.2f} s, {outcome}")
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


def make_elongated(folder: Path) -> list[Path]:
    """Thin images within the pixel limit, their short side under the old reduction threshold (2,048 pixels)."""
    cases = [
        ("float-39990x1000.tif", Image.new("F", (39_990, 1_000), 0.5), {"compression": "tiff_deflate"}),
        ("rgba-40000x1000.png", Image.new("RGBA", (40_000, 1_000), (200, 30, 30, 255)), {"compress_level": 1}),
        ("jpeg-60000x650.jpg", Image.new("RGB", (60_000, 650), (127, 127, 127)), {"quality": 90}),
    ]
    for name, image, options in cases:
        image.save(folder / name, **options)
    return [folder / name for name, _, _ in cases]


def peak_of(command: list[str]) -> tuple[int, float, str]:
    """A command's peak resident memory (MiB, its own ru_maxrss), its seconds, and its last line of output."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    last = (output.strip().splitlines() or [""])[-1].split("\r")[-1][:90]
    return usage.ru_maxrss // 1024, time.perf_counter() - start, f"rc {child.returncode}: {last}"


def commands(folder: Path, model: str, tiff: Path) -> list[list[str]]:
    """Every command that loads an image, on the float TIFF, and the optimisation uses at their largest
    settings within the memory check (`create.memory.largest_size`)."""
    from onenet_hf.create.memory import largest_size
    from onenet_hf.images import load_image

    photo = load_image(tiff).size  # dream and style check the photo as loaded (reduced to about a megapixel)
    m, out = ["--model", model], str(folder / "out.png")
    square, eight, dream = str(largest_size()), str(largest_size(images=8)), str(largest_size(photo))
    return [
        ["caption", *m, str(tiff)],
        ["tag", *m, str(tiff)],
        ["layers", *m, str(tiff), "--out", str(folder / "layers")],
        ["explain", *m, str(tiff), "--out", str(folder / "explain")],
        ["dream", *m, str(tiff), "--steps", "3", "--out", out],
        ["dream", *m, str(tiff), "--steps", "3", "--size", dream, "--out", out],
        ["dream", *m, str(tiff), "--steps", "6", "--octaves", "6", "--size", dream, "--out", out],
        ["style", *m, str(tiff), str(tiff), "--steps", "2", "--out", out],
        ["style", *m, str(tiff), str(tiff), "--steps", "2", "--size", dream, "--out", out],
        ["visualize", *m, "--class", "1", "--steps", "2", "--size", square, "--out", out],
        ["visualize", *m, "--class", "1", "--steps", "2", "--size", eight, "--images", "8", "--out", out],
        ["visualize", *m, "--class", "1", "--steps", "2", "--size", "1024", "--images", "8", "--out", out],
        ["imagine", *m, "a dog runs", "--steps", "2", "--size", square, "--out", out],
    ]


# The peaks `create.memory.MEMORY_BASE_MB` and `MEMORY_MB_PER_MEGAPIXEL` are fitted to: square images
# optimised at once (260x260, 512x512, 2 x 512x512; dream and style on a square photo), run with the memory
# check lifted, as the last visualize is over the budget that the fit sets.
UNCHECKED = (
    "import sys; from onenet_hf.create import memory; memory.MEMORY_BUDGET_MB = float('inf'); "
    "from onenet_hf.cli import main; sys.exit(main(sys.argv[1:]))"
)


def fit_points(folder: Path, model: str, square: Path) -> list[list[str]]:
    """The commands whose peaks the memory estimate is fitted to, on `square` (a square photo)."""
    m, out = ["--model", model], str(folder / "out.png")
    return [
        ["visualize", *m, "--class", "1", "--steps", "2", "--size", "260", "--out", out],
        ["visualize", *m, "--class", "1", "--steps", "2", "--size", "512", "--out", out],
        ["visualize", *m, "--class", "1", "--steps", "2", "--size", "512", "--images", "2", "--out", out],
        ["dream", *m, str(square), "--steps", "3", "--size", "512", "--out", out],
        ["style", *m, str(square), str(square), "--steps", "2", "--size", "512", "--out", out],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megapixels", type=float, nargs="+", default=[88.4, 40.0, 24.0])
    parser.add_argument("--palette-megapixels", type=float, default=40.0)
    parser.add_argument("--jpeg-megapixels", type=float, default=88.4)
    parser.add_argument("--commands", action="store_true", help="also measure whole onenet commands")
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k", help="the checkpoint --commands use")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [make(Path(tmp), "rgba", mp) for mp in args.megapixels]
        cases += [make(Path(tmp), "palette", args.palette_megapixels), make(Path(tmp), "jpeg", args.jpeg_megapixels)]
        cases += make_elongated(Path(tmp))
        for path in cases:
            result = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True)
            size = path.stat().st_size / 1e6
            print(f"{path.name:28s} {size:6.1f} MB file: {(result.stdout or result.stderr).strip()}", flush=True)
        if args.commands:
            tiff, square = Path(tmp) / "float-39990x1000.tif", Path(tmp) / "square-1024x1024.jpg"
            Image.fromarray(np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(square)
            runs = [(["onenet"], command, "") for command in commands(Path(tmp), args.model, tiff)]
            unchecked = [sys.executable, "-c", UNCHECKED]
            runs += [(unchecked, command, ", fit point") for command in fit_points(Path(tmp), args.model, square)]
            for runner, command, kind in runs:
                peak, seconds, outcome = peak_of([*runner, *command])
                shown = " ".join(Path(part).name if part in (str(tiff), str(square)) else part for part in command[3:])
                shown = f"onenet {command[0]} {shown.replace(tmp, '')}"
                print(f"peak {peak:5d} MiB {seconds:5.1f} s  {shown}  ({outcome}{kind})", flush=True)


if __name__ == "__main__":
    main()
