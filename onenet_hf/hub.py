"""Where a model comes from: a local folder as it is, or a Hugging Face Hub repo id resolved through the Hub cache.

Resolution goes through `huggingface_hub.snapshot_download`, so `HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE` and
`HF_TOKEN` work as everywhere in the Hugging Face ecosystem; a cached snapshot is used without any network call
when the Hub cannot be reached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigValueError, OneNetError
from .utils.messages import shorten

DEFAULT_MODEL_ID = "onenet-hf/onenet-flickr8k"
MODEL_ENV = "ONENET_MODEL"  # overrides the default model of the CLI and the Space, e.g. a local checkpoint folder
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json")


class ModelNotFoundError(OneNetError):
    """The model is neither a complete local OneNet folder nor a OneNet repo that the Hub (or its cache) holds."""


def default_model() -> str:
    """The model used when none is given: `$ONENET_MODEL` if set, else the released Hub repo."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL_ID


def _hub_snapshot(repo_id: str, revision: str | None, with_onnx: bool) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" at revision {revision!r}" if revision else ""
    try:
        folder = snapshot_download(repo_id, revision=revision, ignore_patterns=None if with_onnx else ["onnx/*"])
    except HFValidationError:
        raise ModelNotFoundError(f"{repo_id!r} is neither a model folder nor a Hub repo id (ORG/NAME)") from None
    except RevisionNotFoundError:
        raise ModelNotFoundError(f"the Hub repo {repo_id} has no revision {revision!r}") from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise ModelNotFoundError(
            f"no model repo {repo_id} on the Hub (or it is private: log in with `hf auth login`); "
            "or pass --model DIR with a local checkpoint"
        ) from None
    except (LocalEntryNotFoundError, OSError):
        reason = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else "the Hub cannot be reached"
        raise ModelNotFoundError(
            f"{repo_id}{at} is not in the Hub cache ({constants.HF_HUB_CACHE}) nor a local folder, and {reason}; "
            f"download it once with `hf download {repo_id}`, or pass --model DIR with a local checkpoint"
        ) from None
    return Path(folder)


def check_model_folder(folder: Path, name: str | None = None) -> Path:
    """Refuse a folder that is not a complete OneNet checkpoint, naming what is missing or wrong."""
    name = name or str(folder)
    missing = [file for file in REQUIRED_FILES if not (folder / file).is_file()]
    if missing:
        raise ModelNotFoundError(f"{name} is not a complete OneNet model: missing {', '.join(missing)}")
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError):
        raise ModelNotFoundError(f"{name} is not a OneNet model: config.json is not a JSON object") from None
    if model_type != "onenet":
        raise ModelNotFoundError(f"{name} is not a OneNet model (config.json says model_type {model_type!r})")
    return folder


@contextmanager
def loading_checkpoint(folder: Path) -> Iterator[None]:
    """Around reading a checkpoint that `check_model_folder` accepted: damaged files (truncated weights, a
    tokenizer.json that is not JSON, impossible sizes in config.json) end in one error naming the folder and what
    the library said, instead of that library's traceback."""
    try:
        yield
    except ConfigValueError as error:  # a value out of range: the file's fault, named as the others are
        raise _damaged(folder, str(error)) from None
    except OneNetError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever safetensors, tokenizers, transformers or torch raise
        raise _damaged(folder, f"{type(error).__name__}: {shorten(str(error))}") from None


def _damaged(folder: Path, detail: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"{folder} cannot be loaded, a file of it is damaged ({detail}); download or save the model again"
    )


def resolve_model(model: str | os.PathLike, revision: str | None = None, with_onnx: bool = False) -> Path:
    """The local folder holding `model`: a folder is returned as it is, a Hub repo id as its cached snapshot.

    `revision` (branch, tag or commit) applies to Hub ids; `with_onnx` also fetches the release's `onnx/` graphs.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if revision:
            raise ModelNotFoundError(f"--revision applies to Hub repo ids; {model} is a local folder")
        return check_model_folder(path)
    text = str(model)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:  # a path
        raise ModelNotFoundError(f"{model}: no such model folder")
    return check_model_folder(_hub_snapshot(text, revision, with_onnx), f"the Hub repo {text}")


__all__ = [
    "DEFAULT_MODEL_ID",
    "MODEL_ENV",
    "ModelNotFoundError",
    "check_model_folder",
    "default_model",
    "loading_checkpoint",
    "resolve_model",
]
