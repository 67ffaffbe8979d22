"""OneNet remote code for transformers (`trust_remote_code=True`): OneNetImageProcessor from the installed package.

Needs `pip install onenet_hf`; the code itself lives in that package."""

from onenet_hf.image_processing_onenet import OneNetImageProcessor

__all__ = ["OneNetImageProcessor"]
