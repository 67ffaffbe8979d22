"""`OneNet`, the Python API: a loaded model and its processor behind one object with one method per use.

Each method calls its use's module in `onenet_hf/uses/` (the lower layer, whose functions take the model and
processor explicitly); the CLI, the Space, the benchmarks and the evaluation call these same methods or
functions.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from .create import dream, imagine, style, visualize
from .create.optimization import Snapshot, last
from .errors import OneNetError
from .explore import embedding_map as maps
from .explore import explain, layers, neurons
from .explore.embedding_map import EmbeddingMap
from .explore.explain import CaptionExplanation
from .explore.layers import CHANNELS, StageActivations
from .explore.neurons import Neuron
from .gallery.build import build_index
from .gallery.embedding import Embedder, local_embedder, onnx_embedder
from .gallery.index import GalleryIndex, ImageMatch
from .hub import loading_checkpoint, resolve_model
from .images import ImageLike
from .label_guidance import LABEL_THRESHOLD
from .language.word_vectors import WordVectors, glove_vectors
from .modeling_onenet import OneNetModel
from .processing_onenet import OneNetProcessor
from .uses import caption, search, similar_images, tag, words
from .uses.caption import Caption, CaptionBackend
from .uses.tag import CAPTION_SAMPLES, CAPTION_WEIGHT, IMAGENET_WEIGHT, ImageTags, Tagger
from .uses.words import ScoredWord
from .utils.messages import shorten

if TYPE_CHECKING:
    from .onnx.backend import OnnxOneNetBackend
    from .onnx.graphs import OnnxGalleryEncoder

WORD_SPACES = ("learned", "glove")
BACKENDS = ("torch", "onnx", "auto")


def _exported_graphs(checkpoint: Path, onnx_dir: Path | None, variant: str) -> OnnxOneNetBackend | None:
    """The graphs of this checkpoint's export in `variant` that exist (`backend="auto"`), or None: no export of it,
    none in that variant, or no onnxruntime; PyTorch runs the rest."""
    try:
        from .onnx.backend import OnnxExportError, OnnxOneNetBackend

        return OnnxOneNetBackend(checkpoint, onnx_dir, variant, partial=True)
    except (ImportError, OnnxExportError):
        return None


class OneNet:
    """A loaded OneNet checkpoint, ready for inference.

    `model` is the PyTorch `OneNetModel` (eval mode, float32) or, with `backend="onnx"`, an
    `OnnxOneNetBackend` running the exported graphs, which cover captioning only: the other uses need the
    PyTorch backend and say so. `onnx`, beside a PyTorch model (`backend="auto"`), runs the parts its graphs
    cover (the image side and the decoder's steps of captions and tags) faster on CPU; the rest stays PyTorch.
    """

    def __init__(
        self,
        model: OneNetModel | CaptionBackend,
        processor: OneNetProcessor,
        onnx: OnnxOneNetBackend | None = None,
        onnx_export: tuple[Path, Path | None] | None = None,
    ):
        side, size = model.config.image_size, processor.image_processor.size
        if (size["height"], size["width"]) != (side, side):
            raise OneNetError(
                f"the image processor resizes to {size['height']}x{size['width']}, but the model's backbone expects "
                f"{side}x{side} (config.image_size): the checkpoint's two configs disagree"
            )
        self.model, self.processor, self.onnx = model, processor, onnx
        self._taggers: dict[tuple[int, float, float], Tagger] = {}
        # where backend="auto" looked for graphs (checkpoint, onnx_dir): gallery_embedder's fastest encoder comes from
        # there when the graphs loaded in the asked variant give no batch-independent image encoder
        self._onnx_export = onnx_export
        self._learned_vectors: WordVectors | None = None
        if isinstance(model, OneNetModel):
            model.eval()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        backend: str = "torch",
        onnx_dir: str | os.PathLike | None = None,
        onnx_variant: str = "fp32",
        revision: str | None = None,
    ) -> OneNet:
        """Load a local folder (written by `onenet train`, `onenet release` or `save_pretrained`) or a Hub repo id
        (at `revision`), resolved through the Hub cache (see `hub.resolve_model`).

        `backend="onnx"` runs the graphs `onenet export` wrote (default `MODEL/onnx`, a release ships them),
        `onnx_variant` `"fp32"`, `"int8-dynamic"` (CPU) or `"fp16"` (GPU). `backend="auto"` loads the PyTorch model for
        every use and, on CPU, where an export of this checkpoint is present and onnxruntime installed, runs
        captions, tags and the embedding of a photo searched against a gallery through its graphs (the fastest
        path on CPU; see `bench/speed/space_load.py`); on a GPU, or without an export, PyTorch runs everything.
        """
        if backend not in BACKENDS:
            raise OneNetError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        folder = resolve_model(path, revision, with_onnx=backend != "torch" and onnx_dir is None)
        with loading_checkpoint(folder):
            processor = OneNetProcessor.from_pretrained(folder)
        if backend == "onnx":
            from .onnx.backend import OnnxOneNetBackend

            return cls(OnnxOneNetBackend(folder, onnx_dir, onnx_variant), processor)
        with loading_checkpoint(folder):
            model = OneNetModel.from_pretrained(folder, dtype=torch.float32)
        model = model.to(device or "cpu")
        if backend != "auto" or model.device.type != "cpu":
            return cls(model, processor)
        export = (folder, Path(onnx_dir) if onnx_dir else None)
        return cls(model, processor, _exported_graphs(*export, onnx_variant), onnx_export=export)

    def save_pretrained(self, path: str | os.PathLike, half_precision_weights: bool = False) -> None:
        """Write model and processor as an HF folder; optionally store weights in fp16 (loaded back as fp32)."""
        if not isinstance(self.model, OneNetModel):
            raise OneNetError("only a PyTorch-backed OneNet can be saved; the ONNX graphs are exported from one")
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)
        if half_precision_weights:
            weights_file = Path(path) / "model.safetensors"
            weights = {k: v.half() if v.is_floating_point() else v for k, v in load_file(weights_file).items()}
            save_file(weights, weights_file.with_suffix(".tmp"), metadata={"format": "pt"})
            os.replace(weights_file.with_suffix(".tmp"), weights_file)
            weights_file.chmod(0o644)

    def caption(
        self,
        images: ImageLike | Sequence[ImageLike],
        beam_size: int | None = None,
        length_penalty: float | None = None,
        no_repeat_ngram_size: int | None = None,
        imagenet_steering: float = 0.0,
        imagenet_labels: float = LABEL_THRESHOLD,
    ) -> list[Caption]:
        """One `Caption(text, score)` per image, in input order; defaults from the model's generation config.
        `imagenet_labels`: the backbone classifier's confidence from which a label's everyday word ("cat" for
        "Egyptian cat") must appear in the caption (constrained beam search; 0 turns it off).
        `imagenet_steering` > 0 also steers beam search towards the label words (off by default)."""
        options = (beam_size, length_penalty, no_repeat_ngram_size)
        backend = self._onnx_captioner() or self.model
        guidance = {"imagenet_steering": imagenet_steering, "imagenet_labels": imagenet_labels}
        return caption.caption(backend, self.processor, images, *options, **guidance)

    def _torch_model(self, use: str) -> OneNetModel:
        """The PyTorch model, or an error naming the use that the ONNX backend cannot run."""
        if not isinstance(self.model, OneNetModel):
            raise OneNetError(
                f"{use} runs on the PyTorch backend, which backend='onnx' does not load; load with backend='auto' "
                "(the ONNX graphs where they exist, PyTorch for the rest) or 'torch' (--backend auto or torch)"
            )
        return self.model

    def tag(
        self,
        images: ImageLike | Sequence[ImageLike],
        k: int = 5,
        caption_samples: int = CAPTION_SAMPLES,
        caption_weight: float = CAPTION_WEIGHT,
        imagenet_weight: float = IMAGENET_WEIGHT,
    ) -> list[ImageTags]:
        """The k best word tags (any frequent GloVe word) and ImageNet labels of each image; the tag head's
        ranking is sharpened by `caption_samples` captions sampled from the decoder and by the words of the
        backbone's ImageNet labels (`caption_samples=0, imagenet_weight=0`: the head alone)."""
        tagger = self._tagger(caption_samples, caption_weight, imagenet_weight)
        return tag.tag(self.model, self.processor, images, k, tagger, image_encoder=self._image_encoder())

    def _onnx_captioner(self) -> OnnxOneNetBackend | None:
        """The ONNX graphs, if they were loaded with the decoder's (not a gallery encoder alone): captions run there."""
        return self.onnx if self.onnx is not None and self.onnx.has_decoder else None

    def _image_encoder(self) -> OnnxOneNetBackend | None:
        """The ONNX graphs that give an image's representation and pooled features in one pass, if loaded
        (`backend="auto"`) and exported with both."""
        return self.onnx if self.onnx is not None and self.onnx.has_pooled_features else None

    def _tagger(self, caption_samples: int, caption_weight: float, imagenet_weight: float) -> Tagger:
        """The tagger of these settings, built once (it scores the whole tag vocabulary's word side)."""
        options = (caption_samples, caption_weight, imagenet_weight)
        if options not in self._taggers:
            samples, caption_weight, imagenet_weight = options
            self._taggers[options] = Tagger(
                self._torch_model("tagging"), self.processor.tokenizer, None, samples, caption_weight,
                imagenet_weight=imagenet_weight, decoder=self._onnx_captioner(),
            )  # fmt: skip
        return self._taggers[options]

    def word_vectors(self, space: str = "learned") -> WordVectors:
        """The decoder's learned word embeddings (`"learned"`) or GloVe 6B 50d (`"glove"`)."""
        if space == "glove":
            return glove_vectors()
        if space != "learned":
            raise OneNetError(f"unknown word space {shorten(space)}; choose one of {WORD_SPACES}")
        if self._learned_vectors is None:
            self._learned_vectors = words.learned_vectors(
                self._torch_model("the learned word space"), self.processor.tokenizer
            )
        return self._learned_vectors

    def similar_words(self, text: str, k: int = 10, space: str = "learned") -> list[ScoredWord]:
        """Words closest to a word (or the mean of several) by cosine."""
        return words.similar_words(self.word_vectors(space), text, k)

    def analogy(
        self, a: str, b: str, c: str, k: int = 5, space: str = "glove", method: str = "3cosadd"
    ) -> list[ScoredWord]:
        """a is to b as c is to ? (3CosAdd or 3CosMul), the query words excluded."""
        return words.analogy(self.word_vectors(space), a, b, c, k, method)

    def embedding_map(
        self,
        index: GalleryIndex | None = None,
        words: Sequence[str] | None = None,
        top_words: int | None = None,
        space: str = "learned",
        color_by: str = "class",
        method: str = "opentsne",
        perplexity: float | None = None,
        seed: int = 0,
    ) -> EmbeddingMap:
        """A 2-D t-SNE map of a gallery's images (coloured by top ImageNet class or top tag) or of words of a
        word space (`words`, or the `top_words` most frequent); `.figure()` for plotly, `.save("map.html")`."""
        model = self._torch_model("maps")
        head_alone = (0, CAPTION_WEIGHT, 0.0)
        tagger = self._tagger(*head_alone) if index is not None and color_by == "tag" else None
        vectors = self.word_vectors(space) if index is None else None
        return maps.embedding_map(
            model, self.processor, index, vectors, words, top_words, color_by, method, perplexity, seed, tagger=tagger
        )

    def gallery_embedder(self) -> Embedder:
        """How this model embeds gallery images in this process: with `backend="auto"`, the export's gallery
        encoder (`gallery.embedding.onnx_embedder`) in the loaded variant when that is batch-independent, else in
        `fastest` (so a photo's row never depends on the photos beside it in a batch, as dynamic int8's would);
        otherwise, or for an export that predates the gallery arrays, PyTorch (`gallery.embedding.local_embedder`)."""
        if self._gallery_encoder is not None:
            return onnx_embedder(self._gallery_encoder)
        return local_embedder(self._torch_model("indexing"), self.processor)

    @cached_property
    def _gallery_encoder(self) -> OnnxGalleryEncoder | None:
        """The export's gallery encoder (`backend="auto"` only), loaded when a gallery is first embedded."""
        if self._onnx_export is None:
            return None
        loaded = self._image_encoder()
        try:
            from .onnx.graphs import OnnxExportError, OnnxGalleryEncoder, gallery_variant

            variant = gallery_variant(loaded.variant) if loaded is not None else "fastest"
            return OnnxGalleryEncoder(*self._onnx_export, variant)
        except (ImportError, OnnxExportError):
            return None

    def build_index(self, images: str | os.PathLike | Sequence, folder: str | os.PathLike, **kwargs) -> GalleryIndex:
        """Embed a folder (or list) of images into a persisted gallery index; see `gallery.build.build_index`. Rows
        are made by `gallery_embedder()` unless `embedder` says otherwise (`ray_indexing.RayEmbedder`)."""
        kwargs["embedder"] = kwargs.get("embedder") or self.gallery_embedder()
        return build_index(self._torch_model("indexing"), self.processor, images, folder, **kwargs)

    def load_index(self, folder: str | os.PathLike) -> GalleryIndex:
        """Open a gallery index, refusing one that another model made; an older index lacking ANN files says so
        on stderr, once."""
        index = GalleryIndex.load(folder, self._torch_model("gallery search"))
        if index.missing_ann_notice:
            print(index.missing_ann_notice, file=sys.stderr)
        return index

    def similar_images(
        self,
        index: GalleryIndex,
        query: ImageLike | int,
        k: int = 5,
        exact: bool | None = None,
        focus_class: int | str | None = None,
    ) -> list[ImageMatch]:
        """Gallery images most like an image, a gallery path or row; optionally focused on an ImageNet class."""
        model = self._torch_model("similar images")
        return similar_images.similar_images(
            model, self.processor, index, query, k, exact, focus_class, image_encoder=self._image_encoder()
        )

    def search(self, index: GalleryIndex, text: str, k: int = 5, method: str = "reranked") -> list[ImageMatch]:
        """Gallery images that match a text, best first; methods in `uses.search.SEARCH_METHODS`: `reranked`
        (retrieval, then the decoder re-ranks), `retrieval`, `invert`, `glove`."""
        return search.search(self._torch_model("search"), self.processor, index, text, k, method)

    def explain(self, image: ImageLike, caption: str | None = None, beam_size: int | None = None) -> CaptionExplanation:
        """Where each word of the image's caption (the model's own, or `caption`) comes from: one Grad-CAM heat map
        per word over the image; `.overlays()` draws them, `.save_overlays(folder)` writes them as PNGs."""
        return explain.explain(self._torch_model("explain"), self.processor, image, caption, beam_size)

    def neuron(
        self,
        index: GalleryIndex,
        unit: int | None = None,
        channel: int | None = None,
        k: int = 9,
        n_words: int = 10,
    ) -> Neuron:
        """A unit of the image representation or a channel of the pooled backbone features (give one): its k top
        gallery images, from the vectors the index stored, and the words the decoder says more of when it rises."""
        return neurons.neuron(self._torch_model("neurons"), self.processor, index, unit, channel, k, n_words)

    def distinctive_neurons(
        self, index: GalleryIndex, image: ImageLike, n: int = 5, k: int = 9, n_words: int = 10, kind: str = "unit"
    ) -> list[Neuron]:
        """The n units (`kind="channel"`: pooled-feature channels) where an image stands out most from the
        gallery (z-score), each as `neuron` describes it."""
        model = self._torch_model("neurons")
        return neurons.distinctive_neurons(model, self.processor, index, image, n, k, n_words, kind)

    def layer_activations(self, image: ImageLike, channels: int = CHANNELS) -> list[StageActivations]:
        """The backbone's activations of an image stage by stage (stem, 7 stages, head), each with its strongest
        channels; `StageActivations.to_image()` draws a stage as a grid."""
        return layers.layer_activations(self._torch_model("layer activations"), self.processor, image, channels)

    def visualize(
        self,
        imagenet_class: int | str | None = None,
        channel: int | None = None,
        unit: int | None = None,
        stage: str = "head",
        steps: int = visualize.STEPS,
        seed: int = 0,
        images: int = 1,
        diversity: float = 0.0,
        size: int = 260,
        progress: bool = True,
    ) -> Snapshot:
        """Images (`.images`) that excite one ImageNet class, a channel of a backbone `stage`, or a unit of the
        image representation (give one), by feature visualisation; `images` > 1 with `diversity` > 0 shows
        several different ones. The same seed gives the same images."""
        options = (imagenet_class, channel, unit, stage, steps, seed, images, diversity, size)
        return last(self.visualize_steps(*options), "visualizing", progress)

    def visualize_steps(self, *args: Any, snapshot_every: int = 0, **kwargs: Any) -> Iterator[Snapshot]:
        """`visualize` as it runs, from `visualize`'s arguments (`progress` aside): a `Snapshot` per step, with
        images every `snapshot_every` steps (0: the last only), so a UI can show the picture forming."""
        options = _arguments(OneNet.visualize, self, args, kwargs)
        model = self._torch_model("visualize")
        target = visualize.visualization_target(
            model, options.pop("imagenet_class"), options.pop("channel"), options.pop("unit"), options.pop("stage")
        )
        return visualize.visualize_steps(model, self.processor, target, **options, snapshot_every=snapshot_every)

    def imagine(
        self, text: str, steps: int = imagine.STEPS, seed: int = 0, size: int = 260, progress: bool = True
    ) -> Snapshot:
        """An image (`.images[0]`) for a sentence: pixels optimised until the backbone sees what the decoder
        imagines for it (pooled features under which the sentence is likely)."""
        return last(self.imagine_steps(text, steps, seed, size), "imagining", progress)

    def imagine_steps(self, *args: Any, snapshot_every: int = 0, **kwargs: Any) -> Iterator[Snapshot]:
        """`imagine` as it runs, from `imagine`'s arguments (`progress` aside): a `Snapshot` per step, with its
        image every `snapshot_every` steps."""
        options = _arguments(OneNet.imagine, self, args, kwargs)
        model = self._torch_model("imagine")
        return imagine.imagine_steps(model, self.processor, **options, snapshot_every=snapshot_every)

    def dream(
        self,
        image: ImageLike,
        stage: str = dream.STAGE,
        steps: int = dream.STEPS,
        strength: float = dream.STRENGTH,
        octaves: int = dream.OCTAVES,
        size: int = 260,
        seed: int = 0,
        progress: bool = True,
    ) -> Snapshot:
        """DeepDream: the photo (`.images[0]`, short side `size`) with what backbone `stage` sees in it amplified."""
        snapshots = self.dream_steps(image, stage, steps, strength, octaves, size, seed)
        return last(snapshots, f"dreaming ({stage})", progress)

    def dream_steps(self, *args: Any, snapshot_every: int = 0, **kwargs: Any) -> Iterator[Snapshot]:
        """`dream` as it runs, from `dream`'s arguments (`progress` aside): a `Snapshot` per step, with its image
        every `snapshot_every` steps."""
        options = _arguments(OneNet.dream, self, args, kwargs)
        return dream.dream_steps(self._torch_model("dream"), self.processor, **options, snapshot_every=snapshot_every)

    def style(
        self,
        content: ImageLike,
        style_image: ImageLike,
        steps: int = style.STEPS,
        content_weight: float = style.CONTENT_WEIGHT,
        style_weight: float = style.STYLE_WEIGHT,
        size: int = 260,
        progress: bool = True,
    ) -> Snapshot:
        """Style transfer: `content` (`.images[0]`, short side `size`) redrawn with `style_image`'s textures."""
        snapshots = self.style_steps(content, style_image, steps, content_weight, style_weight, size)
        return last(snapshots, "style transfer", progress)

    def style_steps(self, *args: Any, snapshot_every: int = 0, **kwargs: Any) -> Iterator[Snapshot]:
        """`style` as it runs, from `style`'s arguments (`progress` aside): a `Snapshot` per step, with its image
        every `snapshot_every` steps."""
        options = _arguments(OneNet.style, self, args, kwargs)
        options["style"] = options.pop("style_image")
        return style.style_steps(self._torch_model("style"), self.processor, **options, snapshot_every=snapshot_every)


def _arguments(method: Callable[..., Snapshot], net: OneNet, args: tuple, kwargs: dict) -> dict[str, Any]:
    """A streaming method's arguments bound by name as its plain method (`method`) takes them, defaults filled
    in and `progress` left out, so each optimisation use states its parameters once; a wrong name or count is
    the `TypeError` a call to `method` would raise."""
    bound = inspect.signature(method).bind(net, *args, **kwargs)
    bound.apply_defaults()
    options = dict(bound.arguments)
    del options["self"], options["progress"]
    return options


__all__ = ["OneNet"]
