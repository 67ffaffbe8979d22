"""OneNet remote code for transformers (`trust_remote_code=True`): OneNetModel from the installed package.

Needs `pip install onenet_hf`; the code itself lives in that package."""

from onenet_hf.modeling_onenet import OneNetModel

__all__ = ["OneNetModel"]
