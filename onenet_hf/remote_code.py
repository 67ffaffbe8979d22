"""The small Python files every OneNet checkpoint carries, so that transformers' own calls load it by Hub id with
`trust_remote_code=True` and nothing imported (`AutoModel`, `AutoProcessor`, `pipeline(model=ID)`).

Each file re-exports one class of the installed `onenet_hf` rather than copying its code: the checkpoint then runs
the same code as `OneNet.from_pretrained`, and without the package transformers says in one line to
`pip install onenet_hf`. `OneNetConfig.save_pretrained` writes them, with the `auto_map` that points at them.
"""

from __future__ import annotations

from pathlib import Path

from .utils.atomic_files import write_text

REMOTE_CLASSES = {  # file in the checkpoint -> the installed module and class it re-exports
    "configuration_onenet.py": ("onenet_hf.configuration_onenet", "OneNetConfig"),
    "modeling_onenet.py": ("onenet_hf.modeling_onenet", "OneNetModel"),
    "image_processing_onenet.py": ("onenet_hf.image_processing_onenet", "OneNetImageProcessor"),
    "processing_onenet.py": ("onenet_hf.processing_onenet", "OneNetProcessor"),
    "pipeline_onenet.py": ("onenet_hf.image_to_text", "OneNetImageToTextPipeline"),
}
AUTO_MAP = {  # config.json's auto_map: Auto class -> file.Class
    "AutoConfig": "configuration_onenet.OneNetConfig",
    "AutoModel": "modeling_onenet.OneNetModel",
    "AutoModelForImageTextToText": "modeling_onenet.OneNetModel",
    "AutoImageProcessor": "image_processing_onenet.OneNetImageProcessor",
    "AutoProcessor": "processing_onenet.OneNetProcessor",
}
# config.json's custom_pipelines: the one task `pipeline(model=ID, trust_remote_code=True)` picks when none is named.
# "image-to-text" (the card's pipeline_tag), not "image-text-to-text": that name stays transformers' own pipeline,
# which OneNet also serves without remote code (a prompt is a caption prefix).
CUSTOM_PIPELINES = {
    "image-to-text": {
        "impl": "pipeline_onenet.OneNetImageToTextPipeline",
        "pt": ["AutoModelForImageTextToText"],
        "tf": [],
        "type": "multimodal",
    }
}


class CarriesRemoteCode:
    """Mixin of OneNet's config, model and processor classes. Loading remote code, transformers records the class
    so that its next save copies the class's source files (here: half the package) beside the weights; a OneNet
    checkpoint carries its own re-exporting files instead, so there is nothing to record."""

    @classmethod
    def register_for_auto_class(cls, auto_class: str | None = None) -> None:
        return None


def remote_code_source(module: str, name: str) -> str:
    """One re-exporting file: a docstring naming the package to install, the import, `__all__`."""
    return (
        f'"""OneNet remote code for transformers (`trust_remote_code=True`): {name} from the installed package.\n\n'
        'Needs `pip install onenet_hf`; the code itself lives in that package."""\n\n'
        f"from {module} import {name}\n\n"
        f'__all__ = ["{name}"]\n'
    )


def write_remote_code(folder: str | Path) -> None:
    """Write (or refresh) the re-exporting files into a checkpoint folder."""
    for file, (module, name) in REMOTE_CLASSES.items():
        write_text(remote_code_source(module, name), Path(folder) / file)


__all__ = [
    "AUTO_MAP",
    "CUSTOM_PIPELINES",
    "REMOTE_CLASSES",
    "CarriesRemoteCode",
    "remote_code_source",
    "write_remote_code",
]
