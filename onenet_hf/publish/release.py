"""A release is a complete Hugging Face Hub model repo: weights, config, processor, generation config, ONNX graphs,
training logs, the evaluations behind its figures and a model card whose YAML metrics are read from them.

Written into a temporary sibling folder and renamed into place at the end, so a failed release leaves nothing
half-written; `push_release` uploads such a folder with `HfApi`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import OneNetError
from ..hub import check_model_folder
from ..training.captions import LOG_FILE
from ..training.heads import HEADS_LOG_FILE
from ..training.scst import SCST_LOG_FILE
from ..utils.atomic_files import check_new_folder, new_folder, write_json
from ..utils.messages import first_line

CARD_FILE = "README.md"
EVAL_FOLDER = "eval"
TRAINING_LOGS = (LOG_FILE, HEADS_LOG_FILE, SCST_LOG_FILE)  # each stage's per-epoch figures
CARD_METADATA = {
    "language": "en",
    "license": "apache-2.0",
    "library_name": "transformers",
    "pipeline_tag": "image-to-text",
    "tags": ["image-captioning", "efficientnet-lite", "lstm", "onenet", "custom_code"],
    "datasets": ["flickr8k"],
    "metrics": ["bleu", "meteor", "rouge", "cider", "precision", "recall", "accuracy"],
}
# What each `onenet evaluate --task` measures, as the Hub's model-index names it.
TASK_TYPES = {
    "captions": ("image-to-text", "Image captioning"),
    "tags": ("image-classification", "Tagging with GloVe words"),
    "retrieval": ("text-to-image-retrieval", "Describe to search"),
    "analogy": ("word-analogy", "Word analogies (Google questions-words)"),
}
METRIC_TYPES = {
    "BLEU": "bleu",
    "METEOR": "meteor",
    "ROUGE": "rouge",
    "CIDEr": "cider",
    "precision": "precision",
    "repeated_bigram": "repeated_bigram_rate",  # loops: % of captions that say a word pair twice
    "distinct_words": "distinct_words",  # vocabulary used across the captions
}


class ReleaseError(OneNetError):
    """A release cannot be written or pushed as asked; the message says why."""


def front_matter_free(text: str) -> str:
    """A card body without its YAML front matter (the release builds its own from the evaluations)."""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end < 0:
            raise ReleaseError("the model card's YAML front matter has no closing '---' line")
        text = text[end + 5 :]
    return text.lstrip("\n")


def _metric_type(name: str) -> str:
    return next((kind for prefix, kind in METRIC_TYPES.items() if name.startswith(prefix)), "recall")


def eval_results(result: dict):
    """The model-index entries (`EvalResult`) of one `onenet evaluate --output` JSON, values as measured."""
    from huggingface_hub import EvalResult

    task = result.get("task")
    if task not in TASK_TYPES or not isinstance(result.get("metrics"), dict):
        raise ReleaseError(f"not an `onenet evaluate --output` file (task {task!r}); evaluate again with --output")
    task_type, task_name = TASK_TYPES[task]
    dataset = result.get("dataset", "google-analogies" if task == "analogy" else None)
    if dataset is None:
        raise ReleaseError(f"the {task} evaluation does not say its dataset; evaluate again with this version")
    split = result.get("split", "test")
    common = {"task_type": task_type, "task_name": task_name, "dataset_type": dataset, "dataset_split": split}
    common["dataset_name"] = f"{dataset} ({split} split)" if task != "analogy" else "Google analogy questions"
    rows = []
    if task == "captions":
        beam = f" (beam {result['beam_size']})"
        rows = [(name + beam, _metric_type(name), value) for name, value in result["metrics"].items()]
    elif task == "tags":
        rows = [("Tag precision@5", "precision", result["metrics"]["tag_precision@5"])]
    elif task == "retrieval":
        for method, values in result["metrics"].items():
            rows += [(f"{method}: {name}", "recall", value) for name, value in values.items() if "R@" in name]
    else:
        space = result.get("space", "glove")
        for method, sections in result["metrics"].items():
            total = sections.get("total", next(iter(sections.values())))
            rows.append((f"{method} accuracy ({space} space)", "accuracy", total["accuracy"]))
    return [EvalResult(metric_name=name, metric_type=kind, metric_value=value, **common) for name, kind, value in rows]


def model_card(evaluations: list[dict], body: str, model_name: str):
    """The release's README.md: YAML from `CARD_METADATA` and the evaluations, then the hand-written body."""
    from huggingface_hub import ModelCard, ModelCardData

    try:
        results = [row for result in evaluations for row in eval_results(result)]
    except (AttributeError, KeyError, TypeError) as error:  # valid JSON, but not what `onenet evaluate` writes
        raise ReleaseError(f"not an `onenet evaluate --output` file ({type(error).__name__}: {error})") from None
    data = ModelCardData(model_name=model_name, eval_results=results or None, **CARD_METADATA)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{front_matter_free(body)}")


_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def linked_images(body: str) -> list[str]:
    """The relative paths of the images a card shows (`![alt](figures/map.png)`); web links are left alone."""
    links = [link for link in _IMAGE_LINK.findall(body) if "://" not in link]
    for link in links:
        if Path(link).is_absolute() or ".." in Path(link).parts:
            raise ReleaseError(f"the card shows {link}: give images as paths inside the card's folder")
    return sorted(set(links))


def write_release(
    model: str | os.PathLike,
    out: str | os.PathLike,
    evaluation_files: list[str | os.PathLike] = (),
    card_body_file: str | os.PathLike | None = None,
    model_name: str | None = None,
    half_precision_weights: bool = False,
    onnx: bool = True,
    calibration_images: str | os.PathLike | None = None,
) -> Path:
    """Write the release of `model` (folder or Hub id) to `out`, which must not exist yet (or be empty).
    `calibration_images`: a folder of photos (not ones evaluated on) whose first `onnx.backend.CALIBRATION_IMAGES`
    calibrate the static int8 image encoder, so the release ships `onenet index`'s fast path."""
    from ..onenet import OneNet

    out = Path(out)
    check_new_folder(out, "a release")
    calibration = []
    if calibration_images is not None:
        from ..gallery.build import list_images
        from ..onnx.backend import CALIBRATION_IMAGES

        if not onnx:
            raise ReleaseError("--calibration-images calibrates the ONNX export, which --no-onnx leaves out")
        calibration = list_images(calibration_images)[:CALIBRATION_IMAGES]
        if not calibration:
            raise ReleaseError(f"no images in {calibration_images} to calibrate on")
    evaluations = []
    for file in evaluation_files:
        try:
            evaluations.append(json.loads(Path(file).read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise ReleaseError(f"cannot read the evaluation {file}: {error}") from None
    try:
        body = (
            Path(card_body_file).read_text(encoding="utf-8")
            if card_body_file
            else _default_body(model_name or out.name)
        )
    except (OSError, UnicodeDecodeError) as error:
        raise ReleaseError(f"cannot read the card body {card_body_file}: {error}") from None
    card = model_card(evaluations, body, model_name or out.name)  # refuse bad evaluations before any work
    card_folder = Path(card_body_file).parent if card_body_file else Path(".")
    images = linked_images(body)
    missing = [link for link in images if not (card_folder / link).is_file()]
    if missing:
        raise ReleaseError(f"the card shows {missing[0]}, which is not in {card_folder}: make it first")
    net = OneNet.from_pretrained(model)
    source = Path(net.model.name_or_path)
    with new_folder(out, "a release") as building:
        net.save_pretrained(building, half_precision_weights=half_precision_weights)
        for log in TRAINING_LOGS:
            if (source / log).is_file():
                shutil.copyfile(source / log, building / log)
        (building / EVAL_FOLDER).mkdir()
        for file, result in zip(evaluation_files, evaluations, strict=True):
            write_json(result, building / EVAL_FOLDER / Path(file).name)
        card.save(building / CARD_FILE)
        for link in images:  # the card's pictures, at the paths it links them by
            (building / link).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(card_folder / link, building / link)
        if onnx:
            from ..onnx.export import export_onnx

            export_onnx(building, building / "onnx", calibration_images=calibration)
    return out


def _default_body(name: str) -> str:
    return (
        f"# {name}\n\nA OneNet model: one image representation from a frozen EfficientNet-Lite2, one LSTM decoder "
        "that captions it; the same network tags, searches and relates words.\n"
    )


@dataclass(frozen=True)
class ReleaseFile:
    """A file of a release folder and its size, as `push --dry-run` lists them."""

    path: str
    size: int


def release_files(folder: str | os.PathLike) -> list[ReleaseFile]:
    """Every file a push uploads (hidden files and folders left out, as `upload_folder` does), sorted."""
    folder = check_model_folder(Path(folder))
    if not (folder / CARD_FILE).is_file():
        raise ReleaseError(f"{folder} has no {CARD_FILE} (model card): write the folder with `onenet release`")
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return [ReleaseFile(p.relative_to(folder).as_posix(), p.stat().st_size) for p in sorted(files)]


def push_release(folder: str | os.PathLike, repo_id: str, private: bool = False, dry_run: bool = False):
    """Upload a release folder to the Hub model repo `repo_id` (created if needed); with `dry_run`, only list it."""
    files = release_files(folder)
    if dry_run:
        return files
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    # HfHubHTTPError derives from the HTTP client's base error (httpx's, or httpx2's in huggingface_hub 2), which
    # also covers a refused connection, a failed DNS look-up and a timeout: no network is one line, not a traceback
    failures = (OSError, ValueError, HfHubHTTPError, *HfHubHTTPError.__bases__)
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        return api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", ignore_patterns=[".*"])
    except failures as error:  # not logged in, no network, no right to the repo
        raise ReleaseError(f"could not push to {repo_id} ({api.endpoint}): {first_line(error)}") from None


__all__ = [
    "ReleaseError",
    "ReleaseFile",
    "eval_results",
    "model_card",
    "push_release",
    "release_files",
    "write_release",
]
