"""Explore, neurons (`OneNet.neuron`, `OneNet.distinctive_neurons`, `onenet neuron`): what one unit of the
image representation (`index.image_embeds`, hidden_size wide: 512 in the shipped model) or one channel of the
pooled backbone features (`index.pooled_features`, 1280) stands for.

Everything is read from the vectors a gallery index stored when it was built; no gallery image is embedded again.

- Top images: the k gallery images with the largest value of the neuron (its column of the stored array).
- Words: the neuron as the caption decoder reads it. Over up to WORD_SAMPLE_IMAGES gallery images (evenly spaced
  rows), the neuron is pushed up by PUSH_STDS of its standard deviations over the gallery, and each word's change
  in log-probability is averaged over the decoding positions of the image's own greedy caption, teacher-forced
  before and after the push, then over the images (`OneNetModel.get_word_log_prob_changes`). The words that
  rise most are the ones the decoder associates with the neuron; a change is in nats (+0.69: twice as likely).
  A channel is pushed in the pooled features and followed through the projection to the representation
  (`OneNetModel.get_image_features_from_pooled`); the stored pooled features are the grid mean, what the
  shipped model (mean pooling) projects.
- Distinctive neurons of an image: those where the image stands out most from the gallery, by the z-score of
  its activation (minus the gallery mean, over the gallery standard deviation), each with its top images and
  words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..decoding import generate_beams
from ..errors import OneNetError
from ..gallery.embedding import embed_images
from ..gallery.index import GalleryIndex
from ..images import ImageLike
from ..options import MAX_NEURON_IMAGES as MAX_IMAGES
from ..options import MAX_NEURON_WORDS as MAX_WORDS
from ..options import MAX_NEURONS, NEURON_KINDS
from ..options import check_neuron_sizes as check_sizes
from ..uses.caption import caption_options
from ..uses.similar_images import gallery_row
from ..uses.words import ScoredWord
from ..utils.messages import shorten
from ..utils.ranking import top_k
from .sheets import Tile, contact_sheet, thumbnail

VECTORS = {"unit": "image_embeds", "channel": "pooled_features"}  # the gallery array each kind reads
DESCRIBED = {"unit": "the image representation", "channel": "the pooled backbone features"}
WORD_SAMPLE_IMAGES = 64  # gallery images whose captions measure words: 8-10 of the top 10 as with 150
PUSH_STDS = 3.0  # how far a neuron is pushed to measure its words, in its gallery standard deviations
SHEET_COLUMNS = (6, 10)  # a contact sheet's fewest and most columns: room for its title, not too wide


@dataclass(frozen=True)
class NeuronImage:
    """A gallery image and the neuron's value for it (its activation)."""

    path: str
    activation: float


@dataclass(frozen=True)
class Neuron:
    """One unit (of the image representation) or channel (of the pooled backbone features): its top gallery
    images, best first, and the words whose log-probability rises most when it is pushed up (`ScoredWord`:
    the mean rise in nats; none when the neuron does not vary over the gallery). `activation` and `z_score`
    are an image's, for its distinctive neurons."""

    kind: str
    number: int
    images: tuple[NeuronImage, ...]
    words: tuple[ScoredWord, ...]
    gallery_mean: float
    gallery_std: float
    activation: float | None = None
    z_score: float | None = None

    @property
    def name(self) -> str:
        """ "unit 17" or "channel 812"."""
        return f"{self.kind} {self.number}"

    def to_image(self) -> Image.Image:
        """A contact sheet: the neuron, its words, and its top images with their activations."""
        return neuron_sheet([self])


def check_gallery(index: GalleryIndex) -> None:
    """Neurons are read from gallery images: an empty index has none."""
    if len(index) == 0:
        raise OneNetError(f"the gallery index at {index.folder} is empty; index a folder of images: onenet index")


def check_neuron(index: GalleryIndex, unit: int | None, channel: int | None) -> tuple[str, int]:
    """(kind, number) of exactly one of `unit` and `channel`, in range for the index's vectors."""
    if (unit is None) == (channel is None):
        width = {kind: index.width(VECTORS[kind]) for kind in NEURON_KINDS}
        raise OneNetError(
            f"give {'one' if unit is None else 'only one'} of unit (0-{width['unit'] - 1}, {DESCRIBED['unit']}) "
            f"or channel (0-{width['channel'] - 1}, {DESCRIBED['channel']})"
        )
    kind, number = ("unit", unit) if channel is None else ("channel", channel)
    width = index.width(VECTORS[kind])
    if not isinstance(number, (int, np.integer)) or isinstance(number, bool) or not 0 <= number < width:
        raise OneNetError(f"{kind} {str(number)[:20]} does not exist: {DESCRIBED[kind]} has {kind}s 0-{width - 1}")
    return kind, int(number)


def check_kind(kind: str) -> None:
    if kind not in NEURON_KINDS:
        raise OneNetError(f"unknown neuron kind {shorten(kind)}; choose one of {NEURON_KINDS}")


def _statistics(index: GalleryIndex, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's (or channel's) mean and standard deviation over the gallery, a block at a time: the mean in one
    pass, the spread about it in a second (exactly 0 for a gallery of copies, which no neuron then stands out in)."""
    name = VECTORS[kind]
    means = sum(rows.sum(0, dtype=np.float64) for rows in index.blocks(name)) / len(index)
    squares = sum(np.square(rows - means).sum(0) for rows in index.blocks(name))
    return means, np.sqrt(squares / len(index))


def _top_images(index: GalleryIndex, kind: str, number: int, k: int) -> tuple[NeuronImage, ...]:
    """The k gallery images where one unit (or channel) is highest: an exact pass, a block at a time (a column's
    largest values are no nearest-neighbour question an ANN file answers)."""
    found = index.scan(VECTORS[kind], lambda rows: rows[:, number], k)
    return tuple(NeuronImage(index.paths[row], value) for row, value in found)


@torch.inference_mode()
def neuron(
    model,
    processor,
    index: GalleryIndex,
    unit: int | None = None,
    channel: int | None = None,
    k: int = 9,
    n_words: int = 10,
) -> Neuron:
    """One unit of the image representation or one channel of the pooled features (give exactly one): its k
    top gallery images and its `n_words` words (see the module's docstring for how they are measured)."""
    check_sizes(k, n_words)
    check_gallery(index)
    kind, number = check_neuron(index, unit, channel)
    means, stds = _statistics(index, kind)
    std = float(stds[number])
    found_words = _word_effects(model, processor.tokenizer, index, kind, [number], [std], n_words)[0]
    return Neuron(kind, number, _top_images(index, kind, number, k), found_words, float(means[number]), std)


@torch.inference_mode()
def distinctive_neurons(
    model,
    processor,
    index: GalleryIndex,
    image: ImageLike,
    n: int = 5,
    k: int = 9,
    n_words: int = 10,
    kind: str = "unit",
) -> list[Neuron]:
    """The n units (or channels, `kind="channel"`) where `image` stands out most from the gallery (largest
    z-score), best first, each with its k top gallery images and its words. A gallery image (path or copy) is
    read from the index; another image is embedded."""
    check_sizes(k, n_words, n)
    check_kind(kind)
    check_gallery(index)
    row = gallery_row(index, image)
    if row is None:
        activations = embed_images(model, processor, [image])[VECTORS[kind]][0].astype(np.float32)
    else:
        activations = index.rows(VECTORS[kind], [row])[0]
    means, stds = _statistics(index, kind)
    z_scores = np.where(stds > 0, (activations - means) / np.where(stds > 0, stds, 1.0), -np.inf)
    numbers, _ = top_k(z_scores, n)
    numbers = [int(i) for i in numbers[0] if np.isfinite(z_scores[i])]
    if not numbers:
        raise OneNetError(
            f"no {kind} varies over the gallery at {index.folder} (one image, or copies of one), so none is "
            "distinctive; index more images: onenet index"
        )
    found_words = _word_effects(model, processor.tokenizer, index, kind, numbers, stds[numbers].tolist(), n_words)
    return [
        Neuron(
            kind,
            number,
            _top_images(index, kind, number, k),
            number_words,
            float(means[number]),
            float(stds[number]),
            float(activations[number]),
            float(z_scores[number]),
        )
        for number, number_words in zip(numbers, found_words, strict=True)
    ]


def _word_effects(
    model, tokenizer, index: GalleryIndex, kind: str, numbers: Sequence[int], stds: Sequence[float], n_words: int
) -> list[tuple[ScoredWord, ...]]:
    """The `n_words` words whose log-probability rises most when each neuron is pushed by PUSH_STDS x its std,
    measured on the images' own greedy captions; none for a neuron that does not vary (std 0)."""
    if n_words == 0 or not any(std > 0 for std in stds):
        return [()] * len(numbers)
    rows = np.unique(np.linspace(0, len(index) - 1, min(len(index), WORD_SAMPLE_IMAGES)).round().astype(int))
    vectors = torch.from_numpy(index.rows(VECTORS[kind], rows)).to(model.device)
    pushed = vectors.repeat(len(numbers), 1, 1)
    for push, (number, std) in enumerate(zip(numbers, stds, strict=True)):
        pushed[push, :, number] += PUSH_STDS * std
    if kind == "channel":  # followed through the projection to the representation the decoder reads
        vectors = model.get_image_features_from_pooled(vectors)
        pushed = model.get_image_features_from_pooled(pushed.flatten(0, 1)).view(len(numbers), len(rows), -1)
    options = caption_options(model, beam_size=1)
    captions = generate_beams(model, vectors, options)
    token_ids = [[options.bos_token_id, *caption.token_ids, options.eos_token_id] for caption in captions]
    changes = model.get_word_log_prob_changes(token_ids, vectors, pushed).mean(1).cpu().numpy()
    changes[:, sorted(set(tokenizer.all_special_ids))] = -np.inf
    ids, rises = top_k(changes, n_words)
    return [
        tuple(
            ScoredWord(word, float(rise))
            for word, rise in zip(tokenizer.convert_ids_to_tokens(row_ids.tolist()), row_rises, strict=True)
            if np.isfinite(rise)
        )
        if std > 0
        else ()
        for row_ids, row_rises, std in zip(ids, rises, stds, strict=True)
    ]


def neuron_sheet(neurons: Sequence[Neuron]) -> Image.Image:
    """Contact sheets of neurons stacked top to bottom: for each, its name, its words, its gallery statistics
    (and the image's activation and z-score), then its top images with file name and activation."""
    if not neurons:
        raise OneNetError("no neurons to draw")
    fewest, most = SHEET_COLUMNS
    columns = min(max(fewest, max(len(n.images) for n in neurons)), most)
    sheets = []
    for item in neurons:
        title = f"{item.name} of {DESCRIBED[item.kind]}: top {len(item.images)} gallery images"
        words = ", ".join(f"{w.word} {w.score:+.2f}" for w in item.words)
        words = words or ("none: it does not vary over the gallery" if item.gallery_std == 0 else "none asked for")
        stats = f"gallery mean {item.gallery_mean:.3f}, std {item.gallery_std:.3f}"
        if item.z_score is not None:
            stats += f"; this image {item.activation:.3f}, z-score {item.z_score:.2f}"
        tiles = [Tile(thumbnail(i.path), (_file_name(i.path), f"{i.activation:.3f}")) for i in item.images]
        sheets.append(contact_sheet(tiles, columns, (title, f"words (log-prob rise): {words}", stats)))
    stacked = Image.new("RGB", (sheets[0].width, sum(s.height for s in sheets)), (255, 255, 255))
    for number, sheet in enumerate(sheets):
        stacked.paste(sheet, (0, sum(s.height for s in sheets[:number])))
    return stacked


def _file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


__all__ = [
    "MAX_IMAGES",
    "MAX_NEURONS",
    "MAX_WORDS",
    "NEURON_KINDS",
    "Neuron",
    "NeuronImage",
    "check_sizes",
    "distinctive_neurons",
    "neuron",
    "neuron_sheet",
]
