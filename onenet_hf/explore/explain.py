"""Explain: where each caption word comes from, one heat map per word (`OneNet.explain`, `onenet explain`).

Reads the backbone's last feature grid (`model.backbone`'s output, 1280 x 9 x 9 at 260 px) through the image
representation into the caption decoder. A word's heat map is Grad-CAM (captum's `LayerGradCam`, ReLU applied)
of its teacher-forced log-probability (`OneNetModel.caption_token_log_probs`) on that grid: each channel weighted
by the mean gradient of the log-probability over the grid, summed over channels, negative parts cut, and
upsampled bilinearly to the processed image (260 x 260). Our decoder has no attention; this gradient picture
takes the place of Show, Attend and Tell's attention maps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..decoding import generate_beams
from ..errors import OneNetError
from ..images import ImageLike, load_image
from ..options import check_output_folder
from ..processing_onenet import OneNetProcessor
from ..uses.caption import caption_options, sentence_token_ids
from ..utils.extras import require
from ..utils.messages import shorten
from .sheets import save_image

MAX_WORDS = 32  # heat maps per call: each word is one more copy of the grid through the decoder, with gradients
OVERLAY_ALPHA = 0.5  # weight of the colour-mapped heat map over the photo
OVERLAY_COLORMAP = "jet"


@dataclass(frozen=True, eq=False)
class WordSaliency:
    """One caption word, its teacher-forced log-probability given the image and the words before it, and its
    Grad-CAM heat map (H, W) over the processed image (the image squashed to the model's square input), >= 0."""

    word: str
    log_prob: float
    heatmap: np.ndarray

    def heatmap_at(self, size: tuple[int, int]) -> np.ndarray:
        """The heat map resized (bilinear) to `size` = (width, height), e.g. the original image's `image.size`:
        the processor squashes the whole image into its square, so a plain resize maps it back."""
        return np.asarray(Image.fromarray(self.heatmap).resize(tuple(size), Image.Resampling.BILINEAR))


@dataclass(frozen=True, eq=False)
class CaptionExplanation:
    """A caption of an image (the model's own, or one given) and one `WordSaliency` per word, in order.

    `token_ids` is `[BOS] words [EOS]` as the decoder reads it; `image` is the image as loaded (upright RGB)."""

    caption: str
    token_ids: tuple[int, ...]
    image: Image.Image
    words: tuple[WordSaliency, ...]

    def overlays(self, alpha: float = OVERLAY_ALPHA, colormap: str = OVERLAY_COLORMAP) -> list[Image.Image]:
        """One picture per word at the image's own size: its heat map in `colormap` blended over the photo."""
        return [render_overlay(self.image, word, alpha, colormap) for word in self.words]

    def save_overlays(self, folder: str | os.PathLike) -> list[Path]:
        """Write `overlays()` as `01-word.png`, `02-word.png`, ... into `folder` (created if missing), each
        atomically (a temporary file, then a rename): only these names are written, nothing is deleted."""
        folder = check_output_folder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for number, (word, picture) in enumerate(zip(self.words, self.overlays(), strict=True), 1):
            paths.append(save_image(picture, folder / f"{number:02d}-{file_word(word.word)}.png"))
        return paths


def file_word(word: str) -> str:
    """A word as a portable file-name part: ASCII letters and digits, anything else as `_`."""
    return re.sub(r"[^a-z0-9]+", "_", word.lower()).strip("_") or "word"


def render_overlay(
    image: Image.Image, word: WordSaliency, alpha: float = OVERLAY_ALPHA, colormap: str = OVERLAY_COLORMAP
) -> Image.Image:
    """The photo with one word's heat map (scaled to its own maximum) in `colormap` blended over it at `alpha`,
    and the word written in the top-left corner."""
    colormaps = require("matplotlib", "explore", "drawing heat maps").colormaps
    if colormap not in colormaps:
        raise OneNetError(f"unknown colormap {shorten(colormap)}; choose one of matplotlib's, e.g. 'jet' or 'magma'")
    heat = word.heatmap_at(image.size)
    heat = heat / heat.max() if heat.max() > 0 else heat
    colours = (colormaps[colormap](heat)[..., :3] * 255).astype(np.float32)
    photo = np.asarray(image.convert("RGB"), dtype=np.float32)
    picture = Image.fromarray(((1 - alpha) * photo + alpha * colours).round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    size = max(12, min(image.size) // 12)
    font = ImageFont.load_default(size)
    draw.text((size // 2, size // 3), word.word, fill="white", font=font, stroke_width=2, stroke_fill="black")
    return picture


def check_words(count: int) -> None:
    """At most MAX_WORDS words are explained at a time: each costs one more decoder pass with gradients."""
    if count > MAX_WORDS:
        raise OneNetError(f"the caption has {count} words; explain at most {MAX_WORDS} at a time")


def caption_token_ids(processor: OneNetProcessor, caption: str) -> list[int]:
    """`[BOS] words [EOS]` of a given caption to explain (`sentence_token_ids`), at most MAX_WORDS words."""
    if not isinstance(caption, str) or not caption.strip():
        raise OneNetError("the caption is empty: give a few words to explain, or none to explain the model's own")
    ids = sentence_token_ids(processor, caption, "caption")
    check_words(len(ids) - 2)
    return ids


def word_heatmaps(model, pixel_values: torch.Tensor, token_ids: Sequence[int]) -> torch.Tensor:
    """Grad-CAM heat maps (words, H, W) of each word's teacher-forced log-probability on the backbone's output
    grid, upsampled to the pixels' H x W, from one captum call: the grid repeated once per word, the forward
    giving every row all token log-probabilities, and row i's target its word i.

    The backbone runs once: its output grid passes through `probe`, the layer captum hooks
    (`attribute_to_layer_input`), so the gradients are those at the backbone's output. The probe is this call's
    own: a hook on a module of the shared model would also catch other threads' passes (a Space explains and
    captions at once), which broke concurrent explains."""
    captum_attr = require("captum.attr", "explore", "explaining captions")
    words = len(token_ids) - 2
    probe = torch.nn.Identity()

    def log_probs(grids: torch.Tensor) -> torch.Tensor:
        image_embeds = model.get_image_features(backbone_features=probe(grids))
        return model.caption_token_log_probs([token_ids] * len(grids), image_embeds)

    with torch.inference_mode():
        grid = model.get_backbone_features(pixel_values)
    # Callers may hold inference mode (or no_grad); the clone makes a tensor made there usable by autograd.
    with model.input_gradients():
        grids = grid.clone().repeat(words, 1, 1, 1)
        grad_cam = captum_attr.LayerGradCam(log_probs, probe)
        maps = grad_cam.attribute(
            grids, target=list(range(words)), attribute_to_layer_input=True, relu_attributions=True
        ).detach()
    return captum_attr.LayerAttribution.interpolate(maps, tuple(pixel_values.shape[-2:]), "bilinear")[:, 0].cpu()


def explain(
    model, processor: OneNetProcessor, image: ImageLike, caption: str | None = None, beam_size: int | None = None
) -> CaptionExplanation:
    """Where each word of a caption of `image` comes from: the model's own beam-search caption (`beam_size`
    defaults to the model's generation config), or `caption` when given, and one Grad-CAM heat map per word."""
    if caption is not None and beam_size is not None:
        raise OneNetError("beam_size chooses the model's own caption; leave it out when you give a caption")
    given = None if caption is None else caption_token_ids(processor, caption)  # bad input fails before the image
    options = caption_options(model, beam_size) if given is None else None
    image = load_image(image)
    pixel_values = processor(images=image)["pixel_values"]
    with torch.inference_mode():
        image_embeds = model.get_image_features(pixel_values)
        if given is None:
            words = generate_beams(model, image_embeds, options)[0].token_ids
            if not words:
                raise OneNetError("the model's caption of this image is empty; give a caption to explain")
            check_words(len(words))
            given = [options.bos_token_id, *words, options.eos_token_id]
        log_probs = model.caption_token_log_probs([given], image_embeds)[0, :-1].tolist()
    heatmaps = word_heatmaps(model, pixel_values, given).numpy()
    tokens = processor.tokenizer.convert_ids_to_tokens(given[1:-1])
    saliencies = tuple(
        WordSaliency(word, log_prob, heatmap)
        for word, log_prob, heatmap in zip(tokens, log_probs, heatmaps, strict=True)
    )
    text = processor.decode(given, skip_special_tokens=True)
    return CaptionExplanation(text, tuple(given), image, saliencies)


__all__ = [
    "MAX_WORDS",
    "CaptionExplanation",
    "WordSaliency",
    "caption_token_ids",
    "check_output_folder",
    "explain",
    "render_overlay",
    "word_heatmaps",
]
