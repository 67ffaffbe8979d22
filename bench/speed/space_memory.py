"""The Space's peak memory under 20 visitors of its heaviest requests, on the largest images it accepts.

    python -m bench.speed.space_memory --output bench/results/space_memory/space_memory_1.json
    python -m bench.speed.space_memory --malloc-arenas 0      # glibc's default arenas, to compare

Starts `spaces/app.py` (the example gallery), then 20 gradio_client visitors at once, 3 calls each, from a fixed
plan per visitor: captions at beam 8 and 3, tags, explain, layer by layer, similar images, DeepDream, visualize,
imagine and style transfer with few steps, every image one of four elongated ones the pixel budget reduces (a float
TIFF of 39,990 x 1,000, RGBA PNGs of 40,000 x 1,000 and 65,500 x 600, a JPEG of 60,000 x 650). The server's
resident memory is sampled every 0.2 s; its peak (VmHWM) and the memory before the visitors are reported, with
each call's outcome and the wall time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from gradio_client import Client, handle_file
from PIL import Image

from bench.common import ROOT, write_result
from bench.speed.space_load import peak_memory_mb, serve

VISITORS, CALLS = 20, 3


def elongated_images(folder: Path) -> list[str]:
    """Four images within every limit whose long side is far longer than the short one."""
    images = {
        "float-39990x1000.tif": (Image.new("F", (39_990, 1_000), 0.5), {"compression": "tiff_deflate"}),
        "rgba-40000x1000.png": (Image.new("RGBA", (40_000, 1_000), (200, 30, 30, 255)), {"compress_level": 1}),
        "jpeg-60000x650.jpg": (Image.new("RGB", (60_000, 650), (127, 127, 127)), {"quality": 90}),
        "rgba-65500x600.png": (Image.new("RGBA", (65_500, 600), (9, 9, 9, 128)), {"compress_level": 9}),
    }
    for name, (image, options) in images.items():
        image.save(folder / name, **options)
    return [str(folder / name) for name in images]


def plan(visitor: int, images: list[str]) -> list[tuple[str, dict]]:
    """The three calls of one visitor: five plans in turn, each image a different one of the four."""

    def image(k: int):
        return handle_file(images[(visitor + k) % len(images)])

    plans = [
        [("caption", {"image": image(0), "beam_size": 8}), ("dream", {"image": image(1), "steps": 3}),
         ("explain", {"image": image(2), "caption": ""})],
        [("similar_images", {"image": image(0), "row": None, "k": 6, "focus_class": ""}),
         ("caption", {"image": image(1), "beam_size": 3}), ("dream", {"image": image(2), "strength": 2.0, "steps": 4})],
        [("explain", {"image": image(0), "caption": ""}),
         ("similar_images", {"image": image(1), "row": None, "k": 20, "focus_class": ""}),
         ("caption", {"image": image(2), "beam_size": 8})],
        [("tag", {"image": image(0), "k": 5}), ("visualize", {"kind": "class", "target": "207", "steps": 3}),
         ("style", {"content": image(1), "style_image": image(2), "style_weight": 10, "steps": 2})],
        [("layers", {"image": image(0)}), ("imagine", {"text": "a dog runs on the beach", "steps": 3}),
         ("dream", {"image": image(1), "steps": 3})],
    ]  # fmt: skip
    return plans[visitor % len(plans)]


def resident_mb(pid: int) -> float:
    """The process's resident memory now (Linux VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "onenet-flickr8k"))
    parser.add_argument("--port", type=int, default=7877)
    help_text = "MALLOC_ARENA_MAX for the server (0: glibc's default; the Space sets 2 itself otherwise)"
    parser.add_argument("--malloc-arenas", type=int, default=None, help=help_text)
    parser.add_argument("--output")
    args = parser.parse_args()
    images = elongated_images(Path(tempfile.mkdtemp(prefix="space-memory-")))
    if args.malloc_arenas is not None:  # read by glibc at the server's start; 0 leaves its default
        os.environ["MALLOC_ARENA_MAX"] = str(args.malloc_arenas or 8 * os.cpu_count())
    server = serve(ROOT, args.model, args.port, [])
    url = f"http://127.0.0.1:{args.port}/"
    before, samples, stop = resident_mb(server.pid), [], threading.Event()
    outcomes, lock = [], threading.Lock()

    def sample() -> None:
        while not stop.is_set():
            samples.append(resident_mb(server.pid))
            time.sleep(0.2)

    def visit(visitor: int) -> None:
        client = Client(url, verbose=False, download_files=False)
        for name, arguments in plan(visitor, images):
            started = time.perf_counter()
            try:
                client.submit(api_name=f"/{name}", **arguments).result(timeout=300)
                outcome = "ok"
            except Exception as error:  # noqa: BLE001 - recorded, the run goes on
                outcome = f"{type(error).__name__}: {str(error)[:200]}"
            with lock:
                outcomes.append({"visitor": visitor, "call": name, "outcome": outcome,
                                 "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip

    started = time.perf_counter()
    threading.Thread(target=sample, daemon=True).start()
    visitors = [threading.Thread(target=visit, args=(i,)) for i in range(VISITORS)]
    for thread in visitors:
        thread.start()
    for thread in visitors:
        thread.join()
    wall = time.perf_counter() - started
    stop.set()
    peak = peak_memory_mb(server.pid)
    server.terminate()
    server.wait(timeout=120)
    failed = [o for o in outcomes if o["outcome"] != "ok"]
    result = {
        "visitors": VISITORS, "calls_per_visitor": CALLS,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX", "the Space's own (2)"),
        "resident_mb_before": round(before), "peak_resident_mb": round(peak),
        "largest_sampled_mb": round(max(samples, default=0.0)), "wall_s": round(wall, 1),
        "calls": len(outcomes), "failed": len(failed), "outcomes": outcomes,
    }  # fmt: skip
    print(f"before {before:.0f} MB, peak {peak:.0f} MB, {len(outcomes)} calls, {len(failed)} failed, {wall:.1f} s")
    for failure in failed:
        print(failure)
    if args.output:
        write_result(result, args.output)


if __name__ == "__main__":
    main()
