"""OneNet: one image-captioning network whose representations serve many uses.

`OneNet` is the Python API: `OneNet.from_pretrained(...)`, then one method per use. Below it, transformers-style
classes (config, model, processors, pipeline) and the result types the methods return. Importing the package
registers OneNet with transformers' Auto classes.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor

from .configuration_onenet import OneNetConfig
from .data import CaptionedImage, DatasetError, read_coco, read_flickr8k, read_split
from .errors import OneNetError
from .extras import MissingExtraError
from .gallery import GalleryIndex, GalleryIndexError, ImageMatch
from .hub import DEFAULT_MODEL_ID, ModelNotFoundError, resolve_model
from .image_processing_onenet import ImageLoadError, OneNetImageProcessor, load_image
from .image_to_text import OneNetImageToTextPipeline
from .modeling_onenet import OneNetModel, OneNetOutput, OneNetPreTrainedModel
from .onenet import OneNet
from .processing_onenet import OneNetProcessor
from .tokenization_onenet import build_tokenizer
from .uses.caption import Caption
from .uses.explain import CaptionExplanation, WordSaliency
from .uses.layers import StageActivations
from .uses.maps import EmbeddingMap
from .uses.neurons import Neuron, NeuronImage
from .uses.tag import ImageTags
from .uses.words import ScoredWord
from .word_vectors import UnknownWordError, WordVectors

AutoConfig.register("onenet", OneNetConfig, exist_ok=True)
AutoModel.register(OneNetConfig, OneNetModel, exist_ok=True)
AutoModelForImageTextToText.register(OneNetConfig, OneNetModel, exist_ok=True)  # the pipeline loads through it
AutoImageProcessor.register(OneNetConfig, image_processor_classes={"pil": OneNetImageProcessor}, exist_ok=True)
AutoProcessor.register(OneNetConfig, OneNetProcessor, exist_ok=True)

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
