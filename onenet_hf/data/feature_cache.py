"""Backbone feature cache: the frozen backbone runs once per image, and training reads the cached grids."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import OneNetError
from ..fingerprint import file_hash
from ..image_processing_onenet import OneNetImageProcessor
from ..modeling_onenet import OneNetModel, backbone_weights_file
from ..options import DEFAULT_CACHE_DIR

if TYPE_CHECKING:
    from ..utils.distributed import Processes

SHARE_MARKER = "share-of"  # in a share cache made to be merged: the merged cache's folder name


def backbone_identity(model: OneNetModel, image_processor: OneNetImageProcessor) -> str:
    """Hash of what determines the features: backbone name, its weight file and the preprocessing."""
    digest = hashlib.sha256(model.config.backbone_name.encode())
    digest.update(Path(backbone_weights_file(model.config.backbone_name)).read_bytes())
    digest.update(json.dumps(image_processor.to_dict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def feature_cache_key(
    model: OneNetModel, image_processor: OneNetImageProcessor, paths: Sequence[Path], horizontal_flip: bool
) -> str:
    """Name of the cache folder: backbone identity, view, and every file's path and content hash."""
    key = hashlib.sha256(backbone_identity(model, image_processor).encode())
    key.update(b"flipped" if horizontal_flip else b"")
    for path in paths:  # a changed file gets fresh features
        key.update(f"{path.resolve()}\t{file_hash(path)}\n".encode())
    return key.hexdigest()[:20]


class _PixelDataset(Dataset):
    def __init__(self, paths: Sequence[Path], image_processor: OneNetImageProcessor, horizontal_flip: bool):
        self.paths, self.image_processor, self.horizontal_flip = paths, image_processor, horizontal_flip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        pixels = self.image_processor(self.paths[index], return_tensors="pt")["pixel_values"][0]
        return pixels.flip(-1) if self.horizontal_flip else pixels


@torch.inference_mode()
def cached_backbone_features(
    model: OneNetModel,
    image_processor: OneNetImageProcessor,
    paths: Sequence[str | Path],
    cache_dir: str | Path,
    batch_size: int = 32,
    horizontal_flip: bool = False,
) -> np.ndarray:
    """Backbone feature grids (N, C, H, W) in fp16 for `paths`, computed once and memory-mapped afterwards.

    The cache folder is keyed by the backbone identity and the list of files (path and content hash), so a
    changed backbone, preprocessing or image never reuses stale features, while a re-copied dataset (new
    modification times, same bytes) still does. An interrupted
    run resumes from the last finished batch. `horizontal_flip` caches the mirrored images (augmentation).

    Computing features leaves the global torch generator as it was: the `DataLoader` has its own generator
    (without one, it draws its workers' base seed from the global generator, so a cold cache shifted every random
    draw after it and a training run from an empty cache differed from one from a full cache).

    The grids are bit-identical between runs on one machine, interrupted or not, but not across setups: on a CPU
    another batch size (which images share a batch) or another thread count changes the last bits of some fp32
    values, and so some fp16 values. A resumed extraction computes the same batches (the finished ones are a
    prefix of whole batches of `batch_size`, and the remaining ones follow in the same order), so its grids equal
    an uninterrupted one's as long as `batch_size` and the thread count stay the same. The cache key holds
    neither, nor the device.
    """
    paths = [Path(path) for path in paths]
    folder = Path(cache_dir) / feature_cache_key(model, image_processor, paths, horizontal_flip)
    folder.mkdir(parents=True, exist_ok=True)
    features_file, done_file = folder / "features.npy", folder / "done.npy"
    if (folder / "complete").exists():
        return np.load(features_file, mmap_mode="r")

    size = image_processor.size
    probe = model.get_backbone_features(torch.zeros(1, 3, size["height"], size["width"]))
    shape = (len(paths), *probe.shape[1:])
    if features_file.exists() and done_file.exists():
        features, done = open_memmap(features_file, mode="r+"), np.load(done_file)
    else:
        features = open_memmap(features_file, mode="w+", dtype=np.float16, shape=shape)
        done = np.zeros(len(paths), dtype=bool)
    todo = np.flatnonzero(~done)
    loader = DataLoader(
        _PixelDataset([paths[i] for i in todo], image_processor, horizontal_flip),
        batch_size=batch_size,
        num_workers=1,
        generator=torch.Generator().manual_seed(0),  # not the global generator: see the docstring
    )
    with tqdm(
        total=len(paths),
        initial=len(paths) - len(todo),
        desc="backbone features" + (" (flipped)" if horizontal_flip else ""),
        unit="img",
    ) as bar:
        for start, pixel_values in zip(range(0, len(todo), batch_size), loader, strict=True):
            indices = todo[start : start + batch_size]
            features[indices] = model.get_backbone_features(pixel_values).cpu().numpy().astype(np.float16)
            features.flush()
            done[indices] = True
            np.save(done_file, done)
            bar.update(len(indices))
    (folder / "complete").write_text(json.dumps({"images": len(paths), "shape": list(shape)}))
    done_file.unlink()
    return np.load(features_file, mmap_mode="r")


def _merge_shares(folder: Path, shares: list[np.ndarray], share_folders: list[Path], images: int) -> None:
    """Write the share caches' grids, in share order, as the cache of all `images`; then delete the share caches
    this run made (`SHARE_MARKER`). Every memory map is closed before its files go (NFS keeps open files)."""
    folder.mkdir(parents=True, exist_ok=True)
    first = np.load(share_folders[0] / "features.npy", mmap_mode="r")
    dtype, grid = first.dtype, first.shape[1:]
    del first
    merged = open_memmap(folder / "features.npy", mode="w+", dtype=dtype, shape=(images, *grid))
    for share, share_folder in zip(shares, share_folders, strict=True):
        merged[share] = np.load(share_folder / "features.npy", mmap_mode="r")
    merged.flush()
    shape = list(merged.shape)
    del merged
    (folder / "complete").write_text(json.dumps({"images": images, "shape": shape}))
    for share_folder in share_folders:
        marker = share_folder / SHARE_MARKER
        if marker.is_file() and marker.read_text() == folder.name:
            shutil.rmtree(share_folder)


def shared_backbone_features(
    model: OneNetModel,
    image_processor: OneNetImageProcessor,
    paths: Sequence[str | Path],
    cache_dir: str | Path,
    processes: Processes,
    horizontal_flip: bool = False,
) -> np.ndarray:
    """`cached_backbone_features` of a run of several processes (`utils.distributed.Processes`): each extracts a
    contiguous share of `paths` into a cache of its own, then the main process merges the shares into the cache
    of all of them and deletes the share caches this merge made (marked `SHARE_MARKER`; a share cache that was
    there before is someone's own and stays). Every process then reads the merged cache. Alone, or with fewer
    images than processes, it is `cached_backbone_features` (the main process first). The merged grids equal a
    one-process extraction's up to the last bits (which images share a batch differs). `cache_dir` must be one
    folder every process sees."""
    paths = [Path(path) for path in paths]
    if processes.count == 1:
        return cached_backbone_features(model, image_processor, paths, cache_dir, horizontal_flip=horizontal_flip)
    if len(paths) < processes.count:
        with processes.main_first("extracting backbone features"):
            return cached_backbone_features(model, image_processor, paths, cache_dir, horizontal_flip=horizontal_flip)
    with processes.shared_outcome("hashing the images"):
        folder = Path(cache_dir) / feature_cache_key(model, image_processor, paths, horizontal_flip)
    shared = f"the feature cache {folder} (--cache-dir must be one folder every process sees)"
    if not processes.agree((folder / "complete").exists(), shared):
        shares = np.array_split(np.arange(len(paths)), processes.count)
        share_paths = [[paths[i] for i in share] for share in shares]
        with processes.shared_outcome("extracting backbone features"):  # every share done before any merge
            share_folders = [
                Path(cache_dir) / feature_cache_key(model, image_processor, share, horizontal_flip)
                for share in share_paths
            ]
            mine = share_folders[processes.index]
            if not (mine / "complete").exists():
                mine.mkdir(parents=True, exist_ok=True)
                (mine / SHARE_MARKER).write_text(folder.name)
            own = share_paths[processes.index]
            cached_backbone_features(model, image_processor, own, cache_dir, horizontal_flip=horizontal_flip)
        if not processes.agree(all((f / "complete").exists() for f in share_folders), shared):
            raise OneNetError(f"{shared}: no process sees every share of it")
        with processes.shared_outcome(f"merging the feature shares into {folder}"):
            if processes.is_main:
                _merge_shares(folder, shares, share_folders, len(paths))
        if not processes.agree((folder / "complete").exists(), shared):
            raise OneNetError(f"{shared}: the merged cache is missing")
    return np.load(folder / "features.npy", mmap_mode="r")


__all__ = [
    "DEFAULT_CACHE_DIR",
    "backbone_identity",
    "cached_backbone_features",
    "feature_cache_key",
    "shared_backbone_features",
]
