"""OneNet remote code for transformers (`trust_remote_code=True`): OneNetProcessor from the installed package.

Needs `pip install onenet_hf`; the code itself lives in that package."""

from onenet_hf.processing_onenet import OneNetProcessor

__all__ = ["OneNetProcessor"]
