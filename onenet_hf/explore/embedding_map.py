"""Use 7, maps (`OneNet.embedding_map`, `onenet map`): a 2-D t-SNE map of a gallery's image representations
(`GalleryIndex.image_embeds`) or of word vectors (the decoder's learned word space or GloVe), under cosine distance.

Image maps are coloured by each image's top ImageNet class (the frozen classifier on `GalleryIndex.pooled_features`)
or its top tag from the tag head alone (`Tagger` with no sampled captions: the index's tag-space vectors against the
tag words). Word maps show the words given, or the N most frequent words of the space.

t-SNE keeps neighbourhoods, not distances, so a map is judged by its trustworthiness (`EmbeddingMap.trustworthiness`:
how many of each point's map neighbours are true neighbours in the original space). The perplexity (about the number
of neighbours each point keeps) is min(30, (n - 1) / 3) unless given: t-SNE needs more than 3 x perplexity points.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import OneNetError
from ..gallery.index import GalleryIndex
from ..images import ImageLoadError, load_image
from ..language.label_words import imagenet_labels
from ..language.word_vectors import WordVectors
from ..options import COLOR_BY, MAP_METHODS, check_map_path
from ..options import MAP_SUFFIXES as MAP_SUFFIXES
from ..processing_onenet import OneNetProcessor
from ..uses.tag import Tagger
from ..utils.checks import check_integer
from ..utils.extras import require
from ..utils.messages import shorten

METHOD_NAMES = {"opentsne": "openTSNE", "sklearn-tsne": "scikit-learn"}
MAX_MAP_POINTS = 20_000  # t-SNE time and the trustworthiness check's n x n distances grow with the square beyond
MAX_PERPLEXITY = 30.0  # the usual t-SNE default; smaller maps get (n - 1) / 3
MIN_PERPLEXITY = 2.0  # below it each point keeps too few neighbours to make a map: so at least 7 points
MAX_LEGEND_LABELS = 12  # the most frequent labels get their own colour; the rest are "other", in grey
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#aec7e8", "#ffbb78", "#98df8a")  # fmt: skip
OTHER_COLOUR = "#b0b0b0"
PNG_SIZE = 1200  # pixels, width and height of a PNG map
MAX_THUMBNAILS = 2_000  # thumbnails drawn on a PNG image map (evenly spread over the rows); every image has a dot
MAX_PNG_WORDS = 2_000  # words written on a PNG word map (the first ones: the most frequent for a top-N map)
MAX_FIGURE_THUMBNAILS = 300  # an interactive image map shows thumbnails up to this many images (inlined JPEGs)
MAX_TEXT_WORDS = 300  # an interactive word map writes each word beside its point up to this many; hover above it
PARALLEL_MIN_POINTS = 1_000  # smaller maps run on one core: threads cost more per iteration than they save
_PROGRESS_EVERY = 50  # openTSNE iterations between progress updates


@dataclass(frozen=True, eq=False)
class EmbeddingMap:
    """A 2-D map: `points` (N, 2) of the `vectors` (N, D) mapped, with each point's name (image file name or
    word), label (top ImageNet class, top tag, or the word space) and hover text; `paths` are the image files
    (empty for words). `kind` is "images" or "words"."""

    kind: str
    points: np.ndarray
    names: tuple[str, ...]
    labels: tuple[str, ...]
    hover: tuple[str, ...]
    vectors: np.ndarray
    paths: tuple[str, ...]
    method: str
    perplexity: float
    seed: int
    title: str

    def __len__(self) -> int:
        return len(self.points)

    @property
    def settings(self) -> str:
        """How the map was made, e.g. "t-SNE (openTSNE), perplexity 30, seed 0": a subtitle."""
        return f"t-SNE ({METHOD_NAMES[self.method]}), perplexity {self.perplexity:.3g}, seed {self.seed}"

    def trustworthiness(self, k: int = 10) -> float:
        """Share of local structure kept (sklearn's trustworthiness, cosine in the original space), 1 is best."""
        return map_trustworthiness(self.vectors, self.points, k)

    def label_groups(self) -> list[tuple[str, str, np.ndarray]]:
        """(label, colour, rows) for the MAX_LEGEND_LABELS most frequent labels, then "other" for the rest."""
        top = [label for label, _ in Counter(self.labels).most_common(MAX_LEGEND_LABELS)]  # ties: first seen first
        group_of = {label: group for group, label in enumerate(top)}
        groups = np.array([group_of.get(label, len(top)) for label in self.labels])
        named = [(label, PALETTE[group], np.flatnonzero(groups == group)) for group, label in enumerate(top)]
        rest = np.flatnonzero(groups == len(top))
        return named + ([("other", OTHER_COLOUR, rest)] if len(rest) else [])

    def figure(self):
        """An interactive plotly figure (one legend entry per label group); hovering a point shows its name and
        label. Axes are hidden: t-SNE coordinates have no units, only neighbourhoods mean something."""
        go = require("plotly.graph_objects", "explore", "an interactive map")
        words_as_text = self.kind == "words" and len(self) <= MAX_TEXT_WORDS
        figure = go.Figure()
        for label, colour, rows in self.label_groups():
            figure.add_trace(
                go.Scatter(
                    x=self.points[rows, 0],
                    y=self.points[rows, 1],
                    mode="markers+text" if words_as_text else "markers",
                    text=[self.names[i] for i in rows] if words_as_text else None,
                    textposition="top center",
                    hovertext=[html.escape(self.hover[i]).replace("\n", "<br>") for i in rows],
                    hoverinfo="text",
                    marker={"color": colour, "size": 7 if len(self) <= 2_000 else 4},
                    name=label,
                )
            )
        hidden = {"visible": False}
        figure.update_layout(
            title={"text": f"{html.escape(self.title)}<br><sup>{self.settings}</sup>", "font": {"size": 15}},
            template="plotly_white",
            hovermode="closest",
            showlegend=self.kind == "images",
            xaxis=hidden,
            yaxis={**hidden, "scaleanchor": "x"},
            margin={"l": 10, "r": 10, "t": 70, "b": 10},
        )
        if self.kind == "images" and len(self) <= MAX_FIGURE_THUMBNAILS:
            figure.update_layout(images=self._figure_thumbnails())
        return figure

    def _figure_thumbnails(self) -> list[dict]:
        """Each image as a small inlined JPEG centred on its point, under the points (so hover still works);
        its side is a fraction of the map's extent that shrinks as images get more numerous."""
        extent = float(np.ptp(self.points, axis=0).max()) or 1.0
        side = extent * float(np.clip(0.6 / np.sqrt(len(self)), 0.03, 0.15))
        thumbnails = []
        for (x, y), path in zip(self.points, self.paths, strict=True):
            try:
                image = load_image(path)
            except ImageLoadError:
                continue
            image.thumbnail((96, 96))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
            source = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
            thumbnails.append(
                {
                    "source": source,
                    "x": float(x),
                    "y": float(y),
                    "sizex": side,
                    "sizey": side,
                    "xref": "x",
                    "yref": "y",
                    "xanchor": "center",
                    "yanchor": "middle",
                    "layer": "below",
                }
            )
        return thumbnails

    def save(self, path: str | os.PathLike, size: int = PNG_SIZE) -> Path:
        """Write the map as `.html` (the interactive figure, plotly.js embedded so it opens offline) or `.png`
        (`size` x `size` pixels: thumbnails at the images' places, or the words), atomically."""
        path = check_map_path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            if path.suffix.lower() == ".html":
                self.figure().write_html(str(tmp), include_plotlyjs=True, full_html=True)
            else:
                self._draw_png(tmp, size)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def _draw_png(self, file: Path, size: int) -> None:
        require("matplotlib", "explore", "a PNG map")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        dpi = 100
        figure = Figure(figsize=(size / dpi, size / dpi), dpi=dpi)
        FigureCanvasAgg(figure)
        axes = figure.add_axes((0.01, 0.01, 0.98, 0.94))
        axes.set_axis_off()
        axes.set_title(f"{self.title}\n{self.settings}", fontsize=11)
        groups = self.label_groups()
        for label, colour, rows in groups:
            axes.scatter(self.points[rows, 0], self.points[rows, 1], s=10, color=colour, label=label)
        if self.kind == "images":
            self._draw_thumbnails(axes, {int(row): colour for _, colour, rows in groups for row in rows}, size, dpi)
            axes.legend(loc="upper right", fontsize=8, markerscale=1.5, framealpha=0.8)
        else:
            fontsize = 9 if len(self) <= 300 else 6
            for (x, y), word in zip(self.points[:MAX_PNG_WORDS], self.names[:MAX_PNG_WORDS], strict=False):
                axes.annotate(word, (x, y), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                              fontsize=fontsize)  # fmt: skip
        axes.margins(0.05)
        figure.savefig(file, format="png", dpi=dpi)

    def _draw_thumbnails(self, axes, colours: dict[int, str], size: int, dpi: int) -> None:
        """A thumbnail framed in its label's colour at each image's place (at most MAX_THUMBNAILS, evenly spread
        over the rows); an image that cannot be read any more keeps only its dot."""
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage

        rows = np.unique(np.linspace(0, len(self) - 1, min(len(self), MAX_THUMBNAILS)).astype(int))
        side = int(np.clip(1.5 * size / np.sqrt(len(rows)), 16, 64))
        for row in rows:
            try:
                image = load_image(self.paths[row])
            except ImageLoadError:
                continue
            image.thumbnail((side, side))
            thumbnail = OffsetImage(np.asarray(image), zoom=72 / dpi)  # one image pixel, one PNG pixel
            frame = {"edgecolor": colours[int(row)], "linewidth": 1.5}
            axes.add_artist(AnnotationBbox(thumbnail, self.points[row], frameon=True, pad=0.1, bboxprops=frame))


def check_map_size(points: int, perplexity: float | None, what: str) -> float:
    """The perplexity for a map of `points` points of `what` (given, or min(30, (n - 1) / 3)), or an error: no
    points, more than MAX_MAP_POINTS, or too few for the perplexity (t-SNE needs n > 3 x perplexity)."""
    if points == 0:
        raise OneNetError(f"no {what} to map: the map needs at least 7 points")
    if points > MAX_MAP_POINTS:
        raise OneNetError(f"{points:,} {what} are more than a map takes ({MAX_MAP_POINTS:,}); map fewer")
    if perplexity is None:
        if points <= 3 * MIN_PERPLEXITY:
            raise OneNetError(
                f"too few points for a t-SNE map: {points} {what}; it needs more than 3 x perplexity, and a "
                f"perplexity of at least {MIN_PERPLEXITY:g}, so at least {int(3 * MIN_PERPLEXITY) + 1} points"
            )
        return min(MAX_PERPLEXITY, (points - 1) / 3)
    if not isinstance(perplexity, (int, float)) or isinstance(perplexity, bool) or not perplexity >= MIN_PERPLEXITY:
        raise OneNetError(f"perplexity must be a number of at least {MIN_PERPLEXITY:g}, got {shorten(perplexity)}")
    if points <= 3 * perplexity:
        raise OneNetError(
            f"too few points for perplexity {perplexity:g}: {points} {what}; t-SNE needs more than 3 x perplexity "
            f"= {3 * perplexity:g}: give a perplexity below {points / 3:g}, or map more points"
        )
    return float(perplexity)


def _check_choices(method: str, color_by: str, seed: int) -> None:
    if method not in MAP_METHODS:
        raise OneNetError(f"unknown map method {shorten(method)}; choose one of {MAP_METHODS}")
    if color_by not in COLOR_BY:
        raise OneNetError(f"unknown colouring {shorten(color_by)}; choose one of {COLOR_BY}")
    check_integer("seed", seed, 0, 2**32 - 1, high_text="2**32 - 1")


class _Progress:
    """An openTSNE callback that moves a tqdm bar; it never stops the optimisation."""

    def __init__(self, bar: tqdm):
        self.bar = bar

    def __call__(self, iteration: int, error: float, embedding) -> bool:
        self.bar.update(_PROGRESS_EVERY)
        return False


def project(
    vectors: np.ndarray,
    method: str = "opentsne",
    perplexity: float = MAX_PERPLEXITY,
    seed: int = 0,
    n_jobs: int | None = None,
) -> np.ndarray:
    """t-SNE coordinates (N, 2) of the rows of `vectors` under cosine distance, the same for the same `seed`.

    openTSNE (default): exact neighbours below 1,000 points, Annoy above; Barnes-Hut gradients below 10,000 points,
    FFT-interpolated above; PCA initialisation with seeded jitter; 250 early-exaggeration and 500 plain iterations.
    `sklearn-tsne`: scikit-learn's Barnes-Hut TSNE, PCA initialisation (no randomness: the seed changes nothing),
    1,000 iterations. `n_jobs` -1: every core; None: one below PARALLEL_MIN_POINTS points (12 points took 0.3 s on
    one core, 14 s on two busy ones), else every core.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if n_jobs is None:
        n_jobs = 1 if len(vectors) < PARALLEL_MIN_POINTS else -1
    if method == "opentsne":
        open_tsne = require("openTSNE", "explore", "a t-SNE map")
        with tqdm(total=750, desc="t-SNE map (openTSNE)", unit="iter") as bar:
            tsne = open_tsne.TSNE(
                perplexity=perplexity,
                metric="cosine",
                n_jobs=n_jobs,
                random_state=seed,
                early_exaggeration_iter=250,
                n_iter=500,
                callbacks=_Progress(bar),
                callbacks_every_iters=_PROGRESS_EVERY,
            )
            return np.asarray(tsne.fit(vectors), dtype=np.float32)
    if method == "sklearn-tsne":
        manifold = require("sklearn.manifold", "explore", "a t-SNE map")
        from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

        tsne = manifold.TSNE(perplexity=perplexity, metric="cosine", init="pca", random_state=seed, n_jobs=n_jobs)
        threads = n_jobs if n_jobs > 0 else None  # n_jobs sets the neighbour search; OpenMP runs the gradients
        with tqdm(total=1, desc="t-SNE map (scikit-learn)", unit="map") as bar, threadpool_limits(threads, "openmp"):
            points = tsne.fit_transform(vectors)
            bar.update(1)
        return np.asarray(points, dtype=np.float32)
    raise OneNetError(f"unknown map method {shorten(method)}; choose one of {MAP_METHODS}")


def map_trustworthiness(vectors: np.ndarray, points: np.ndarray, k: int = 10) -> float:
    """sklearn's trustworthiness at `k` neighbours of a map `points` of `vectors` (cosine distance), 1 is best.

    It builds the n x n distance and rank matrices: about 1.6 GB for 10,000 points, 6.4 GB for 20,000."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k < len(points) / 2:
        raise OneNetError(f"trustworthiness needs k from 1 to below half the points ({len(points)}), got {shorten(k)}")
    manifold = require("sklearn.manifold", "explore", "a map's trustworthiness")
    return float(manifold.trustworthiness(vectors, points, n_neighbors=k, metric="cosine"))


@torch.inference_mode()
def image_labels(
    model, processor: OneNetProcessor, index: GalleryIndex, color_by: str, tagger: Tagger | None = None
) -> list[str]:
    """Each gallery image's top ImageNet class (`color_by="class"`) or its top tag (`"tag"`, by `tagger`,
    default the tag head alone), in row order."""
    batch_size, labels = 1024, []
    if color_by == "class":
        names = imagenet_labels()
        for start in range(0, len(index), batch_size):
            pooled = np.array(index.pooled_features[start : start + batch_size], dtype=np.float32)
            logits = model.get_imagenet_logits(torch.from_numpy(pooled).to(model.device))
            labels += [names[i] for i in logits.argmax(-1).tolist()]
        return labels
    tagger = tagger or Tagger(model, processor.tokenizer, caption_samples=0, imagenet_weight=0)
    for start in range(0, len(index), batch_size):
        embeds = np.array(index.image_embeds[start : start + batch_size], dtype=np.float32)
        pooled = np.array(index.pooled_features[start : start + batch_size], dtype=np.float32)  # the ImageNet vote's
        tops = tagger.top_words(torch.from_numpy(embeds).to(model.device), 1, torch.from_numpy(pooled).to(model.device))
        labels += [tags[0].word for tags in tops]
    return labels


def word_rows(vectors: WordVectors, words: Sequence[str] | None, top_words: int | None) -> list[int]:
    """Rows of the given words (lower-cased, each once, in order; an unknown one is an error naming close
    spellings), or of the `top_words` most frequent alphabetic words (GloVe's most frequent tokens are punctuation
    and numbers; all of them when the space has fewer)."""
    if words is not None:
        if isinstance(words, str):
            raise OneNetError("give the words as a list, e.g. ['dog', 'cat']")
        return vectors.ids(dict.fromkeys(word.strip().lower() for word in words if word.strip()))
    check_integer("top_words", top_words, 1, MAX_MAP_POINTS)
    return list(itertools.islice((row for row, word in enumerate(vectors.words) if word.isalpha()), top_words))


def embedding_map(
    model,
    processor: OneNetProcessor,
    index: GalleryIndex | None = None,
    vectors: WordVectors | None = None,
    words: Sequence[str] | None = None,
    top_words: int | None = None,
    color_by: str = "class",
    method: str = "opentsne",
    perplexity: float | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
    tagger: Tagger | None = None,
) -> EmbeddingMap:
    """A t-SNE map of a gallery's images (`index`, coloured by `color_by`) or of words of `vectors` (the
    `words` given or the `top_words` most frequent): give `index`, or `vectors` with `words` or `top_words`.

    Every check runs before the labels and the t-SNE. `tagger` (with `color_by="tag"`): a `Tagger` to reuse.
    """
    _check_choices(method, color_by, seed)
    if [index, words, top_words].count(None) != 2 or (index is None and vectors is None):
        raise OneNetError("map one thing: a gallery index, or words of a word space (a list, or the N most frequent)")
    if index is not None:
        perplexity = check_map_size(len(index), perplexity, "gallery images")
        paths = tuple(index.paths)
        names = tuple(os.path.basename(path) for path in paths)
        labels = tuple(image_labels(model, processor, index, color_by, tagger))
        mapped = np.array(index.image_embeds, dtype=np.float32)
        kind, coloured = "images", {"class": "top ImageNet class", "tag": "top tag"}[color_by]
        title = f"{len(names):,} gallery images by their representation, coloured by {coloured}"
    else:
        rows = word_rows(vectors, words, top_words)
        perplexity = check_map_size(len(rows), perplexity, "words")
        paths, names = (), tuple(vectors.words[i] for i in rows)
        labels = (vectors.name,) * len(rows)
        mapped = vectors.vectors[rows]
        which = "given" if words is not None else "most frequent"
        kind, title = "words", f"{len(rows):,} {which} words of the {vectors.name} space"
    points = project(mapped, method, perplexity, seed, n_jobs)
    return EmbeddingMap(
        kind=kind,
        points=points,
        names=names,
        labels=labels,
        hover=tuple(f"{name}\n{label}" for name, label in zip(names, labels, strict=True)),
        vectors=mapped,
        paths=paths,
        method=method,
        perplexity=perplexity,
        seed=seed,
        title=title,
    )


__all__ = [
    "COLOR_BY",
    "MAP_METHODS",
    "MAX_MAP_POINTS",
    "EmbeddingMap",
    "check_map_path",
    "check_map_size",
    "embedding_map",
    "image_labels",
    "map_trustworthiness",
    "project",
    "word_rows",
]
