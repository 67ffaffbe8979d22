"""OneNet: one image-captioning network whose representations serve many uses.

Importing the package registers OneNet with transformers' Auto classes.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor

from .configuration_onenet import OneNetConfig
from .data import CaptionedImage, DatasetError, read_coco, read_flickr8k, read_split
from .image_processing_onenet import ImageLoadError, OneNetImageProcessor, load_image
from .modeling_onenet import OneNetModel, OneNetOutput, OneNetPreTrainedModel
from .pipeline import OneNet
from .processing_onenet import OneNetProcessor
from .tokenization_onenet import build_tokenizer
from .uses.caption import Caption, caption_images

AutoConfig.register("onenet", OneNetConfig, exist_ok=True)
AutoModel.register(OneNetConfig, OneNetModel, exist_ok=True)
AutoImageProcessor.register(OneNetConfig, image_processor_classes={"pil": OneNetImageProcessor}, exist_ok=True)
AutoProcessor.register(OneNetConfig, OneNetProcessor, exist_ok=True)

__all__ = [
    "Caption",
    "CaptionedImage",
    "DatasetError",
    "ImageLoadError",
    "OneNet",
    "OneNetConfig",
    "OneNetImageProcessor",
    "OneNetModel",
    "OneNetOutput",
    "OneNetPreTrainedModel",
    "OneNetProcessor",
    "build_tokenizer",
    "caption_images",
    "load_image",
    "read_coco",
    "read_flickr8k",
    "read_split",
]
