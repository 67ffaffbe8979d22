"""What the Gradio Space serves: the six uses over one loaded model and one persisted gallery, as table rows.

`onenet_hf/space/app.py` only builds the UI around an `OneNetSpace`; a `OneNetError` from here or the library is
a user error (the app shows it with `gr.Error`), anything else is a bug.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from PIL import Image

from ..create import dream, imagine, style, visualize
from ..create.optimization import Snapshot
from ..data.example_photos import example_gallery, example_photos
from ..decoding import check_beam_size
from ..errors import OneNetError
from ..explore.neurons import NEURON_KINDS
from ..explore.sheets import save_image
from ..fingerprint import file_hash
from ..gallery.build import IMAGE_SUFFIXES, list_images
from ..gallery.index import GalleryIndex, GalleryIndexError
from ..hub import resolve_model
from ..images import load_image
from ..onenet import OneNet
from ..options import EXPORT_CACHE_DIR, SPACE_MAX_BATCH_SIZE, SPACE_ONNX_VARIANT
from ..utils.messages import shorten
from ..utils.ranking import check_k
from .batching import RequestBatcher

GALLERY_CACHE = Path.home() / ".cache" / "onenet" / "galleries"
GalleryItem = tuple[str, str]
Answer = TypeVar("Answer")
Rows = list[list]
# What a program reads next to each gallery and table: plain JSON, one shape per kind of result. No key is "path":
# gradio_client takes any {"path": str} in a result for a file of the server's and tries to download it.
Match = dict  # a gallery photo a result found: {"row", "name", "gallery_path", "score"}, best first
Scored = dict  # a word or label with its score: {"word", "score"}

# Stricter than the library's caps (beam 64, k 1,000): one request must not hold the shared CPU for long.
SPACE_MAX_BEAM_SIZE = 8
SPACE_MAX_K = 50
# Explore: a word map of at most this many words (t-SNE's time grows with the points); maps, the heaviest
# Explore results, are kept for the same request (a bounded number of them).
SPACE_MAX_MAP_WORDS = 1_000
SPACE_MAP_CACHE_SIZE = 16
SPACE_DISTINCTIVE_NEURONS = 4  # an uploaded image's neurons shown, each with its top images
# Create: each optimisation step is a backbone pass with gradients (about 0.13 s at 260x260 on 2 cores), so the
# steps are capped to keep one request within about 30 s; images are made at 260x260, photos resized to it.
SPACE_MAX_CREATE_STEPS = 200
SPACE_CREATE_SIZE = 260
SPACE_SNAPSHOT_EVERY = 8  # steps between the intermediate images streamed to the page
# Concurrent caption and tag requests are answered together, up to this many per model pass (chosen with
# bench/speed/space_load.py, README "The Space under load");
# answers of repeated requests (the example photos above all) are kept, up to this many.
SPACE_RESULT_CACHE_SIZE = 512
SPACE_THUMBNAIL_SIZE = 320  # gallery photos are shown (and sent) as JPEGs of at most this many pixels a side
# "Add to gallery": added photos are shown to every user and kept across restarts, so they are bounded.
MAX_UPLOAD_FILES = 20  # photos per request
MAX_UPLOAD_BYTES = 20_000_000  # per photo
MAX_ADDED_BYTES = 500_000_000  # all added photos together
SPACE_EXIT_WAIT_S = 120  # at exit, how long the process waits for a Create step still being computed
# Memory: requests that hold much of it (Create, Explore, similar images, adding photos) share this many slots
# (gradio's `concurrency_id`); caption and tag requests decode at most SPACE_MAX_DECODES uploads at once (a
# decode peaks at about 200 MB, `load_image`); README "Limits" gives the measured worst cases.
SPACE_MAX_HEAVY_JOBS = 2
SPACE_MAX_DECODES = 2
# Disk: gradio stores every upload before a handler sees it. Each file is capped as it streams in
# (`max_file_size`), all stored uploads together by `UploadBudget`, and gradio deletes them (`delete_cache`):
# every SPACE_DELETE_CACHE[0] seconds those older than SPACE_DELETE_CACHE[1], and all at start and exit. The cap on
# each file is the Space's `max_upload_bytes` (MAX_UPLOAD_BYTES unless given).
SPACE_MAX_STORED_UPLOAD_BYTES = 1_000_000_000
SPACE_DELETE_CACHE = (300, 1800)
_DECODING = threading.BoundedSemaphore(SPACE_MAX_DECODES)


class _CreateRuns:
    """The Create optimisations the server is running. Gradio keeps stepping a stream whose visitor has left,
    in a daemon worker thread; a daemon thread still inside PyTorch when the interpreter finalises aborts the
    process ("terminate called without an active exception", exit 134, seen in a gdb backtrace). So at exit no
    new step starts, and the process waits for the steps being computed."""

    def __init__(self) -> None:
        self._running = 0
        self._closing = False
        self._changed = threading.Condition()

    def steps(self, snapshots: Iterator[Snapshot]) -> Iterator[Snapshot]:
        """`snapshots`, each step counted while it is computed; none started once the process is exiting."""
        while True:
            with self._changed:
                if self._closing:
                    return
                self._running += 1
            try:
                snapshot = next(snapshots, None)
            finally:
                with self._changed:
                    self._running -= 1
                    self._changed.notify_all()
            if snapshot is None:
                return
            yield snapshot

    def close(self, timeout: float) -> None:
        """Start no more steps, and wait (at most `timeout` seconds) for those being computed."""
        with self._changed:
            self._closing = True
            self._changed.wait_for(lambda: self._running == 0, timeout)


_CREATE_RUNS = _CreateRuns()
atexit.register(_CREATE_RUNS.close, SPACE_EXIT_WAIT_S)


def bounded_load(image) -> Image.Image:
    """`load_image`, at most SPACE_MAX_DECODES at once in this process: a decode's peak memory is the large part
    of a caption or tag request's."""
    with _DECODING:
        return load_image(image)


def folder_bytes(folder: str | os.PathLike) -> int:
    """The bytes of the files under `folder` (0 if it does not exist). A file or folder deleted while this walks
    (gradio's `delete_cache` runs meanwhile) counts nothing."""
    total = 0
    for parent, _, names in os.walk(folder):  # a folder gone before it is listed is passed over
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(parent, name)).st_size
    return total


UPLOAD_WALK_SECONDS = 2.0  # how stale UploadBudget's count of the stored uploads may be


async def _refuse(send, status: int, message: str) -> None:
    """Answer an HTTP request from ASGI middleware with `status` and a plain-text reason, reading nothing of it."""
    body = message.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class UploadBudget:
    """ASGI middleware for gradio's upload route: an upload is refused before anything of it is stored when its
    declared size (Content-Length; the server reads no more) would take the upload folder, with the uploads
    still streaming in, past `max_bytes`. gradio's `max_file_size` caps each file; this caps them all."""

    def __init__(self, app, folder: str | os.PathLike, max_bytes: int):
        self.app, self.folder, self.max_bytes = app, Path(folder), max_bytes
        self._streaming = 0  # bytes declared by uploads being received now
        # the folder's bytes at the last walk, and the bytes of uploads stored since: a walk stats every upload
        # gradio keeps (10% of the server's CPU under bench/speed/space_load.py when it ran for each upload), so it runs
        # at most every UPLOAD_WALK_SECONDS; files deleted meanwhile still count until the next walk (safe side)
        self._walked, self._walked_at, self._stored_since = 0, -math.inf, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/upload"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if not declared.isdigit():
            return await _refuse(send, 411, "an upload must declare its size (Content-Length)")
        size = int(declared)
        import anyio.to_thread  # starlette's own dependency: the middleware runs only under it

        if time.monotonic() - self._walked_at > UPLOAD_WALK_SECONDS:
            walked_at = time.monotonic()
            walked = await anyio.to_thread.run_sync(folder_bytes, self.folder)  # a walk off the event loop
            self._walked, self._walked_at, self._stored_since = walked, walked_at, 0
        if self._walked + self._stored_since + self._streaming + size > self.max_bytes:
            return await _refuse(send, 507, "the Space holds as many uploads as it can; try again later")
        self._streaming += size  # no await since the check: requests on this event loop see it in turn
        try:
            await self.app(scope, receive, send)
        finally:
            self._streaming -= size
            self._stored_since += size  # stored (or not, if it failed: counted until the next walk all the same)


class RequestBodyLimit:
    """ASGI middleware for every other POST (the API's calls, the queue): a body larger than one photo of
    `max_photo_bytes` inline as a data URL (base64: 4/3 of its bytes) and 1 MB of JSON is refused with 413, by its
    declared size before it is read, or, sent without one, once that much has arrived (the app then sees the client
    leave). gradio decodes a `data:` URL in a call's JSON into a stored file, which neither `max_file_size` nor
    `UploadBudget` sees: a 200 MB one took a server from 3.4 to 4.8 GB."""

    def __init__(self, app, max_photo_bytes: int):
        self.app, self.max_bytes = app, max_photo_bytes * 4 // 3 + 1_000_000

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].endswith("/upload"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            message = f"a request may carry at most {self.max_bytes / 1e6:g} MB; upload photos as files"
            return await _refuse(send, 413, message)
        received = 0

        async def bounded_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return {"type": "http.disconnect"} if received > self.max_bytes else message

        await self.app(scope, bounded_receive, send)


_SERVER_PATH = re.compile(r"(?<![\w.])(?:~|[A-Za-z]:)?[/\\](?:[^\s'\"/\\]+[/\\])*(?=[^\s'\"/\\])")


def public_message(text: str) -> str:
    """An error message fit to show a Space's users: absolute paths cut to their last part, so that neither
    the server's folders nor its upload folder names are revealed."""
    return _SERVER_PATH.sub("", text)


def unreadable_upload(path: str | None, error: Exception) -> str:
    """What a visitor is told when gradio cannot open an upload as an image (it tries before any handler runs):
    the library's own reason (`load_image`, which refuses such a file from its header), server paths cut out."""
    reason = f"{type(error).__name__}: {error}"
    if path and os.path.isfile(path) and os.path.getsize(path) == 0:
        reason = f"{Path(path).name}: the file is empty"
    elif path and os.path.isfile(path):
        try:
            bounded_load(path)
        except OneNetError as refused:
            reason = str(refused)
    return public_message(f"the upload is not an image OneNet can read ({reason[:200]})")


def scored(words) -> list[Scored]:
    """Scored words (tags, ImageNet labels, a neuron's words) as a program reads them: word and score, best
    first."""
    return [{"word": w.word, "score": float(w.score)} for w in words]


def caption_graphs(model: Path, variant: str, cache_dir: str | Path | None) -> Path | None:
    """The export the Space's captions and tags run on: the model's own when it is complete, else one made once
    under `cache_dir` (`onnx.export.export_once`); None (PyTorch runs them) without the onnx extra or a cache."""
    if cache_dir is None:
        return None
    try:
        from ..onnx.export import export_once
    except ImportError:  # the onnx extra is optional for the Space
        return None
    return export_once(model, variant, cache_dir)


class OneNetSpace:
    """A loaded checkpoint and a gallery index (built at start, reused at the next start).

    The index and added photos live in `folder` (a built Space ships one), by default one folder per gallery
    under `cache_dir`.

    The model loads with `backend="auto"`: captions and tags run their image side and decoder on onnxruntime, on
    the checkpoint's ONNX export or, when it has none in `onnx_variant` (a checkout's ships only its gallery
    encoder), on one exported once into `export_cache` (`caption_graphs`; None: PyTorch); so does the embedding of
    an uploaded photo for similar images; everything else runs on PyTorch. Concurrent caption
    and tag requests are batched (`RequestBatcher`); answers to repeated requests come from a bounded cache, which
    `warm_up` fills with the example photos' answers.
    """

    def __init__(
        self,
        model: str | Path,
        gallery: str | Path | None = None,
        cache_dir: str | Path = GALLERY_CACHE,
        revision: str | None = None,
        folder: str | Path | None = None,
        allow_uploads: bool = False,
        max_upload_files: int = MAX_UPLOAD_FILES,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        max_added_bytes: int = MAX_ADDED_BYTES,
        max_batch_size: int = SPACE_MAX_BATCH_SIZE,
        onnx_variant: str = SPACE_ONNX_VARIANT,
        export_cache: str | Path | None = EXPORT_CACHE_DIR,
    ):
        model = resolve_model(model, revision, with_onnx=True)
        onnx_dir = caption_graphs(model, onnx_variant, export_cache)
        self.net = OneNet.from_pretrained(model, backend="auto", onnx_variant=onnx_variant, onnx_dir=onnx_dir)
        self.gallery = Path(gallery).resolve() if gallery else None
        source = str(self.gallery) if self.gallery else "scikit-image example photos"  # the key of older folders
        self.folder = Path(folder) if folder else Path(cache_dir) / hashlib.sha256(source.encode()).hexdigest()[:16]
        self.added, self.thumbnail_folder = self.folder / "added", self.folder / "thumbnails"
        self.allow_uploads = allow_uploads
        self.max_upload_files, self.max_upload_bytes = max_upload_files, max_upload_bytes
        self.max_added_bytes = max_added_bytes
        self._lock, self._answers_lock = threading.Lock(), threading.Lock()
        self._maps: dict[tuple, object] = {}
        self._answers: OrderedDict[tuple, object] = OrderedDict()
        self.max_batch_size = max_batch_size
        self._captions = RequestBatcher(self._caption_batch, max_batch_size, "caption batches")
        self._tags = RequestBatcher(self._tag_batch, max_batch_size, "tag batches")
        self.index = self._build()

    def warm_up(self) -> None:
        """Load everything the first visitors would otherwise wait for (word spaces, taggers, the sentence
        encoder) and keep the example photos' captions and tags, as the app's sliders first ask for them."""
        for photo in example_photos():
            self.caption(str(photo), 3)
            self.tag(str(photo), 5)
        for space in ("learned", "glove"):
            self.similar_words("dog", space)
        self.search("a dog runs on the grass")

    def _cached(self, key: tuple | None, compute: Callable[[], Answer]) -> Answer:
        """The answer kept for `key`, or `compute()`'s (then kept, least recently used first out); None: no key."""
        if key is not None:
            with self._answers_lock:
                if key in self._answers:
                    self._answers.move_to_end(key)
                    return self._answers[key]
        answer = compute()
        if key is not None:
            with self._answers_lock:
                self._answers[key] = answer
                while len(self._answers) > SPACE_RESULT_CACHE_SIZE:
                    self._answers.popitem(last=False)
        return answer

    @staticmethod
    def _image_key(image) -> str | None:
        """A file's content hash (the same photo uploaded twice is one key); None for anything not a file."""
        if isinstance(image, (str, os.PathLike)) and os.path.isfile(image):
            return file_hash(image)
        return None

    def update_index(self) -> GalleryIndex:
        """Bring the gallery index to the photos as they are now (new or changed ones embedded, deleted ones
        dropped); `onenet build-space` does, once it has deleted the files the first build skipped."""
        with self._lock:
            self.index = self._build()
        return self.index

    def _build(self) -> GalleryIndex:
        """The gallery index (new or changed photos embedded) and a thumbnail of each of its photos."""
        images = list_images(self.gallery) if self.gallery else example_gallery()
        if self.added.is_dir():
            images += list_images(self.added)
        index = self.net.build_index(images, self.folder / "index", lock_timeout=None)  # Spaces sharing it: take turns
        # thumbnails before the index: a request still reading the old index finds its photos (a build only adds)
        self.thumbnails = self._make_thumbnails(index)
        return index

    def _make_thumbnails(self, index: GalleryIndex) -> dict[str, str]:
        """A small JPEG of every gallery photo in `thumbnail_folder`, named by the photo's content hash (made once,
        kept across restarts): results show and send these, a fraction of the photos' bytes."""
        self.thumbnail_folder.mkdir(parents=True, exist_ok=True)
        thumbnails = {}
        for path, digest in zip(index.paths, index.metadata["hashes"], strict=True):
            thumbnail = self.thumbnail_folder / f"{digest}.jpg"
            if not thumbnail.is_file():
                image = load_image(path)
                image.thumbnail((SPACE_THUMBNAIL_SIZE, SPACE_THUMBNAIL_SIZE))
                save_image(image, thumbnail, "JPEG", quality=85)
            thumbnails[path] = str(thumbnail)
        return thumbnails

    def _shown(self, path: str, score: float) -> GalleryItem:
        """A gallery result as the page shows it: the photo's thumbnail, its name and score."""
        return self.thumbnails[path], f"{Path(path).name} ({score:.3f})"

    def _match(self, index: GalleryIndex, path: str, score: float) -> Match:
        """A gallery result as a program reads it: its gallery row (what `similar_images` takes as `row`), file
        name, path inside the gallery (added photos under added/; no server folder) and score."""
        return {"row": index.row_of(path=path), "name": Path(path).name, "gallery_path": self._gallery_path(path),
                "score": float(score)}  # fmt: skip

    def _results(self, index: GalleryIndex, matches: list) -> tuple[list[GalleryItem], list[Match]]:
        """Gallery results (`ImageMatch`es of `index`) as the page shows them and as programs read them."""
        return [self._shown(m.path, m.score) for m in matches], [self._match(index, m.path, m.score) for m in matches]

    def _gallery_path(self, path: str) -> str:
        """`path` relative to the gallery folder (or, for added photos, to the Space's folder); else its name."""
        for root in (self.gallery, self.folder.resolve()):
            if root is not None and Path(path).is_relative_to(root):
                return Path(path).relative_to(root).as_posix()
        return Path(path).name

    @staticmethod
    def _image(image):
        """The image as given (a path or an array; the model's processor loads it, once), or an error if none."""
        if image is None:
            raise OneNetError("no image: upload one or pick an example")
        return image

    @staticmethod
    def _whole_number(value, name: str) -> int:
        """A form's number as an int (gradio may send 5.0); anything else is a user error naming the field."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise OneNetError(f"{name} must be a whole number, got {str(value)[:20]}")
        if value != int(value):
            raise OneNetError(f"{name} must be a whole number, got {str(value)[:20]}")
        return int(value)

    def _k(self, k) -> int:
        k = self._whole_number(k, "k")
        check_k(k, SPACE_MAX_K)
        return k

    def served_paths(self) -> list[str]:
        """The files the Space may serve: exactly the gallery's thumbnails and the example photos, never a folder
        (gradio's `allowed_paths`); the gallery's photos themselves, index metadata and dotfiles stay private."""
        return sorted(set(self.thumbnails.values()) | {os.path.realpath(p) for p in example_photos()})

    def caption(self, image, beam_size: int | None = None) -> str:
        """The caption; beam size defaults to the model's generation config, capped lower than the CLI's. The
        image is read here, so a bad one fails only its own request; the decoding joins a batch."""
        if beam_size is None:
            beam_size = self.net.model.generation_config.num_beams
        beam_size = self._whole_number(beam_size, "beam_size")
        check_beam_size(beam_size, SPACE_MAX_BEAM_SIZE)
        image = self._image(image)
        key = self._image_key(image)
        return self._cached(
            key and ("caption", key, beam_size), lambda: self._captions((bounded_load(image), beam_size))
        )

    def _passes(self, keys: list) -> list[list[int]]:
        """The rows that share one model pass: those with equal keys (a caption's beam size), or each row alone
        on dynamic int8 graphs, where the other images of a batch would change an image's answer."""
        if self.net.onnx is not None and not self.net.onnx.batch_independent:
            return [[row] for row in range(len(keys))]
        return [[row for row, k in enumerate(keys) if k == key] for key in dict.fromkeys(keys)]

    def _caption_batch(self, requests: list[tuple[Image.Image, int]]) -> list[str]:
        """Captions of (image, beam size) requests: one batched decoding per beam size asked for."""
        answers: list[str] = [""] * len(requests)
        for rows in self._passes([beam for _, beam in requests]):
            captions = self.net.caption([requests[r][0] for r in rows], requests[rows[0]][1])
            for row, caption in zip(rows, captions, strict=True):
                answers[row] = caption.text
        return answers

    def tag(self, image, k: int = 5) -> tuple[Rows, Rows, dict[str, list[Scored]]]:
        """Word tags and ImageNet labels as table rows, and both as {"words", "imagenet_labels"} lists of
        {"word", "score"} for programs; the tagging joins a batch (see `caption`)."""
        k, image = self._k(k), self._image(image)
        key = self._image_key(image)
        return self._cached(key and ("tag", key, k), lambda: self._tags((bounded_load(image), k)))

    def _tag_batch(self, requests: list[tuple[Image.Image, int]]) -> list[tuple[Rows, Rows, dict]]:
        """Tags of (image, k) requests: tagged at the largest k (in shared passes, see `_passes`), each cut to its
        own k."""
        largest = max(k for _, k in requests)
        tagged: list = [None] * len(requests)
        for rows in self._passes([None] * len(requests)):  # any k: tagged at the largest
            for row, tags in zip(rows, self.net.tag([requests[r][0] for r in rows], largest), strict=True):
                tagged[row] = tags
        return [
            (
                [[t.word, round(t.score, 4)] for t in tags.words[:k]],
                [[t.word, round(t.score, 4)] for t in tags.imagenet[:k]],
                {"words": scored(tags.words[:k]), "imagenet_labels": scored(tags.imagenet[:k])},
            )
            for tags, (_, k) in zip(tagged, requests, strict=True)
        ]

    def similar_words(self, text: str, space: str = "learned", k: int = 10) -> Rows:
        return [[w.word, round(w.score, 4)] for w in self.net.similar_words(text or "", self._k(k), space)]

    def analogy(self, a: str, b: str, c: str, method: str = "3cosadd", space: str = "glove", k: int = 5) -> Rows:
        if not all(word and word.strip() for word in (a, b, c)):
            raise OneNetError("give three words: a is to b as c is to ?")
        return [[w.word, round(w.score, 4)] for w in self.net.analogy(a, b, c, self._k(k), space, method)]

    def gallery_items(self) -> list[GalleryItem]:
        """Every gallery image (its thumbnail) with its file name, for the clickable gallery."""
        return [(self.thumbnails[path], Path(path).name) for path in self.index.paths]

    def similar_images(
        self, image, row: int | None = None, k: int = 6, focus_class: str | None = None
    ) -> tuple[list[GalleryItem], list[Match]]:
        """Images like an upload, or like gallery item `row` (a click) when no image is given: as the gallery
        shows them, and as `Match`es for programs."""
        by_row = image is None and row is not None
        query = self._whole_number(row, "row") if by_row else self._image(image)
        k, focus_class, index = self._k(k), focus_class or None, self.index
        key = ("similar_images", query, k, focus_class, index.metadata["build"]) if by_row else None

        def similar():
            matches = self.net.similar_images(index, query, k, focus_class=focus_class)
            return self._results(index, matches)

        return self._cached(key, similar)

    def search(self, text: str, method: str = "reranked", k: int = 6) -> tuple[list[GalleryItem], list[Match]]:
        """Gallery images for a description, shown and as `Match`es; a repeated one (same words, method and k)
        is answered from cache."""
        text, k, index = text or "", self._k(k), self.index

        def matching():
            matches = self.net.search(index, text, k, method)
            return self._results(index, matches)

        return self._cached(("search", text, method, k, index.metadata["build"]), matching)

    def embedding_map(
        self,
        subject: str = "images",
        color_by: str = "tag",
        space: str = "learned",
        words: str = "",
        top_words: int = 300,
    ):
        """A plotly figure: the gallery's images (coloured by `color_by`), or words of a word space (the given
        ones, else the `top_words` most frequent). The same request is answered from a bounded cache."""
        if subject == "images":
            key = ("images", color_by, self.index.metadata["build"], len(self.index))
        elif subject == "words":
            chosen = tuple(w for w in re.split(r"[\s,]+", words or "") if w)
            count = None if chosen else self._whole_number(top_words, "top_words")
            if len(chosen) > SPACE_MAX_MAP_WORDS or (count is not None and count > SPACE_MAX_MAP_WORDS):
                raise OneNetError(f"a word map on this Space has at most {SPACE_MAX_MAP_WORDS} words")
            key = ("words", space, chosen, count)
        else:
            raise OneNetError(f"map {shorten(str(subject))}: choose 'images' or 'words'")
        with self._lock:
            if key in self._maps:
                return self._maps[key]
        if subject == "images":
            made = self.net.embedding_map(self.index, color_by=color_by)
        else:
            made = self.net.embedding_map(words=list(chosen) or None, top_words=count, space=space)
        figure = made.figure()
        with self._lock:
            self._maps[key] = figure
            while len(self._maps) > SPACE_MAP_CACHE_SIZE:
                self._maps.pop(next(iter(self._maps)))
        return figure

    def neuron(self, kind: str = "unit", number: int = 0, image=None, k: int = 8) -> tuple[list, Rows, list[dict]]:
        """A neuron's top gallery images and its words; with an image, the image's most distinctive neurons of
        `kind` instead, each as a contact sheet (its words and top images). For programs, each neuron as
        {"neuron", "kind", "number", "activation", "z_score", "images": [Match, score the activation], "words"}."""
        if kind not in NEURON_KINDS:
            raise OneNetError(f"neuron kind {shorten(str(kind))}: choose one of {NEURON_KINDS}")
        k, index = self._k(k), self.index
        if image is not None:
            found = self.net.distinctive_neurons(index, image, SPACE_DISTINCTIVE_NEURONS, k, kind=kind)
            items = [(n.to_image(), f"{n.name}: {n.activation:.3f}, z {n.z_score:+.1f}") for n in found]
        else:
            found = [self.net.neuron(index, k=k, **{kind: self._whole_number(number, kind)})]
            items = [self._shown(m.path, m.activation) for m in found[0].images]
        rows = [[n.name, w.word, round(w.score, 4)] for n in found for w in n.words]
        neurons = [
            {"neuron": n.name, "kind": n.kind, "number": n.number,
             "activation": None if n.activation is None else float(n.activation),
             "z_score": None if n.z_score is None else float(n.z_score),
             "images": [self._match(index, m.path, m.activation) for m in n.images], "words": scored(n.words)}
            for n in found
        ]  # fmt: skip
        return items, rows, neurons

    def explain(self, image, caption: str | None = None) -> tuple[list, dict]:
        """One overlay per word of the caption (the model's own, or the given one): where it comes from; for
        programs, {"caption", "words": [{"word", "log_prob"}]}."""
        explanation = self.net.explain(self._image(image), caption or None)
        overlays = [
            (overlay, f"{w.word} (log p {w.log_prob:.2f})")
            for overlay, w in zip(explanation.overlays(), explanation.words, strict=True)
        ]
        words = [{"word": w.word, "log_prob": float(w.log_prob)} for w in explanation.words]
        return overlays, {"caption": explanation.caption, "words": words}

    def layer_activations(self, image) -> tuple[list, list[dict]]:
        """Each backbone stage's strongest channels for an image, as one grid per stage; for programs, each
        stage's {"stage", "channels": [{"channel", "mean"}]}, strongest first."""
        stages = self.net.layer_activations(self._image(image))
        channels = [
            {
                "stage": s.name,
                "channels": [{"channel": c, "mean": float(m)} for c, m in zip(s.channels, s.means, strict=True)],
            }
            for s in stages
        ]
        return [(stage.to_image(), stage.name) for stage in stages], channels

    def _steps(self, steps) -> int:
        steps = self._whole_number(steps, "steps")
        if not 1 <= steps <= SPACE_MAX_CREATE_STEPS:
            raise OneNetError(
                f"steps must be 1 to {SPACE_MAX_CREATE_STEPS} on this Space (asked for {steps}); run `onenet` "
                "locally for more"
            )
        return steps

    @staticmethod
    def _stream(snapshots) -> Iterator[tuple[int, int, object]]:
        """(step, steps, image or None) for each step of a Create optimisation: the app shows the step as
        progress and each image as it comes. Runs are tracked so that the process can close them at exit."""
        for snapshot in _CREATE_RUNS.steps(snapshots):
            yield snapshot.step, snapshot.steps, snapshot.images[0] if snapshot.pixels is not None else None

    def visualize(
        self, kind: str = "class", target: str = "207", steps: int = visualize.STEPS, seed: int = 0
    ) -> Iterator[tuple[int, int, object]]:
        """Feature visualisation of an ImageNet class (index or name), a head channel or a representation unit."""
        kinds = {"class": "imagenet_class", "channel": "channel", "unit": "unit"}
        if kind not in kinds:
            raise OneNetError(f"target kind {shorten(str(kind))}: choose one of {', '.join(kinds)}")
        target = str(target).strip() if kind == "class" else self._whole_number(target, kind)
        snapshots = self.net.visualize_steps(
            **{kinds[kind]: target}, steps=self._steps(steps), seed=self._whole_number(seed, "seed"),
            size=SPACE_CREATE_SIZE, snapshot_every=SPACE_SNAPSHOT_EVERY,
        )  # fmt: skip
        return self._stream(snapshots)

    def imagine(self, text: str, steps: int = imagine.STEPS, seed: int = 0) -> Iterator[tuple[int, int, object]]:
        """An image for a sentence (imagined captions)."""
        seed = self._whole_number(seed, "seed")
        snapshots = self.net.imagine_steps(
            text, self._steps(steps), seed, SPACE_CREATE_SIZE, snapshot_every=SPACE_SNAPSHOT_EVERY
        )
        return self._stream(snapshots)

    def dream(
        self, image, stage: str = dream.STAGE, strength: float = dream.STRENGTH, steps: int = dream.STEPS
    ) -> Iterator[tuple[int, int, object]]:
        """DeepDream on a photo, resized to the Space's image size on its short side."""
        snapshots = self.net.dream_steps(
            self._image(image), stage, self._steps(steps), strength, size=SPACE_CREATE_SIZE,
            snapshot_every=SPACE_SNAPSHOT_EVERY,
        )  # fmt: skip
        return self._stream(snapshots)

    def style(
        self, content, style_image, style_weight: float = style.STYLE_WEIGHT, steps: int = style.STEPS
    ) -> Iterator[tuple[int, int, object]]:
        """Style transfer of the content photo with the style photo's textures."""
        if style_image is None:
            raise OneNetError("no style image: upload one or pick an example")
        snapshots = self.net.style_steps(
            self._image(content), style_image, self._steps(steps), style_weight=style_weight,
            size=SPACE_CREATE_SIZE, snapshot_every=SPACE_SNAPSHOT_EVERY,
        )  # fmt: skip
        return self._stream(snapshots)

    def add_images(self, files: list[str] | None) -> list[GalleryItem]:
        """Copy uploaded photos into the gallery's own folder and extend the index (only they are embedded).

        Names are content-addressed (`added/<hash>-<name>`): the same bytes twice are one photo, different
        photos of one name are both kept. Limits: files per request, bytes per photo, bytes of all added
        photos (`max_upload_files`, `max_upload_bytes`, `max_added_bytes`); each is a clear error.
        """
        if not self.allow_uploads:
            raise OneNetError("adding photos is turned off on this Space")
        if not files:
            raise OneNetError("no files: choose one or more photos to add")
        if len(files) > self.max_upload_files:
            raise OneNetError(f"{len(files)} files: add at most {self.max_upload_files} photos at a time")
        uploads = {}
        for file in files:
            path = Path(file)
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise OneNetError(f"{path.name[:60]}: only {', '.join(sorted(IMAGE_SUFFIXES))} files can be added")
            if path.stat().st_size > self.max_upload_bytes:
                raise OneNetError(f"{path.name[:60]}: larger than {self.max_upload_bytes / 1e6:g} MB per photo")
            load_image(file)  # refuse a bad upload before it enters the gallery
            digest = file_hash(path, digest_size=8)
            uploads[digest] = path
        with self._lock:
            self.added.mkdir(parents=True, exist_ok=True)
            entries = [entry for entry in self.added.iterdir() if entry.is_file() and not entry.name.startswith(".")]
            present = {entry.name.split("-", 1)[0]: entry for entry in entries}
            new = {digest: path for digest, path in uploads.items() if digest not in present}
            total = sum(entry.stat().st_size for entry in present.values())
            total += sum(path.stat().st_size for path in new.values())
            if total > self.max_added_bytes:
                raise OneNetError(f"the gallery's added photos would pass {self.max_added_bytes / 1e6:g} MB in all")
            for digest, path in new.items():
                name = re.sub(r"[^\w.-]", "_", path.stem)[:40] + path.suffix.lower()
                with (
                    path.open("rb") as source,
                    tempfile.NamedTemporaryFile(dir=self.added, prefix=".upload-", delete=False) as tmp,
                ):
                    shutil.copyfileobj(source, tmp)
                os.replace(tmp.name, self.added / f"{digest}-{name}")  # whole or absent, never half a photo
            try:
                self.index = self._build()
            except GalleryIndexError as error:
                raise OneNetError(f"the gallery could not be extended: {public_message(str(error))}") from None
        return self.gallery_items()


__all__ = [
    "MAX_ADDED_BYTES",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_FILES",
    "OneNetSpace",
    "RequestBodyLimit",
    "UploadBudget",
    "bounded_load",
    "folder_bytes",
    "public_message",
    "scored",
    "unreadable_upload",
]
