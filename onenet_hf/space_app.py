"""The OneNet Space's UI: six use tabs, an Explore tab and an Imagine tab over one network, wiring only; every
result comes from `OneNetSpace`.

`spaces/app.py` and the `app.py` that `onenet build-space` writes both call `main`. Needs the `space` extra.
"""

from __future__ import annotations

import argparse
import functools
import os

from .errors import OneNetError
from .extras import require
from .hub import default_model
from .request_batching import MAX_BATCH_SIZE
from .samples import sample_photos
from .space import (
    SPACE_DELETE_CACHE,
    SPACE_MAX_BATCH_SIZE,
    SPACE_MAX_BEAM_SIZE,
    SPACE_MAX_HEAVY_JOBS,
    SPACE_MAX_IMAGINE_STEPS,
    SPACE_MAX_K,
    SPACE_MAX_MAP_WORDS,
    SPACE_MAX_STORED_UPLOAD_BYTES,
    SPACE_ONNX_VARIANT,
    OneNetSpace,
    UploadBudget,
    public_message,
)
from .uses import dream, imagine, style, visualize
from .uses.maps import COLOR_BY
from .uses.neurons import NEURON_KINDS
from .uses.search import SEARCH_METHODS
from .uses.tag import imagenet_labels
from .uses.visualize import stage_widths
from .uses.words import ANALOGY_METHODS

gr = require("gradio", "space", "the Space")


def user_errors(function):
    """Show a user error (`OneNetError`, e.g. an unknown word or a corrupt image) in the UI, server paths cut
    out; the server keeps serving. Anything else is a bug: gradio logs its traceback."""

    @functools.wraps(function)
    def wrapper(*args):
        try:
            return function(*args)
        except OneNetError as error:
            raise gr.Error(public_message(str(error))) from None

    return wrapper


def streamed(method):
    """A Space Imagine method as a gradio generator: each step advances the request's progress bar, each
    intermediate image replaces the last on the page; a user error ends it with `gr.Error`."""

    def stream(*args, progress=gr.Progress()):  # noqa: B008 (gradio's idiom: the default makes it a progress bar)
        try:
            for step, steps, image in method(*args):
                progress((step, steps), unit="steps")
                if image is not None:
                    yield image
        except OneNetError as error:
            raise gr.Error(public_message(str(error))) from None

    stream.__name__ = method.__name__
    return stream


# Every event that holds much memory (optimisation with gradients, heat maps, t-SNE, embedding an upload, adding
# photos) takes one of SPACE_MAX_HEAVY_JOBS shared slots; the others wait in gradio's queue.
HEAVY = {"concurrency_id": "heavy", "concurrency_limit": SPACE_MAX_HEAVY_JOBS}


def clicked_row(event: gr.SelectData) -> tuple[int, None]:
    """The gallery position a user clicked; the uploaded image is cleared so the click is the query."""
    return event.index, None


def build_demo(space: OneNetSpace) -> gr.Blocks:
    """The six use tabs, Explore and Imagine. Image inputs keep `image_mode=None`: gradio then passes the upload's
    path on without decoding it, and `load_image` checks its size from the header before decoding (its pixel
    limit). Caption and tag requests run up to `space.max_batch_size` at once, so `OneNetSpace` can batch them;
    the heavy events share SPACE_MAX_HEAVY_JOBS slots (`HEAVY`); every other event runs one request at a time
    (gradio's default). Uploads are deleted by gradio after a while (`delete_cache`)."""
    with gr.Blocks(title="OneNet: one network, many uses", delete_cache=SPACE_DELETE_CACHE) as demo:
        gr.Markdown("# OneNet: one network, many uses\nOne image encoder and one caption decoder, six uses.")
        examples = [str(p) for p in sample_photos()]
        with gr.Tab("Caption"):
            image = gr.Image(type="filepath", image_mode=None, label="Image")
            beam = gr.Slider(1, SPACE_MAX_BEAM_SIZE, value=3, step=1, label="Beam size")
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
            image = gr.Image(type="filepath", image_mode=None, label="Image")
            k = gr.Slider(1, 20, value=5, step=1, label="Tags")
            words = gr.Dataframe(headers=["tag", "score"], label="Word tags", interactive=False)
            labels = gr.Dataframe(headers=["ImageNet label", "probability"], label="ImageNet labels", interactive=False)
            gr.Examples(examples, image)
            gr.Button("Tag", variant="primary").click(
                user_errors(space.tag),
                [image, k],
                [words, labels],
                api_name="tag",
                concurrency_limit=space.max_batch_size,
            )
        with gr.Tab("Similar words"):
            text = gr.Textbox(label="Word(s)", placeholder="beach")
            word_space = gr.Radio(["learned", "glove"], value="learned", label="Word space")
            k = gr.Slider(1, SPACE_MAX_K, value=10, step=1, label="Words")
            table = gr.Dataframe(headers=["word", "cosine"], label="Similar words", interactive=False)
            gr.Button("Find", variant="primary").click(
                user_errors(space.similar_words), [text, word_space, k], table, api_name="similar_words"
            )
        with gr.Tab("Analogy"):
            with gr.Row():
                a, b, c = gr.Textbox(label="a", value="man"), gr.Textbox(label="b", value="king"), gr.Textbox(label="c")
            method = gr.Radio(list(ANALOGY_METHODS), value="3cosadd", label="Method")
            word_space = gr.Radio(["glove", "learned"], value="glove", label="Word space")
            k = gr.Slider(1, 20, value=5, step=1, label="Answers")
            table = gr.Dataframe(headers=["d", "score"], label="a : b :: c : d", interactive=False)
            gr.Button("Solve", variant="primary").click(
                user_errors(space.analogy), [a, b, c, method, word_space, k], table, api_name="analogy"
            )
        with gr.Tab("Similar images"):
            gallery = gr.Gallery(space.gallery_items(), label="Gallery (click an image to search with it)", columns=6)
            clicked = gr.Number(visible=False, precision=0)
            image = gr.Image(type="filepath", image_mode=None, label="Or upload an image")
            focus = gr.Dropdown([""] + list(imagenet_labels()), value="", label="Focus on ImageNet class (optional)")
            k = gr.Slider(1, 20, value=6, step=1, label="Results")
            results = gr.Gallery(label="Similar images", columns=6)
            gr.Button("Search", variant="primary").click(
                user_errors(space.similar_images),
                [image, clicked, k, focus],
                results,
                api_name="similar_images",
                **HEAVY,
            )
            gallery.select(clicked_row, None, [clicked, image], api_visibility="private").then(
                user_errors(space.similar_images),
                [image, clicked, k, focus],
                results,
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
                    user_errors(add_images), uploads, gallery, api_visibility="private", **HEAVY
                )
        with gr.Tab("Describe to search"):
            text = gr.Textbox(label="Description", placeholder="a dog jumping into a pool")
            method = gr.Radio(list(SEARCH_METHODS), value="reranked", label="Method")
            k = gr.Slider(1, 20, value=6, step=1, label="Results")
            results = gr.Gallery(label="Matching images", columns=6)
            gr.Button("Search", variant="primary").click(
                user_errors(space.search), [text, method, k], results, api_name="search"
            )
        with gr.Tab("Explore"):
            explore_tabs(space, examples)
        with gr.Tab("Imagine"):
            imagine_tabs(space, examples)
    return demo


def explore_tabs(space: OneNetSpace, examples: list[str]) -> None:
    """What the network learned: maps, neurons, where each word comes from, layer by layer."""

    def embedding_map(subject, color_by, word_space, words, top_words, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        """gradio's documented idiom: this default makes it show the library's tqdm bars as the request's progress."""
        return space.embedding_map(subject, color_by, word_space, words, top_words)

    with gr.Tab("Map"):
        gr.Markdown("A t-SNE map: nearby points have similar vectors. Hover a point for its name.")
        with gr.Row():
            subject = gr.Radio(["images", "words"], value="images", label="Map of")
            color_by = gr.Radio(list(COLOR_BY), value="tag", label="Colour images by")
            word_space = gr.Radio(["learned", "glove"], value="learned", label="Word space")
        with gr.Row():
            words = gr.Textbox(label="Words (optional; else the most frequent)", placeholder="dog, cat, beach, snow")
            top_words = gr.Slider(10, SPACE_MAX_MAP_WORDS, value=300, step=10, label="Most frequent words")
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
            k = gr.Slider(1, 16, value=8, step=1, label="Top images")
        image = gr.Image(type="filepath", image_mode=None, label="Or upload an image")
        gr.Examples(examples, image)
        images = gr.Gallery(label="Top gallery images", columns=4)
        table = gr.Dataframe(headers=["neuron", "word", "rise (nats)"], label="Words", interactive=False)
        gr.Button("Show", variant="primary").click(
            user_errors(space.neuron), [kind, number, image, k], [images, table], api_name="neuron", **HEAVY
        )
    with gr.Tab("Why this word"):
        gr.Markdown("For each word of the caption, Grad-CAM shows the part of the photo that made the decoder say it.")
        image = gr.Image(type="filepath", image_mode=None, label="Image")
        caption = gr.Textbox(label="Caption to explain (optional; else the model's own)")
        gr.Examples(examples, image)
        overlays = gr.Gallery(label="Where each word comes from", columns=4, object_fit="contain")
        gr.Button("Explain", variant="primary").click(
            user_errors(space.explain), [image, caption], overlays, api_name="explain", **HEAVY
        )
    with gr.Tab("Layer by layer"):
        gr.Markdown("The backbone stage by stage, from edges to parts to objects: each stage's strongest channels.")
        image = gr.Image(type="filepath", image_mode=None, label="Image")
        gr.Examples(examples, image)
        stages = gr.Gallery(label="Stages", columns=3, object_fit="contain")
        gr.Button("Show the layers", variant="primary").click(
            user_errors(space.layer_activations), image, stages, api_name="layers", **HEAVY
        )


def imagine_tabs(space: OneNetSpace, examples: list[str]) -> None:
    """What the network can picture: feature visualisation, imagined captions, DeepDream, style transfer. Each
    streams its image as it forms; steps are capped (`SPACE_MAX_IMAGINE_STEPS`)."""
    steps_label = f"Steps (at most {SPACE_MAX_IMAGINE_STEPS})"
    with gr.Tab("Visualize"):
        gr.Markdown("An image that excites one ImageNet class, one channel of the backbone's head or one unit of the "
                    "image representation, optimised from noise.")  # fmt: skip
        with gr.Row():
            kind = gr.Radio(["class", "channel", "unit"], value="class", label="Target")
            target = gr.Textbox(value="207", label="Class (index or name), channel or unit number")
        with gr.Row():
            steps = gr.Slider(1, SPACE_MAX_IMAGINE_STEPS, value=visualize.STEPS, step=1, label=steps_label)
            seed = gr.Number(value=0, precision=0, label="Seed")
        picture = gr.Image(label="Visualisation", type="pil", format="png")
        gr.Button("Visualize", variant="primary").click(
            streamed(space.visualize), [kind, target, steps, seed], picture, api_name="visualize", **HEAVY
        )
    with gr.Tab("Imagine a caption"):
        gr.Markdown("An image for a sentence: pixels optimised until the caption decoder would say it.")
        text = gr.Textbox(value="a dog runs on the beach", label="Sentence (caption words only)")
        with gr.Row():
            steps = gr.Slider(1, SPACE_MAX_IMAGINE_STEPS, value=imagine.STEPS, step=1, label=steps_label)
            seed = gr.Number(value=0, precision=0, label="Seed")
        picture = gr.Image(label="Imagined", type="pil", format="png")
        gr.Button("Imagine", variant="primary").click(
            streamed(space.imagine), [text, steps, seed], picture, api_name="imagine", **HEAVY
        )
    with gr.Tab("DeepDream"):
        gr.Markdown("Amplify what one backbone stage sees in a photo, over three octaves.")
        image = gr.Image(type="filepath", image_mode=None, label="Photo")
        gr.Examples(examples, image)
        with gr.Row():
            stage = gr.Dropdown(list(stage_widths(space.net.model)), value=dream.STAGE, label="Stage")
            strength = gr.Slider(0, 5, value=dream.STRENGTH, step=0.25, label="Strength")
            steps = gr.Slider(3, SPACE_MAX_IMAGINE_STEPS, value=dream.STEPS, step=1, label=steps_label)
        picture = gr.Image(label="Dream", type="pil", format="png")
        gr.Button("Dream", variant="primary").click(
            streamed(space.dream), [image, stage, strength, steps], picture, api_name="dream", **HEAVY
        )
    with gr.Tab("Style transfer"):
        gr.Markdown("The content photo redrawn with the style photo's textures and colours (Gatys et al.).")
        with gr.Row():
            content = gr.Image(type="filepath", image_mode=None, label="Content photo")
            style_image = gr.Image(type="filepath", image_mode=None, label="Style photo")
        gr.Examples([[examples[0], examples[-1]]], [content, style_image])
        with gr.Row():
            weight = gr.Slider(0, 100, value=style.STYLE_WEIGHT, step=1, label="Style weight")
            steps = gr.Slider(1, SPACE_MAX_IMAGINE_STEPS, value=style.STEPS, step=1, label=steps_label)
        picture = gr.Image(label="Stylised", type="pil", format="png")
        gr.Button("Transfer the style", variant="primary").click(
            streamed(space.style), [content, style_image, weight, steps], picture, api_name="style", **HEAVY
        )


def batch_size(text: str) -> int:
    """A --max-batch-size value: a whole number from 1 to MAX_BATCH_SIZE."""
    if not text.strip().isdecimal() or not 1 <= int(text) <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_BATCH_SIZE}, got {text[:20]!r}")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the OneNet Space")
    parser.add_argument("--model", default=default_model(), help="checkpoint folder or Hub repo id")
    parser.add_argument("--revision", help="Hub branch, tag or commit of --model")
    parser.add_argument("--gallery", help="folder of images to index (default: the sample gallery)")
    parser.add_argument("--index-dir", help="the Space's own folder for its gallery index (default: under ~/.cache)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    help_text = "let users add photos to the gallery (default: on for the sample gallery, off for --gallery)"
    parser.add_argument("--allow-uploads", action=argparse.BooleanOptionalAction, help=help_text)
    help_text = f"caption and tag requests answered together per model pass (default {SPACE_MAX_BATCH_SIZE})"
    parser.add_argument("--max-batch-size", type=batch_size, default=SPACE_MAX_BATCH_SIZE, help=help_text)
    help_text = "the exported graphs captions and tags run on, when the model has them (default %(default)s)"
    parser.add_argument("--onnx-variant", default=SPACE_ONNX_VARIANT, choices=["fp32", "int8"], help=help_text)
    args = parser.parse_args(argv)
    allow_uploads = args.allow_uploads if args.allow_uploads is not None else args.gallery is None
    space = OneNetSpace(
        args.model, args.gallery, revision=args.revision, folder=args.index_dir, allow_uploads=allow_uploads,
        max_batch_size=args.max_batch_size, onnx_variant=args.onnx_variant,
    )  # fmt: skip
    space.warm_up()
    build_demo(space).launch(server_name=args.host, server_port=args.port, **launch_options(space))


def launch_options(space: OneNetSpace) -> dict:
    """`launch()`'s settings of the Space: what it serves, and uploads bounded before they are stored (each file
    by `max_file_size`, the Space's `max_upload_bytes`, as it streams in; all stored ones by `UploadBudget`).
    show_error=False: gradio's own errors (e.g. an upload it cannot open) would show server paths; ours reach users
    as gr.Error, paths cut out."""
    from gradio.utils import get_upload_folder
    from starlette.middleware import Middleware

    budget = Middleware(UploadBudget, folder=get_upload_folder(), max_bytes=SPACE_MAX_STORED_UPLOAD_BYTES)
    return {
        "allowed_paths": space.served_paths(),
        "show_error": False,
        "max_file_size": space.max_upload_bytes,
        "app_kwargs": {"middleware": [budget]},
    }


if __name__ == "__main__":
    main()
