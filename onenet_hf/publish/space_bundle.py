"""`onenet build-space`: a self-contained Hugging Face Space repo (Gradio SDK) that starts without embedding anything.

The folder holds `app.py`, a Spaces `README.md`, `requirements.txt` (public packages only), the `onenet_hf` package
itself (Spaces put the app's folder on `sys.path`; a wheel named in requirements.txt would not be there when
Spaces installs it), the model, the gallery photos with their licences and a prebuilt gallery index.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..data.example_photos import PHOTO_CREDITS, example_gallery
from ..errors import OneNetError
from ..gallery.ann import ANN_METHODS
from ..gallery.build import IMAGE_SUFFIXES, list_images, relocate_paths
from ..gallery.index import GalleryIndexError
from ..hub import DEFAULT_MODEL_ID, check_model_folder, resolve_model
from ..utils.atomic_files import check_new_folder, new_folder
from ..utils.extras import require
from ..utils.messages import escape_controls, first_line, printable_path

MODEL_FOLDER, GALLERY_FOLDER, INDEX_FOLDER = "model", "gallery", "gallery_index"
ATTRIBUTION_FILE = "ATTRIBUTION.md"
# COCO's own licence table (ids as in the `license` field of its images); only these allow redistribution
# in a public demo without further permission, with attribution.
COCO_REDISTRIBUTABLE = {
    4: ("CC BY 2.0", "http://creativecommons.org/licenses/by/2.0/"),
    5: ("CC BY-SA 2.0", "http://creativecommons.org/licenses/by-sa/2.0/"),
    7: ("No known copyright restrictions", "http://flickr.com/commons/usage/"),
    8: ("United States Government Work", "http://www.usa.gov/copyright.shtml"),
}
APP = '''"""OneNet Space, built by `onenet build-space`: the UI is `onenet_hf.space.app`; model and gallery are here."""

from onenet_hf.space.launch import main

if __name__ == "__main__":
    main(["--model", "{model}", "--gallery", "{gallery}", "--index-dir", "{index}"])
'''


class SpaceBundleError(OneNetError):
    """A Space folder cannot be built as asked; the message says why."""


@dataclass(frozen=True)
class GalleryPhoto:
    """A photo for the Space's gallery and its credit in ATTRIBUTION.md (after the name it has in the bundle)."""

    path: Path
    credit: str


def gallery_photos(gallery: str | os.PathLike | None) -> list[GalleryPhoto]:
    """The example gallery (scikit-image's and scikit-learn's openly licensed photos), plus a folder's images or,
    for a COCO-format folder, its openly licensed photos."""
    photos = [GalleryPhoto(p, PHOTO_CREDITS[p.name]) for p in example_gallery()]
    if gallery is None:
        return photos
    folder = Path(gallery)
    coco = sorted(folder.glob("captions*.json")) if folder.is_dir() else []
    if not coco:
        return photos + [GalleryPhoto(p, "from the builder's own folder") for p in list_images(folder)]
    try:
        images = json.loads(coco[0].read_text(encoding="utf-8"))["images"]
        images = [image for image in images if isinstance(image, dict) and isinstance(image.get("file_name"), str)]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SpaceBundleError(f"{coco[0]} is not a COCO captions file ({type(error).__name__}: {error})") from None
    for image in images:
        if image.get("license") in COCO_REDISTRIBUTABLE and (folder / "images" / image["file_name"]).is_file():
            name, link = COCO_REDISTRIBUTABLE[image["license"]]
            credit = f"Flickr photo {image.get('flickr_url', '')} (MS-COCO), [{name}]({link})"
            photos.append(GalleryPhoto(folder / "images" / image["file_name"], credit))
    return photos


def publishable_photos(photos: list[GalleryPhoto], gallery: str | os.PathLike | None) -> list[GalleryPhoto]:
    """The photos a public bundle may copy: files inside the gallery folder (a link is followed only within it)
    whose names are text. Each other file (a link out of the gallery, a broken link, a loop) is left out with a
    line on stderr. Whether a file is an image the index decides (`build_space` deletes and uncredits the copies it
    skips), so each photo is decoded once."""
    samples = set(example_gallery())  # the package's own photos, credited in PHOTO_CREDITS
    root = os.path.realpath(gallery) if gallery is not None else ""
    kept = []
    for photo in photos:
        problem = None if photo.path in samples else _unpublishable(photo.path, root)
        if problem:
            _leave_out(photo.path, problem)
        else:
            kept.append(photo)
    return kept


def _unpublishable(path: Path, root: str) -> str | None:
    """Why a gallery file may not be published (None: it may, if the index reads it as an image)."""
    real = os.path.realpath(path)  # unlike Path.resolve, no error on a link loop
    if os.path.commonpath([root, real]) != root:
        return "a link to a file outside the gallery"
    if not os.path.isfile(real):
        return "a broken link, a link loop or not a file"
    if printable_path(path) != str(path) or printable_path(real) != real:
        return "the name is not valid UTF-8; rename it to publish it"
    return None


def _leave_out(path: Path, problem: str) -> None:
    print(f"left out of the Space: {escape_controls(printable_path(path))}: {problem}", file=sys.stderr)


def _drop_skipped(space, copied: dict[str, tuple[str, GalleryPhoto]]) -> list[tuple[str, GalleryPhoto]]:
    """The copied photos (by the real path of their copy: its name in the bundle and the photo) less those the
    Space's index skipped, whose copies are deleted, each with a line on stderr (a text file named `.jpg`, a
    truncated photo); the index is then brought to the photos kept (nothing is embedded: it only forgets the
    skipped files)."""
    skipped = space.index.metadata["skipped"]
    for entry in skipped:
        copy = os.path.realpath(entry["path"])
        if copy in copied:  # the reason without the copy's path, which is the builder's temporary folder
            reason = entry["reason"].removeprefix(f"{entry['path']}: ").removeprefix(f"{copy}: ")
            _leave_out(copied.pop(copy)[1].path, escape_controls(reason))
            os.unlink(copy)
    if skipped:
        space.update_index()
    return list(copied.values())


def space_requirements(with_onnx: bool) -> list[str]:
    """What the Space installs: onenet_hf's own requirements, its `space` extra and, for ONNX captions, `onnx`."""
    wanted = {"space"} | ({"onnx"} if with_onnx else set())
    lines = []
    for requirement in importlib.metadata.requires("onenet_hf") or []:
        name, _, marker = requirement.partition(";")
        extra = marker.split("==")[-1].strip().strip("\"'") if "extra" in marker else None
        if extra is None or extra in wanted:
            lines.append(name.strip())
    return sorted(set(lines), key=str.lower)


def lfs_attributes() -> str:
    """The bundle's `.gitattributes`: weights, graphs, index files and gallery photos go to Git LFS, as the Hub
    wants binary files pushed (a plain `git push` of the folder then works); suffixes in either case."""
    suffixes = ["safetensors", "onnx", "npy", "sqlite", *ANN_METHODS, *(s.lstrip(".") for s in sorted(IMAGE_SUFFIXES))]
    either_case = ("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in suffix) for suffix in suffixes)
    return "".join(f"*.{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in either_case)


def space_card(model_id: str) -> str:
    """The Space's README.md: Spaces YAML (gradio SDK, app file, the model repo it shows) and a short text."""
    import gradio
    from huggingface_hub import SpaceCard, SpaceCardData

    data = SpaceCardData(
        title="OneNet",
        sdk="gradio",
        sdk_version=gradio.__version__,
        app_file="app.py",
        license="apache-2.0",
        models=[model_id],
        emoji="🖼️",
        colorFrom="indigo",
        colorTo="yellow",
        pinned=False,
        short_description="One network, six uses: caption, tag, words, analogies, similar images, text search",
    )
    text = (
        "# OneNet\n\nOne image encoder and one caption decoder, six uses: caption, tag, similar words, analogy, "
        f"similar images and describe to search. Model: [{model_id}](https://huggingface.co/{model_id}); "
        f"gallery photos and their licences: [{ATTRIBUTION_FILE}]({ATTRIBUTION_FILE}).\n"
    )
    return str(SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{text}"))


def build_space(
    model: str | os.PathLike,
    out: str | os.PathLike,
    gallery: str | os.PathLike | None = None,
    revision: str | None = None,
    model_id: str | None = None,
) -> Path:
    """Write the Space folder `out` (new or empty) for `model` (folder or Hub id) and a gallery; atomic."""
    require("gradio", "space", "onenet build-space")  # before any work: one line naming the extra
    from ..space.service import OneNetSpace

    out = Path(out)
    check_new_folder(out, "a Space folder")
    source = resolve_model(model, revision, with_onnx=True)
    is_hub_id = not Path(model).expanduser().is_dir()
    photos = publishable_photos(gallery_photos(gallery), gallery)
    with new_folder(out, "a Space folder") as building:
        shutil.copytree(source, building / MODEL_FOLDER, ignore=shutil.ignore_patterns(".*"))
        (building / GALLERY_FOLDER).mkdir()
        copied = {}  # bundled file -> (its name, the photo)
        for photo in photos:
            name, count = photo.path.name, 1
            while os.path.realpath(building / GALLERY_FOLDER / name) in copied:  # photos of one name: each its own
                name, count = f"{count}-{photo.path.name}", count + 1
            shutil.copyfile(os.path.realpath(photo.path), building / GALLERY_FOLDER / name)
            copied[os.path.realpath(building / GALLERY_FOLDER / name)] = (name, photo)
        check_model_folder(building / MODEL_FOLDER)
        try:  # what the Space does at start: load the model, build the gallery index it then finds ready
            space = OneNetSpace(
                building / MODEL_FOLDER, building / GALLERY_FOLDER, folder=building / INDEX_FOLDER, export_cache=None
            )  # the index alone: the Space exports what its captions need at its own start
        except GalleryIndexError:
            raise
        except Exception as error:  # a corrupt weight file fails in safetensors, torch or transformers
            raise SpaceBundleError(f"the model {model} does not load: {first_line(error)}") from None
        credits = "\n".join(f"- `{name}`: {photo.credit}" for name, photo in _drop_skipped(space, copied))
        relocate_paths(space.index.folder, building)  # published: no path of the builder's machine
        (building / ATTRIBUTION_FILE).write_text(f"# Gallery photos\n\n{credits}\n", encoding="utf-8")
        shutil.copytree(Path(__file__).parents[1], building / "onenet_hf", ignore=shutil.ignore_patterns("__pycache__"))
        requirements = space_requirements(with_onnx=(building / MODEL_FOLDER / "onnx").is_dir())
        (building / "requirements.txt").write_text("\n".join(requirements) + "\n")
        (building / ".gitattributes").write_text(lfs_attributes())
        (building / "README.md").write_text(space_card(str(model) if is_hub_id else model_id or DEFAULT_MODEL_ID))
        (building / "app.py").write_text(APP.format(model=MODEL_FOLDER, gallery=GALLERY_FOLDER, index=INDEX_FOLDER))
    return out


__all__ = [
    "SpaceBundleError",
    "build_space",
    "gallery_photos",
    "lfs_attributes",
    "publishable_photos",
    "space_card",
    "space_requirements",
]
