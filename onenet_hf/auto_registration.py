"""OneNet joins transformers' Auto classes when transformers loads them, not when `onenet_hf` is imported.

`import onenet_hf` must stay cheap (the CLI answers `--help` without torch), yet `AutoModel.from_pretrained` on a
OneNet checkpoint must work whichever of the two a program imports first. So each registration runs right after
the transformers module it extends has run: at once if it already has, else from an import hook, which also waits
for the OneNet module when that one is still running its own code.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable


def _register_config() -> None:
    from transformers import AutoConfig

    from .configuration_onenet import OneNetConfig

    AutoConfig.register("onenet", OneNetConfig, exist_ok=True)


def _register_models() -> None:
    from transformers import AutoModel, AutoModelForImageTextToText

    from .configuration_onenet import OneNetConfig
    from .modeling_onenet import OneNetModel

    AutoModel.register(OneNetConfig, OneNetModel, exist_ok=True)
    AutoModelForImageTextToText.register(OneNetConfig, OneNetModel, exist_ok=True)  # the pipelines load through it


def _register_image_processor() -> None:
    from transformers import AutoImageProcessor

    from .configuration_onenet import OneNetConfig
    from .image_processing_onenet import OneNetImageProcessor

    AutoImageProcessor.register(OneNetConfig, image_processor_classes={"pil": OneNetImageProcessor}, exist_ok=True)


def _register_processor() -> None:
    from transformers import AutoProcessor

    from .configuration_onenet import OneNetConfig
    from .processing_onenet import OneNetProcessor

    AutoProcessor.register(OneNetConfig, OneNetProcessor, exist_ok=True)


_AUTO = "transformers.models.auto."
# transformers' Auto module -> the OneNet module whose class it gets, and the registration
REGISTRATIONS: dict[str, tuple[str, Callable[[], None]]] = {
    _AUTO + "configuration_auto": ("onenet_hf.configuration_onenet", _register_config),
    _AUTO + "modeling_auto": ("onenet_hf.modeling_onenet", _register_models),
    _AUTO + "image_processing_auto": ("onenet_hf.image_processing_onenet", _register_image_processor),
    _AUTO + "processing_auto": ("onenet_hf.processing_onenet", _register_processor),
}


def _importing(module: str) -> bool:
    """The module is running its own code now (partly initialised): its classes may not exist yet."""
    loaded = sys.modules.get(module)
    return loaded is not None and bool(getattr(getattr(loaded, "__spec__", None), "_initializing", False))


_ONENET_MODULES = {onenet_module for onenet_module, _ in REGISTRATIONS.values()}


def _register_ready(just_run: str | None = None) -> None:
    """Run the registrations whose Auto module has run its code and whose OneNet module is not midway through its
    own; `just_run`, a module that has just finished running (and may not look finished yet), limits them to its."""
    for auto_module, (onenet_module, register) in REGISTRATIONS.items():
        if just_run not in (None, auto_module, onenet_module):
            continue
        auto_ready = auto_module == just_run or (auto_module in sys.modules and not _importing(auto_module))
        if auto_ready and (onenet_module == just_run or not _importing(onenet_module)):
            register()


class _RegisterAfterLoading(importlib.abc.Loader):
    """Runs a module as its own loader would, then the registrations it completes."""

    def __init__(self, loader: importlib.abc.Loader, name: str):
        self._loader, self._name = loader, name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _register_ready(self._name)

    def __getattr__(self, name: str):  # get_source, get_filename, ... as the wrapped loader answers them
        return getattr(self._loader, name)


class _AutoClassesFinder(importlib.abc.MetaPathFinder):
    """Finds transformers' Auto modules and OneNet's model modules as the path finder does, with a loader that
    registers OneNet once both sides of a registration have run (so the OneNet modules never import this one)."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in REGISTRATIONS and fullname not in _ONENET_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfterLoading(spec.loader, fullname)
        return spec


def register_with_auto_classes() -> None:
    """Register with every Auto class already loaded; the others register when they load (`import onenet_hf`
    calls this before any OneNet module can load)."""
    if not any(isinstance(finder, _AutoClassesFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AutoClassesFinder())
    _register_ready()


__all__ = ["REGISTRATIONS", "register_with_auto_classes"]
