"""OneNet remote code for transformers (`trust_remote_code=True`): OneNetImageToTextPipeline from the installed package.

Needs `pip install onenet_hf`; the code itself lives in that package."""

from onenet_hf.image_to_text import OneNetImageToTextPipeline

__all__ = ["OneNetImageToTextPipeline"]
