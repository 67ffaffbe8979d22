"""The OneNet Space's UI: six use tabs, an Explore tab and a Create tab over one network, wiring only; every
result comes from `OneNetSpace`.

`spaces/app.py` and the `app.py` that `onenet build-space` writes both call `main`. Needs the `space` extra.
"""

from __future__ import annotations

import argparse
import functools
import inspect
from pathlib import Path

import PIL

from ..create import dream, imagine, style, visualize
from ..create.optimization import stage_widths
from ..data.example_photos import example_photos
from ..errors import OneNetError
from ..explore.embedding_map import COLOR_BY
from ..explore.neurons import NEURON_KINDS
from ..language.label_words import imagenet_labels
from ..uses.search import SEARCH_METHODS
from ..uses.words import ANALOGY_METHODS
from ..utils.extras import require
from .service import (
    SPACE_DELETE_CACHE,
    SPACE_MAX_BEAM_SIZE,
    SPACE_MAX_CREATE_STEPS,
    SPACE_MAX_HEAVY_JOBS,
    SPACE_MAX_K,
    SPACE_MAX_MAP_WORDS,
    SPACE_MAX_STORED_UPLOAD_BYTES,
    OneNetSpace,
    RequestBodyLimit,
    UploadBudget,
    public_message,
    unreadable_upload,
)

gr = require("gradio", "space", "the Space")


def refusal(message: str) -> gr.Error:
    """A user error as the page shows it, server paths cut out; the request was bad, not the server, so gradio
    logs no traceback for it."""
    return gr.Error(public_message(message), print_exception=False)


def user_errors(function):
    """Show a user error (`OneNetError`, e.g. an unknown word or a corrupt image) in the UI; the server keeps
    serving. Anything else is a bug: gradio logs its traceback."""

    @functools.wraps(function)
    def wrapper(*args):
        try:
            return function(*args)
        except OneNetError as error:
            raise refusal(str(error)) from None

    return wrapper


def streamed(method):
    """A Space Create method as a gradio generator: each step advances the request's progress bar, each
    intermediate image replaces the last on the page; a user error ends it with `gr.Error`.

    The generator has the method's own signature plus `progress` (gradio reads it: API parameter names, and
    the progress bar it passes in for a `gr.Progress` default), so clients see `steps`, `seed`, ... not param_N."""
    parameters = list(inspect.signature(method).parameters.values())
    progress_parameter = inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())
    signature = inspect.Signature([*parameters, progress_parameter])

    def stream(*args, **kwargs):
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        progress = arguments.arguments.pop("progress")
        try:
            for step, steps, image in method(**arguments.arguments):
                progress((step, steps), unit="steps")
                if image is not None:
                    yield image
        except OneNetError as error:
            raise refusal(str(error)) from None

    stream.__name__, stream.__doc__, stream.__signature__ = method.__name__, method.__doc__, signature
    return stream


def image_input(label: str) -> gr.Image:
    """An image upload to a use, passed on as its path (`image_mode=None`: gradio does not decode it; `load_image`
    checks its size from the header first). An upload gradio cannot open as an image is a `gr.Error` saying why,
    which clients see even without verbose errors (gradio's own error says only that errors are hidden). This
    instance's `preprocess` is wrapped: a `gr.Image` subclass would make gradio write a .pyi stub beside this file."""
    image = gr.Image(type="filepath", image_mode=None, label=label)
    preprocess = image.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except Exception as error:
            if not _raised_by_pil(error):  # gradio's own bug, not the upload's: its traceback is logged
                raise
            raise refusal(unreadable_upload(getattr(payload, "path", None), error)) from None

    image.preprocess = checked
    return image


def _raised_by_pil(error: BaseException) -> bool:
    """Whether Pillow was decoding when `error` was raised (a frame of its package on the way): whatever a decoder
    raises on bad bytes (OSError, ValueError, IndexError, olefile's ...) is the upload's fault. Anything else, and
    the machine's own MemoryError or RecursionError, is not."""
    if isinstance(error, (MemoryError, RecursionError)):
        return False
    pillow = Path(PIL.__file__).parent
    trace = error.__traceback__
    while trace is not None:
        if Path(trace.tb_frame.f_code.co_filename).is_relative_to(pillow):
            return True
        trace = trace.tb_next
    return False


def count_slider(minimum: int, maximum: int, value: int, label: str, step: int = 1) -> gr.Slider:
    """A slider for a whole number (k, a beam size, steps): whole steps, and `precision=0`, so that the handler
    gets an int and the API types it integer (gradio_client: int), not float."""
    return gr.Slider(minimum, maximum, value=value, step=step, precision=0, label=label)


# Every event that holds much memory (optimisation with gradients, heat maps, t-SNE, embedding an upload, adding
# photos) takes one of SPACE_MAX_HEAVY_JOBS shared slots; the others wait in gradio's queue.
HEAVY = {"concurrency_id": "heavy", "concurrency_limit": SPACE_MAX_HEAVY_JOBS}


def json_output(label: str) -> gr.JSON:
    """A result as a program reads it (names, paths, scores), beside the gallery or table a visitor reads: the
    API returns both; the page keeps it under a closed accordion."""
    with gr.Accordion(f"{label} (JSON, as the API returns it)", open=False):
        return gr.JSON(label=label)


def clicked_row(event: gr.SelectData) -> tuple[int, None]:
    """The gallery position a user clicked; the uploaded image is cleared so the click is the query."""
    return event.index, None


def build_demo(space: OneNetSpace) -> gr.Blocks:
    """The six use tabs, Explore and Create. Image inputs (`image_input`) keep `image_mode=None`: gradio then
    passes the upload's path on without decoding it, and `load_image` checks its size from the header before
    decoding (its pixel limit). Caption and tag requests run up to `space.max_batch_size` at once, so
    `OneNetSpace` can batch them; the heavy events share SPACE_MAX_HEAVY_JOBS slots (`HEAVY`); every other event
    runs one request at a time (gradio's default). Uploads are deleted by gradio after a while (`delete_cache`).
    Every public event has an `api_name` and parameters named as the library names them; whole numbers are
    typed int (`count_slider`); each gallery has its results as JSON beside it (`json_output`)."""
    with gr.Blocks(title="OneNet: one network, many uses", delete_cache=SPACE_DELETE_CACHE) as demo:
        gr.Markdown("# OneNet: one network, many uses\nOne image encoder and one caption decoder, six uses.")
        examples = [str(p) for p in example_photos()]
        with gr.Tab("Caption"):
            image = image_input("Image")
            beam = count_slider(1, SPACE_MAX_BEAM_SIZE, 3, "Beam size")
            caption = gr.Textbox(label="Caption")
            gr.Examples(examples, image)
            gr.Button("Caption", variant="primary").click(
                user_errors(space.caption),
                [image, beam],
                caption,
                api_name="caption",
                concurrency_limit=space.max_batch_size,
            )
        with gr.Tab("Tag"):
            image = image_input("Image")
            k = count_slider(1, 20, 5, "Tags")
            words = gr.Dataframe(headers=["tag", "score"], label="Word tags", interactive=False)
            labels = gr.Dataframe(headers=["ImageNet label", "probability"], label="ImageNet labels", interactive=False)
            tags = json_output("Word and label scores")
            gr.Examples(examples, image)
            gr.Button("Tag", variant="primary").click(
                user_errors(space.tag),
                [image, k],
                [words, labels, tags],
                api_name="tag",
                concurrency_limit=space.max_batch_size,
            )
        with gr.Tab("Similar words"):
            text = gr.Textbox(label="Word(s)", placeholder="beach")
            word_space = gr.Radio(["learned", "glove"], value="learned", label="Word space")
            k = count_slider(1, SPACE_MAX_K, 10, "Words")
            table = gr.Dataframe(headers=["word", "cosine"], label="Similar words", interactive=False)
            gr.Button("Find", variant="primary").click(
                user_errors(space.similar_words), [text, word_space, k], table, api_name="similar_words"
            )
        with gr.Tab("Analogy"):
            with gr.Row():
                a, b, c = gr.Textbox(label="a", value="man"), gr.Textbox(label="b", value="king"), gr.Textbox(label="c")
            method = gr.Radio(list(ANALOGY_METHODS), value="3cosadd", label="Method")
            word_space = gr.Radio(["glove", "learned"], value="glove", label="Word space")
            k = count_slider(1, 20, 5, "Number of answers")
            table = gr.Dataframe(headers=["d (a : b :: c : d)", "score"], label="Answers", interactive=False)
            gr.Button("Solve", variant="primary").click(
                user_errors(space.analogy), [a, b, c, method, word_space, k], table, api_name="analogy"
            )
        with gr.Tab("Similar images"):
            gallery = gr.Gallery(space.gallery_items(), label="Gallery (click an image to search with it)", columns=6)
            clicked = gr.Number(visible=False, precision=0)
            image = image_input("Or upload an image")
            focus = gr.Dropdown([""] + list(imagenet_labels()), value="", label="Focus on ImageNet class (optional)")
            k = count_slider(1, 20, 6, "Results")
            results = gr.Gallery(label="Similar images", columns=6)
            matches = json_output("Matches")
            gr.Button("Search", variant="primary").click(
                user_errors(space.similar_images),
                [image, clicked, k, focus],
                [results, matches],
                api_name="similar_images",
                **HEAVY,
            )
            gallery.select(
                clicked_row, None, [clicked, image], api_name="gallery_click", api_visibility="private"
            ).then(
                user_errors(space.similar_images),
                [image, clicked, k, focus],
                [results, matches],
                api_name="similar_images_of_click",
                api_visibility="private",
                **HEAVY,
            )
            if space.allow_uploads:  # otherwise the handler does not exist at all, in the UI or over HTTP

                def add_images(files):
                    items = space.add_images(files)
                    demo.allowed_paths = space.served_paths()  # the added photos may now be served too
                    return items

                uploads = gr.File(file_count="multiple", file_types=["image"], label="Add your photos to the gallery")
                gr.Button("Add to gallery").click(
                    user_errors(add_images), uploads, gallery, api_name="add_images", api_visibility="private", **HEAVY
                )
        with gr.Tab("Describe to search"):
            text = gr.Textbox(label="Description", placeholder="a dog jumping into a pool")
            method = gr.Radio(list(SEARCH_METHODS), value="reranked", label="Method")
            k = count_slider(1, 20, 6, "Results")
            results = gr.Gallery(label="Matching images", columns=6)
            matches = json_output("Matches")
            gr.Button("Search", variant="primary").click(
                user_errors(space.search), [text, method, k], [results, matches], api_name="search"
            )
        with gr.Tab("Explore"):
            explore_tabs(space, examples)
        with gr.Tab("Create"):
            imagine_tabs(space, examples)
    return demo


def explore_tabs(space: OneNetSpace, examples: list[str]) -> None:
    """What the network learned: maps, neurons, where each word comes from, layer by layer."""

    draw_map = space.embedding_map

    def embedding_map(
        subject: str,
        color_by: str,
        space: str,
        words: str,
        top_words: int,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008
    ):
        """gradio's documented idiom: this default makes it show the library's tqdm bars as the request's progress.
        The parameters are the API's, named as the library names them (`space`: the word space)."""
        return draw_map(subject, color_by, space, words, top_words)

    with gr.Tab("Map"):
        gr.Markdown("A t-SNE map: nearby points have similar vectors. Hover a point for its name.")
        with gr.Row():
            subject = gr.Radio(["images", "words"], value="images", label="Map of")
            color_by = gr.Radio(list(COLOR_BY), value="tag", label="Colour images by")
            word_space = gr.Radio(["learned", "glove"], value="learned", label="Word space")
        with gr.Row():
            words = gr.Textbox(label="Words (optional; else the most frequent)", placeholder="dog, cat, beach, snow")
            top_words = count_slider(10, SPACE_MAX_MAP_WORDS, 300, "Most frequent words", step=10)
        plot = gr.Plot(label="Map")
        gr.Button("Draw the map", variant="primary").click(
            user_errors(embedding_map), [subject, color_by, word_space, words, top_words], plot, api_name="map", **HEAVY
        )
    with gr.Tab("Neurons"):
        gr.Markdown(
            "A unit of the image representation or a channel of the backbone's pooled features: the gallery "
            "images that excite it most, and the words the caption decoder says more of when it rises. "
            "Upload an image instead to see its most distinctive neurons."
        )
        with gr.Row():
            kind = gr.Radio(list(NEURON_KINDS), value="unit", label="Kind")
            number = gr.Number(value=0, precision=0, label="Number")
            k = count_slider(1, 16, 8, "Top images")
        image = image_input("Or upload an image")
        gr.Examples(examples, image)
        images = gr.Gallery(label="Top gallery images", columns=4)
        table = gr.Dataframe(headers=["neuron", "word", "rise (nats)"], label="Words", interactive=False)
        neurons = json_output("Neurons")
        gr.Button("Show", variant="primary").click(
            user_errors(space.neuron), [kind, number, image, k], [images, table, neurons], api_name="neuron", **HEAVY
        )
    with gr.Tab("Explain"):
        gr.Markdown("For each word of the caption, Grad-CAM shows the part of the photo that made the decoder say it.")
        image = image_input("Image")
        caption = gr.Textbox(label="Caption to explain (optional; else the model's own)")
        gr.Examples(examples, image)
        overlays = gr.Gallery(label="Where each word comes from", columns=4, object_fit="contain")
        words = json_output("Words")
        gr.Button("Explain", variant="primary").click(
            user_errors(space.explain), [image, caption], [overlays, words], api_name="explain", **HEAVY
        )
    with gr.Tab("Layer by layer"):
        gr.Markdown("The backbone stage by stage, from edges to parts to objects: each stage's strongest channels.")
        image = image_input("Image")
        gr.Examples(examples, image)
        stages = gr.Gallery(label="Stages", columns=3, object_fit="contain")
        channels = json_output("Channels")
        gr.Button("Show the layers", variant="primary").click(
            user_errors(space.layer_activations), image, [stages, channels], api_name="layers", **HEAVY
        )


def imagine_tabs(space: OneNetSpace, examples: list[str]) -> None:
    """What the network can picture: feature visualisation, imagined captions, DeepDream, style transfer. Each
    streams its image as it forms; steps are capped (`SPACE_MAX_CREATE_STEPS`)."""
    steps_label = f"Steps (at most {SPACE_MAX_CREATE_STEPS})"
    with gr.Tab("Visualize"):
        gr.Markdown("An image that excites one ImageNet class, one channel of the backbone's head or one unit of the "
                    "image representation, optimised from noise.")  # fmt: skip
        with gr.Row():
            kind = gr.Radio(["class", "channel", "unit"], value="class", label="Target")
            target = gr.Textbox(value="207", label="Class (index or name), channel or unit number")
        with gr.Row():
            steps = count_slider(1, SPACE_MAX_CREATE_STEPS, visualize.STEPS, steps_label)
            seed = gr.Number(value=0, precision=0, label="Seed")
        picture = gr.Image(label="Visualisation", type="pil", format="png")
        gr.Button("Visualize", variant="primary").click(
            streamed(space.visualize), [kind, target, steps, seed], picture, api_name="visualize", **HEAVY
        )
    with gr.Tab("Imagine a caption"):
        gr.Markdown("An image for a sentence: pixels optimised until the caption decoder would say it.")
        text = gr.Textbox(value="a dog runs on the beach", label="Sentence (caption words only)")
        with gr.Row():
            steps = count_slider(1, SPACE_MAX_CREATE_STEPS, imagine.STEPS, steps_label)
            seed = gr.Number(value=0, precision=0, label="Seed")
        picture = gr.Image(label="Imagined", type="pil", format="png")
        gr.Button("Imagine", variant="primary").click(
            streamed(space.imagine), [text, steps, seed], picture, api_name="imagine", **HEAVY
        )
    with gr.Tab("DeepDream"):
        gr.Markdown("Amplify what one backbone stage sees in a photo, over three octaves.")
        image = image_input("Photo")
        gr.Examples(examples, image)
        with gr.Row():
            stage = gr.Dropdown(list(stage_widths(space.net.model)), value=dream.STAGE, label="Stage")
            strength = gr.Slider(0, 5, value=dream.STRENGTH, step=0.25, label="Strength")
            steps = count_slider(3, SPACE_MAX_CREATE_STEPS, dream.STEPS, steps_label)
        picture = gr.Image(label="Dream", type="pil", format="png")
        gr.Button("Dream", variant="primary").click(
            streamed(space.dream), [image, stage, strength, steps], picture, api_name="dream", **HEAVY
        )
    with gr.Tab("Style transfer"):
        gr.Markdown("The content photo redrawn with the style photo's textures and colours (Gatys et al.).")
        with gr.Row():
            content = image_input("Content photo")
            style_image = image_input("Style photo")
        gr.Examples([[examples[0], examples[-1]]], [content, style_image])
        with gr.Row():
            weight = gr.Slider(0, 100, value=style.STYLE_WEIGHT, step=1, label="Style weight")
            steps = count_slider(1, SPACE_MAX_CREATE_STEPS, style.STEPS, steps_label)
        picture = gr.Image(label="Stylised", type="pil", format="png")
        gr.Button("Transfer the style", variant="primary").click(
            streamed(space.style), [content, style_image, weight, steps], picture, api_name="style", **HEAVY
        )


def serve(args: argparse.Namespace) -> None:
    """Load the model and gallery `space.launch.main` parsed, then serve the UI until stopped."""
    allow_uploads = args.allow_uploads if args.allow_uploads is not None else args.gallery is None
    space = OneNetSpace(
        args.model, args.gallery, revision=args.revision, folder=args.index_dir, allow_uploads=allow_uploads,
        max_batch_size=args.max_batch_size, onnx_variant=args.onnx_variant,
    )  # fmt: skip
    space.warm_up()
    build_demo(space).launch(server_name=args.host, server_port=args.port, **launch_options(space))


def launch_options(space: OneNetSpace) -> dict:
    """`launch()`'s settings of the Space: what it serves, and uploads bounded before they are stored (each file
    by `max_file_size`, the Space's `max_upload_bytes`, as it streams in; all stored ones by `UploadBudget`), and
    every other request's body by `RequestBodyLimit` (a photo inline as a data URL at most).
    show_error=False: gradio's own errors (e.g. an upload it cannot open) would show server paths; ours reach users
    as gr.Error, paths cut out."""
    from gradio.utils import get_upload_folder
    from starlette.middleware import Middleware

    budget = Middleware(UploadBudget, folder=get_upload_folder(), max_bytes=SPACE_MAX_STORED_UPLOAD_BYTES)
    bodies = Middleware(RequestBodyLimit, max_photo_bytes=space.max_upload_bytes)
    return {
        "allowed_paths": space.served_paths(),
        "show_error": False,
        "max_file_size": space.max_upload_bytes,
        "app_kwargs": {"middleware": [budget, bodies]},
    }
