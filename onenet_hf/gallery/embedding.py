"""Gallery files into rows: each image's gallery vectors (`OneNetModel.get_gallery_embeds`), batch by batch, with
a loader thread reading a batch ahead; PyTorch or the exported gallery encoder. Builds and queries share it."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..representations import ARRAY_DTYPES

if TYPE_CHECKING:
    import torch

    from ..onnx.backend import OnnxOneNetBackend
    from ..onnx.graphs import OnnxGalleryEncoder


PREFETCH_BATCHES = 2  # batches the loader thread reads ahead of the network


def embed_images(
    model, processor, images: Sequence, image_encoder: OnnxOneNetBackend | None = None
) -> dict[str, np.ndarray]:
    """Each image's gallery vectors (`OneNetModel.get_gallery_embeds`) as arrays; pooled features in fp16.
    `image_encoder`: an ONNX backend whose export gives pooled features runs the backbone."""
    return embed_pixels(model, processor(images=list(images))["pixel_values"], image_encoder)


def embed_pixels(
    model, pixel_values: torch.Tensor, image_encoder: OnnxOneNetBackend | None = None
) -> dict[str, np.ndarray]:
    """`embed_images` of preprocessed images (the indexing loader preprocesses a batch ahead, in a thread)."""
    import torch  # here: listing images and checking folders (the CLI does, before a model loads) need no torch

    with torch.inference_mode():
        if image_encoder is None:
            embeds = model.get_gallery_embeds(pixel_values)
        else:
            image_embeds, pooled = image_encoder.get_image_and_pooled_features(pixel_values)
            embeds = model.get_gallery_embeds(image_embeds=image_embeds, pooled_features=pooled)
    return {
        name: tensor.float().cpu().numpy().astype(ARRAY_DTYPES[name], copy=False) for name, tensor in embeds.items()
    }


@dataclass
class GalleryFile:
    """A file a build considers: the path the index stores (`key`, the real path), the path it was listed by
    (`listed`, for the skipped list) and what `os.stat` said of it (size, modification time)."""

    key: str
    listed: str
    size: int
    mtime_ns: int


@dataclass
class Embedder:
    """How a build turns gallery files into rows in this process: `prepare` reads a batch (decoding, resizing;
    run in a loader thread a batch ahead, so decoding overlaps the network), `embed` makes its arrays (rows of
    the readable files) and says why the others failed: (file, reason) pairs. `ray_indexing.RayEmbedder` is the
    same contract (`run`) on a Ray cluster."""

    prepare: Callable[[list[GalleryFile]], object]
    embed: Callable[[object], tuple[dict[str, np.ndarray], list[tuple[GalleryFile, str]]]]
    description: str = "this process"  # which network embeds, as `onenet index` reports it

    def run(
        self, files: Sequence[GalleryFile], batch_size: int
    ) -> Iterator[tuple[list[int], dict[str, np.ndarray], list[tuple[GalleryFile, str]]]]:
        """Batch by batch: the indices (into `files`) of the rows embedded, their arrays, and the failures."""
        starts = range(0, len(files), batch_size)
        batches = [list(files[start : start + batch_size]) for start in starts]
        with ThreadPoolExecutor(1, thread_name_prefix="onenet-index-loader") as loader:
            ahead = deque(loader.submit(self.prepare, batch) for batch in batches[:PREFETCH_BATCHES])
            for number, (start, batch) in enumerate(zip(starts, batches, strict=True)):
                prepared = ahead.popleft().result()
                if number + PREFETCH_BATCHES < len(batches):
                    ahead.append(loader.submit(self.prepare, batches[number + PREFETCH_BATCHES]))
                arrays, failed = self.embed(prepared)
                bad = {item.key for item, _ in failed}
                yield [start + offset for offset, item in enumerate(batch) if item.key not in bad], arrays, failed


def local_embedder(model, processor) -> Embedder:
    """The Embedder of a loaded PyTorch model: `load_image` and the processor prepare, `embed_pixels` embeds;
    unreadable files are failures with their reason."""

    def embed(prepared):
        pixels, failed = prepared
        return (embed_pixels(model, pixels) if pixels is not None else {}), failed

    return Embedder(
        lambda batch: _prepare(batch, lambda images: processor(images=images)["pixel_values"]), embed, "PyTorch"
    )


def onnx_embedder(encoder: OnnxGalleryEncoder) -> Embedder:
    """The Embedder of an exported gallery encoder: the same loading and pixels as `local_embedder`, every array
    from one onnxruntime run, no PyTorch."""
    from ..images import pixel_values

    def embed(prepared):
        pixels, failed = prepared
        return (encoder.embed(pixels) if pixels is not None else {}), failed

    def prepare(batch: list[GalleryFile]):
        return _prepare(batch, pixel_values)

    return Embedder(prepare, embed, f"onnxruntime, {encoder.file}")


def _prepare(batch: list[GalleryFile], to_pixels: Callable) -> tuple[object, list[tuple[GalleryFile, str]]]:
    """A batch's pixels (`to_pixels` of the images that load) and its failures, (file, reason) pairs."""
    from ..images import ImageLoadError, load_image

    loaded, failed = [], []
    for item in batch:
        try:
            loaded.append(load_image(item.key))
        except ImageLoadError as error:
            failed.append((item, str(error)))
        except OSError as error:
            failed.append((item, f"{item.listed}: {error.strerror or error}"))
    return (to_pixels(loaded) if loaded else None), failed


__all__ = ["Embedder", "GalleryFile", "embed_images", "embed_pixels", "local_embedder", "onnx_embedder"]
