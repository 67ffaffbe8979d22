"""OneNet: one image-captioning network whose representations serve many uses.

Importing the package registers OneNet with transformers' Auto classes.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor

from .configuration_onenet import OneNetConfig
from .data import CaptionedImage, DatasetError, read_coco, read_flickr8k, read_split
from .gallery import GalleryIndex, GalleryIndexError, ImageMatch, build_index
from .image_processing_onenet import ImageLoadError, OneNetImageProcessor, load_image
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
AutoImageProcessor.register(OneNetConfig, image_processor_classes={"pil": OneNetImageProcessor}, exist_ok=True)
AutoProcessor.register(OneNetConfig, OneNetProcessor, exist_ok=True)

__all__ = [
    "Caption",
    "CaptionedImage",
    "DatasetError",
    "GalleryIndex",
    "GalleryIndexError",
    "ImageLoadError",
    "ImageMatch",
    "ImageTags",
    "OneNet",
    "OneNetConfig",
    "OneNetImageProcessor",
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
    "search_by_description",
    "similar_images",
    "similar_words",
    "tag_images",
]
