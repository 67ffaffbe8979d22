"""OneNet: one image-captioning network whose representations serve many uses.

`OneNet` is the Python API: `OneNet.from_pretrained(...)`, then one method per use. Below it, transformers-style
classes (config, model, processors, pipeline) and the result types the methods return.

Importing the package is cheap (no torch, no transformers: `onenet --help` answers at once); each name loads its
module on first use, and OneNet joins transformers' Auto classes as soon as those load (`auto_registration`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .auto_registration import register_with_auto_classes

if TYPE_CHECKING:  # what type checkers, IDEs and the API reference see; at run time `__getattr__` loads these
    from .configuration_onenet import OneNetConfig
    from .data.datasets import CaptionedImage, DatasetError, read_coco, read_flickr8k, read_split
    from .errors import OneNetError
    from .explore.embedding_map import EmbeddingMap
    from .explore.explain import CaptionExplanation, WordSaliency
    from .explore.layers import StageActivations
    from .explore.neurons import Neuron, NeuronImage
    from .gallery.index import GalleryIndex, GalleryIndexError, ImageMatch
    from .hub import DEFAULT_MODEL_ID, ModelNotFoundError, resolve_model
    from .image_processing_onenet import OneNetImageProcessor
    from .image_to_text import OneNetImageToTextPipeline
    from .images import ImageLoadError, load_image
    from .language.word_vectors import UnknownWordError, WordVectors
    from .modeling_onenet import OneNetModel, OneNetOutput, OneNetPreTrainedModel
    from .onenet import OneNet
    from .processing_onenet import OneNetProcessor
    from .tokenization_onenet import build_tokenizer
    from .uses.caption import Caption
    from .uses.tag import ImageTags
    from .uses.words import ScoredWord
    from .utils.extras import MissingExtraError

_MODULE_OF = {
    "Caption": ".uses.caption",
    "CaptionExplanation": ".explore.explain",
    "CaptionedImage": ".data.datasets",
    "DEFAULT_MODEL_ID": ".hub",
    "DatasetError": ".data.datasets",
    "EmbeddingMap": ".explore.maps",
    "GalleryIndex": ".gallery.index",
    "GalleryIndexError": ".gallery.index",
    "ImageLoadError": ".images",
    "ImageMatch": ".gallery.index",
    "ImageTags": ".uses.tag",
    "MissingExtraError": ".utils.extras",
    "ModelNotFoundError": ".hub",
    "Neuron": ".explore.neurons",
    "NeuronImage": ".explore.neurons",
    "OneNet": ".onenet",
    "OneNetConfig": ".configuration_onenet",
    "OneNetError": ".errors",
    "OneNetImageProcessor": ".image_processing_onenet",
    "OneNetImageToTextPipeline": ".image_to_text",
    "OneNetModel": ".modeling_onenet",
    "OneNetOutput": ".modeling_onenet",
    "OneNetPreTrainedModel": ".modeling_onenet",
    "OneNetProcessor": ".processing_onenet",
    "ScoredWord": ".uses.words",
    "StageActivations": ".explore.layers",
    "UnknownWordError": ".language.word_vectors",
    "WordSaliency": ".explore.explain",
    "WordVectors": ".language.word_vectors",
    "build_tokenizer": ".tokenization_onenet",
    "load_image": ".images",
    "read_coco": ".data.datasets",
    "read_flickr8k": ".data.datasets",
    "read_split": ".data.datasets",
    "resolve_model": ".hub",
}
__all__ = [
    "Caption",
    "CaptionExplanation",
    "CaptionedImage",
    "DEFAULT_MODEL_ID",
    "DatasetError",
    "EmbeddingMap",
    "GalleryIndex",
    "GalleryIndexError",
    "ImageLoadError",
    "ImageMatch",
    "ImageTags",
    "MissingExtraError",
    "ModelNotFoundError",
    "Neuron",
    "NeuronImage",
    "OneNet",
    "OneNetConfig",
    "OneNetError",
    "OneNetImageProcessor",
    "OneNetImageToTextPipeline",
    "OneNetModel",
    "OneNetOutput",
    "OneNetPreTrainedModel",
    "OneNetProcessor",
    "ScoredWord",
    "StageActivations",
    "UnknownWordError",
    "WordSaliency",
    "WordVectors",
    "build_tokenizer",
    "load_image",
    "read_coco",
    "read_flickr8k",
    "read_split",
    "resolve_model",
]


def __getattr__(name: str):
    """Load a public name's module on first use (PEP 562), so importing the package imports no torch."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))


register_with_auto_classes()
