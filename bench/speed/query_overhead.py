"""How much of a gallery query is OneNet's own Python, not faiss's search: per-query milliseconds of
`GalleryIndex.nearest` against the large shard's `ShardAnn.search` and faiss's bare `search`, on a fresh index and
after adding then deleting 1,000 images (a second, exactly searched shard and dead rows in the first), with
Python's garbage collector on and off; each state timed `--passes` times (a list per state). Random clustered
vectors (no model needed), built through the same code path as bench/speed/gallery_scale.py; one thread.
Run: python -m bench.speed.query_overhead --size 100000 --passes 2 \
    --output bench/results/query_overhead/query_overhead_2.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import faiss
import numpy as np

from bench.common import write_result
from bench.speed.gallery_scale import InjectedGallery, query_split
from onenet_hf.gallery.index import EXACT_SEARCH_MAX_IMAGES

MAX_SIZE = 2_000_000
CHANGES = 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000, help=f"gallery size (at most {MAX_SIZE:,})")
    parser.add_argument("--passes", type=int, default=1, help="timed passes over the queries per state (at most 5)")
    parser.add_argument("--workdir", default="/tmp/onenet-query-overhead", help="index folder (deleted first)")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    if not EXACT_SEARCH_MAX_IMAGES < args.size <= MAX_SIZE:
        parser.error(f"--size must be above {EXACT_SEARCH_MAX_IMAGES:,} (an ANN shard) and at most {MAX_SIZE:,}")
    if not 1 <= args.passes <= 5:
        parser.error("--passes must be 1 to 5")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, 512)).astype(np.float32)
    vectors = centres[rng.integers(0, 2000, args.size + CHANGES)]
    vectors += 0.7 * rng.standard_normal(vectors.shape).astype(np.float32)
    sizes = {"pooled_features": 1280, "retrieval_embeds": 256, "tag_embeds": 256}
    others = {name: rng.standard_normal((100, size)).astype(np.float32) for name, size in sizes.items()}
    gallery, folder = InjectedGallery(vectors, others), Path(args.workdir)
    if folder.exists() and (folder / ".onenet-query-overhead").is_file():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".onenet-query-overhead").write_text(
        "bench/speed/query_overhead.py deletes this folder when it runs again\n"
    )
    index, _ = gallery.write(folder, range(args.size), "ivfpq")
    faiss.omp_set_num_threads(1)
    queries = vectors[rng.choice(args.size, 300)] + 0.3 * rng.standard_normal((300, 512)).astype(np.float32)
    fresh = [query_split(index, queries) for _ in range(args.passes)]
    results = {"size": args.size, "queries": len(queries), "fresh": fresh}
    gallery.write(folder, range(args.size + CHANGES), "ivfpq")
    index, _ = gallery.write(folder, range(CHANGES, args.size + CHANGES), "ivfpq")
    results["after_changes"] = [query_split(index, queries) for _ in range(args.passes)]
    print(json.dumps(results, indent=2))
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
