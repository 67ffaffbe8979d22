"""OneNet: one image-captioning network whose representations serve many uses.

Importing the package registers OneNet with transformers' Auto classes.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor

from .configuration_onenet import OneNetConfig
from .data import CaptionedImage, DatasetError, read_coco, read_flickr8k, read_split
from .gallery import GalleryIndex, GalleryIndexError, ImageMatch, build_index
from .hub import DEFAULT_MODEL_ID, ModelNotFoundError, resolve_model
from .image_processing_onenet import ImageLoadError, OneNetImageProcessor, load_image
from .image_to_text import OneNetImageToTextPipeline
from .modeling_onenet import OneNetModel, OneNetOutput, OneNetPreTrainedModel
from .pipeline import OneNet
from .processing_onenet import OneNetProcessor
from .tokenization_onenet import build_tokenizer
from .uses.caption import Caption, caption_images
from .uses.describe import search_by_description
from .uses.similar_images import similar_images
from .uses.tag import ImageTags, tag_images
from .uses.words import ScoredWord, analogy, learned_vectors, similar_words
from .word_vectors import UnknownWordError, WordVectors, glove_vectors

AutoConfig.register("onenet", OneNetConfig, exist_ok=True)
AutoModel.register(OneNetConfig, OneNetModel, exist_ok=True)
AutoModelForImageTextToText.register(OneNetConfig, OneNetModel, exist_ok=True)  # the pipeline loads through it
AutoImageProcessor.register(OneNetConfig, image_processor_classes={"pil": OneNetImageProcessor}, exist_ok=True)
AutoProcessor.register(OneNetConfig, OneNetProcessor, exist_ok=True)

__all__ = [
    "Caption",
    "CaptionedImage",
    "DEFAULT_MODEL_ID",
    "DatasetError",
    "GalleryIndex",
    "GalleryIndexError",
    "ImageLoadError",
    "ImageMatch",
    "ImageTags",
    "ModelNotFoundError",
    "OneNet",
    "OneNetConfig",
    "OneNetImageProcessor",
    "OneNetImageToTextPipeline",
    "OneNetModel",
    "OneNetOutput",
    "OneNetPreTrainedModel",
    "OneNetProcessor",
    "ScoredWord",
    "UnknownWordError",
    "WordVectors",
    "analogy",
    "build_index",
    "build_tokenizer",
    "caption_images",
    "glove_vectors",
    "learned_vectors",
    "load_image",
    "read_coco",
    "read_flickr8k",
    "read_split",
    "resolve_model",
    "search_by_description",
    "similar_images",
    "similar_words",
    "tag_images",
]
