"""What the Gradio Space serves: the six uses over one loaded model and one persisted gallery, as table rows.

`spaces/app.py` only builds the UI around an `OneNetSpace`; a `ValueError` from here is a user error
(the app shows it with `gr.Error`), anything else is a bug.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

from .gallery import GalleryIndex, list_images
from .image_processing_onenet import load_image
from .pipeline import OneNet
from .samples import sample_photos

GALLERY_CACHE = Path.home() / ".cache" / "onenet" / "galleries"
GalleryItem = tuple[str, str]
Rows = list[list]


class OneNetSpace:
    """A loaded checkpoint and a gallery index (built at start, reused at the next start).

    The index and added photos live in `folder` (a built Space ships one), by default one folder per gallery
    under `cache_dir`.

    Captions run on onnxruntime when the checkpoint has a matching ONNX export (`onenet export`), the
    other uses on PyTorch (the export covers the caption path only).
    """

    def __init__(
        self,
        model: str | Path,
        gallery: str | Path | None = None,
        cache_dir: str | Path = GALLERY_CACHE,
        revision: str | None = None,
        folder: str | Path | None = None,
    ):
        self.net = OneNet.from_pretrained(model, revision=revision)
        self.captioner = self._onnx_captioner(model, revision) or self.net
        self.gallery = Path(gallery).resolve() if gallery else None
        source = str(self.gallery) if self.gallery else "scikit-image sample photos"
        self.folder = Path(folder) if folder else Path(cache_dir) / hashlib.sha256(source.encode()).hexdigest()[:16]
        self.added = self.folder / "added"
        self._lock = threading.Lock()
        self.index = self._build()

    @staticmethod
    def _onnx_captioner(model: str | Path, revision: str | None) -> OneNet | None:
        """Captioning on onnxruntime when `onenet export` has written graphs for this very checkpoint."""
        from .onnx_backend import OnnxExportError

        try:
            return OneNet.from_pretrained(model, backend="onnx", revision=revision)
        except (OnnxExportError, ImportError):
            return None

    def _build(self) -> GalleryIndex:
        images = list_images(self.gallery) if self.gallery else sample_photos()
        if self.added.is_dir():
            images += list_images(self.added)
        return self.net.build_index(images, self.folder / "index")

    @staticmethod
    def _image(image):
        if image is None:
            raise ValueError("no image: upload one or pick an example")
        return load_image(image)

    def caption(self, image, beam_size: int | None = None) -> str:
        return self.captioner.caption(self._image(image), None if beam_size is None else int(beam_size))[0].text

    def tag(self, image, k: int = 5) -> tuple[Rows, Rows]:
        tags = self.net.tag(self._image(image), int(k))[0]
        return [[t.word, round(t.score, 4)] for t in tags.words], [[t.word, round(t.score, 4)] for t in tags.imagenet]

    def similar_words(self, text: str, space: str = "learned", k: int = 10) -> Rows:
        return [[w.word, round(w.score, 4)] for w in self.net.similar_words(text or "", int(k), space)]

    def analogy(self, a: str, b: str, c: str, method: str = "3cosadd", space: str = "glove", k: int = 5) -> Rows:
        if not all(word and word.strip() for word in (a, b, c)):
            raise ValueError("give three words: a is to b as c is to ?")
        return [[w.word, round(w.score, 4)] for w in self.net.analogy(a, b, c, int(k), space, method)]

    def gallery_items(self) -> list[GalleryItem]:
        """Every gallery image with its file name, for the clickable gallery."""
        return [(path, Path(path).name) for path in self.index.paths]

    def similar_images(self, image, row: int | None = None, k: int = 6, focus_class: str | None = None):
        """Images like an upload, or like gallery item `row` (a click) when no image is given."""
        query = row if image is None and row is not None else self._image(image)
        matches = self.net.similar_images(self.index, query, int(k), focus_class=focus_class or None)
        return [(m.path, f"{Path(m.path).name} ({m.score:.3f})") for m in matches]

    def search(self, text: str, method: str = "embed", k: int = 6) -> list[GalleryItem]:
        matches = self.net.search(self.index, text or "", int(k), method)
        return [(m.path, f"{Path(m.path).name} ({m.score:.3f})") for m in matches]

    def add_images(self, files: list[str] | None) -> list[GalleryItem]:
        """Copy uploaded photos into the gallery's own folder and extend the index (only they are embedded)."""
        if not files:
            raise ValueError("no files: choose one or more photos to add")
        for file in files:
            load_image(file)  # refuse a bad upload before it enters the gallery
        with self._lock:
            self.added.mkdir(parents=True, exist_ok=True)
            for file in files:
                target = self.added / Path(file).name
                shutil.copyfile(file, target)
            self.index = self._build()
        return self.gallery_items()


__all__ = ["OneNetSpace"]
