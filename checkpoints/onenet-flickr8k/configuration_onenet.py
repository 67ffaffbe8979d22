"""OneNet remote code for transformers (`trust_remote_code=True`): OneNetConfig from the installed package.

Needs `pip install onenet_hf`; the code itself lives in that package."""

from onenet_hf.configuration_onenet import OneNetConfig

__all__ = ["OneNetConfig"]
