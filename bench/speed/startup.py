"""Start-up time of the commands that need no model: `onenet --help`, `onenet CMD --help`, a missing model's error,
`import onenet_hf` and the Space's `--help` (target: each under 2 s on 2 cores), as fresh processes, median of runs.

    python -m bench.speed.startup --output bench/results/startup/startup_1.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    ROOT,
    cpu_model,
    write_result,
)

COMMANDS = {
    "onenet --help": ["-m", "onenet_hf.cli", "--help"],
    "onenet caption --help": ["-m", "onenet_hf.cli", "caption", "--help"],
    "onenet index --help": ["-m", "onenet_hf.cli", "index", "--help"],
    "onenet train --help": ["-m", "onenet_hf.cli", "train", "--help"],
    "onenet caption x.jpg --model /missing": ["-m", "onenet_hf.cli", "caption", "x.jpg", "--model", "/missing"],
    "import onenet_hf": ["-c", "import onenet_hf"],
    "spaces/app.py --help": [str(ROOT / "spaces" / "app.py"), "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (after one warm-up)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    seconds = {}
    for name, command in COMMANDS.items():
        runs = []
        for _ in range(args.runs + 1):  # the first run warms the OS file cache and is not counted
            start = time.perf_counter()
            subprocess.run([sys.executable, *command], capture_output=True, timeout=300)
            runs.append(time.perf_counter() - start)
        seconds[name] = runs[1:]
        print(f"{name}: median {statistics.median(runs[1:]):.2f} s (runs {', '.join(f'{s:.2f}' for s in runs[1:])})")
    medians = {name: statistics.median(runs) for name, runs in seconds.items()}
    write_result({"cpu": cpu_model(), "python": sys.version.split()[0], "seconds": seconds, "median_s": medians},
               Path(args.output))  # fmt: skip
    print(f"slowest median {max(medians.values()):.2f} s ({cpu_model()})")


if __name__ == "__main__":
    main()
