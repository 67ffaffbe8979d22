"""The `onenet` command line: one command per use, plus train, evaluate, index and export; all call the library."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .create.memory import check_memory
from .errors import OneNetError
from .hub import MODEL_ENV, default_model, resolve_model
from .options import (
    ANALOGY_METHODS,
    CALIBRATION_IMAGES,
    CAPTION_SAMPLES,
    CAPTION_WEIGHT,
    CHANNELS,
    COLOR_BY,
    CONTENT_WEIGHT,
    DEFAULT_CACHE_DIR,
    DREAM_OCTAVES,
    DREAM_STAGE,
    DREAM_STEPS,
    DREAM_STRENGTH,
    EVALUATION_TASKS,
    IMAGENET_WEIGHT,
    IMAGINE_STEPS,
    LABEL_THRESHOLD,
    MAP_METHODS,
    MAX_BEAM_SIZE,
    MAX_CALIBRATION_IMAGES,
    MAX_CHANNELS,
    MAX_IMAGE_SIZE,
    MAX_NEURON_IMAGES,
    MAX_NEURON_WORDS,
    MAX_NEURONS,
    MAX_OPTIMIZED_IMAGES,
    MAX_RAY_WORKERS,
    MAX_STEPS,
    MIN_IMAGE_SIZE,
    NEURON_KINDS,
    SEARCH_METHODS,
    STYLE_STEPS,
    STYLE_WEIGHT,
    VARIANTS,
    VISUALIZE_STEPS,
    check_beam_size,
    check_caption_samples,
    check_channels,
    check_image_count,
    check_image_size,
    check_k,
    check_label_threshold,
    check_length_penalty,
    check_map_path,
    check_neuron_sizes,
    check_no_repeat_ngram_size,
    check_octaves,
    check_output_folder,
    check_seed,
    check_steps,
    check_text_length,
    check_weight,
    variant_option,
)
from .training.arguments import CaptionTrainingArguments, HeadTrainingArguments, SCSTArguments
from .utils.atomic_files import check_new_folder, check_output_file, write_json
from .utils.messages import escape_controls

# Everything `build_parser` and the checks before a model loads import is torch-free (options.py,
# training_arguments.py, hub.py, the folder checks of indexing.py and gallery.py), so `onenet CMD --help` and a bad
# option answer at once; each handler imports what does the work (torch, transformers) once its options are checked.
COMMANDS = {  # command -> one line for --help; `onenet --help` lists these without importing torch
    "train": "train OneNet's caption network on a captioned-image dataset",
    "train-heads": "train the tag and retrieval heads on a trained model",
    "train-scst": "fine-tune a trained model's caption decoder on CIDEr-D (self-critical training)",
    "evaluate": "caption metrics, tag precision, analogy accuracy or retrieval",
    "caption": "print PATH<TAB>caption for each image",
    "tag": "print PATH<TAB>word tags<TAB>ImageNet labels for each image",
    "similar-words": "words closest to a word (several words are averaged)",
    "analogy": "A is to B as C is to ?",
    "index": "embed every image under a folder into a gallery index",
    "similar-images": "gallery images most like an image (path or row)",
    "search": "gallery images matching a description",
    "map": "a 2-D t-SNE map of a gallery's images or of words (.html or .png)",
    "explain": "one heat map per caption word: where in the image it comes from",
    "neuron": "a unit or channel's top gallery images and words; an image's own",
    "layers": "an image's backbone activations stage by stage, one PNG each",
    "visualize": "an image that excites an ImageNet class, a channel or a unit",
    "imagine": "an image for a sentence, made with the caption decoder",
    "dream": "DeepDream: amplify what a backbone stage sees in a photo",
    "style": "style transfer: CONTENT redrawn with STYLE's textures",
    "export": "export ONNX graphs and their manifest",
    "release": "write a complete Hub model repo folder (card, weights, ONNX)",
    "push": "upload a release folder to a Hugging Face Hub model repo",
    "build-space": "write a self-contained Hugging Face Space folder",
}


def add_dataclass_arguments(parser: argparse.ArgumentParser, arguments: type, exclude: tuple[str, ...] = ()) -> None:
    """One flag per field of a training-arguments dataclass (but those in `exclude`), its default shown in --help."""
    for field in dataclasses.fields(arguments):
        if field.name in exclude:
            continue
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING
        default = None if required else field.default
        help_text = None if required else f"(default: {default})"
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        kind = {"int": int, "float": float}.get(str(field.type), str)
        parser.add_argument(flag, type=kind, default=default, required=required, dest=field.name, help=help_text)


def dataclass_from(arguments: type, args: argparse.Namespace):
    """The dataclass built from parsed flags (those `add_dataclass_arguments` added); the bench scripts use it too."""
    fields = {f.name for f in dataclasses.fields(arguments)}
    return arguments(**{k: v for k, v in vars(args).items() if k in fields})


def _train(args: argparse.Namespace) -> int:
    from .training.captions import train
    from .utils.distributed import is_main_process

    output_dir = train(dataclass_from(CaptionTrainingArguments, args))
    if is_main_process():  # one line for a run of several processes (accelerate launch)
        print(f"best model written to {output_dir}")
    return 0


def _train_heads(args: argparse.Namespace) -> int:
    from .training.heads import train_heads
    from .utils.distributed import is_main_process

    output_dir = train_heads(dataclass_from(HeadTrainingArguments, args))
    if is_main_process():
        print(f"model with trained heads written to {output_dir}")
    return 0


def _train_scst(args: argparse.Namespace) -> int:
    from .training.scst import train_scst

    print(f"best model (by dev CIDEr) written to {train_scst(dataclass_from(SCSTArguments, args))}")
    return 0


def _load(args: argparse.Namespace):
    """The model of --model: found first (a missing one is a one-line error without torch), then loaded."""
    with_onnx = args.backend != "torch" and args.onnx_dir is None  # a Hub release's onnx/ too, as from_pretrained does
    folder = resolve_model(args.model, args.revision, with_onnx=with_onnx)
    from .onenet import OneNet

    return OneNet.from_pretrained(folder, args.device, args.backend, args.onnx_dir, args.onnx_variant)


def _evaluate(args: argparse.Namespace) -> int:
    if args.task != "analogy" and not args.data_dir:
        raise OneNetError(f"--data-dir is required for --task {args.task}")
    for option, file in (("--output", args.output), ("--captions-output", args.captions_output)):
        if file:
            check_output_file(file, option)  # before the work, not after it
    if args.task == "captions":
        _check_caption_options(args)
    elif args.task == "tags":
        _check_tag_options(args)
    net = _load(args) if args.task != "analogy" or args.space == "learned" else None
    from .evaluation import evaluate, format_table

    data = {
        "data_dir": args.data_dir,
        "split": args.split,
        "data_format": args.data_format,
        "cache_dir": args.cache_dir,
    }
    options = {
        "captions": data | {
            "beam_size": args.beam_size, "length_penalty": args.length_penalty,
            "no_repeat_ngram_size": args.no_repeat_ngram_size, "imagenet_steering": args.imagenet_steering,
            "imagenet_labels": _imagenet_labels(args),
        },
        "tags": data | {
            "caption_samples": args.caption_samples, "caption_weight": args.caption_weight,
            "imagenet_weight": args.imagenet_weight,
        },
        "retrieval": data | {"methods": args.methods.split(","), "captions_per_image": args.captions_per_image},
        "analogy": {
            "space": args.space, "methods": args.analogy_methods.split(","), "restrict_vocab": args.restrict_vocab,
            "questions": args.questions,
        },
    }  # fmt: skip
    result = evaluate(net, args.task, **options[args.task])
    result = {"model": str(args.model), **result}
    captions = result.pop("captions", None)
    if captions is not None and args.captions_output:
        Path(args.captions_output).write_text("".join(f"{name}\t{text}\n" for name, text in captions))
    metrics = result["metrics"]
    if args.task == "analogy":
        for method, sections in metrics.items():
            for section, row in sections.items():
                print(f"{method:8s} {section:28s} {100 * row['accuracy']:6.2f}%  ({row['correct']}/{row['questions']}, "
                      f"{row['skipped']} skipped)")  # fmt: skip
    elif all(isinstance(v, dict) for v in metrics.values()):
        for name, values in metrics.items():
            print(f"[{name}]\n{format_table(values)}")
    else:
        print(format_table({k: v for k, v in metrics.items() if isinstance(v, float)}))
    if args.output:
        write_json(result, Path(args.output))
    return 0


def _for_each_image(args: argparse.Namespace, describe) -> int:
    """Print `PATH<TAB>describe(net, path)` per image in order; an unreadable image is an error line, not fatal."""
    from .data.example_photos import example_photos

    paths = list(args.images) + ([str(p) for p in example_photos()] if args.example_photos else [])
    if not paths:
        print(f"onenet {args.command}: give image paths, or --example-photos", file=sys.stderr)
        return 2
    net, failed = _load(args), 0
    from .images import ImageLoadError

    for path in paths:
        try:
            text = describe(net, path)
        except ImageLoadError as error:
            print(f"error: {escape_controls(str(error))}", file=sys.stderr)
            failed += 1
            continue
        print(f"{escape_controls(path)}\t{text}", flush=True)
    return 1 if failed else 0


def _check_caption_options(args: argparse.Namespace) -> None:
    """The decoding options of `caption` and `evaluate --task captions`, checked before the model loads."""
    if args.beam_size is not None:
        check_beam_size(args.beam_size)
    if args.no_repeat_ngram_size is not None:
        check_no_repeat_ngram_size(args.no_repeat_ngram_size)
    if args.length_penalty is not None:
        check_length_penalty(args.length_penalty)


def _check_tag_options(args: argparse.Namespace) -> None:
    """The tagger's options of `tag` and `evaluate --task tags`, checked before the model loads."""
    check_caption_samples(args.caption_samples)
    check_weight("caption_weight", args.caption_weight)
    check_weight("imagenet_weight", args.imagenet_weight)


def _caption(args: argparse.Namespace) -> int:
    _check_caption_options(args)
    labels = _imagenet_labels(args)
    options = (args.beam_size, args.length_penalty, args.no_repeat_ngram_size, args.imagenet_steering)
    return _for_each_image(args, lambda net, image: net.caption(image, *options, imagenet_labels=labels)[0].text)


def _imagenet_labels(args: argparse.Namespace) -> float:
    """--imagenet-labels, or the library's default threshold; checked before a model loads."""
    threshold = LABEL_THRESHOLD if args.imagenet_labels is None else args.imagenet_labels
    check_label_threshold(threshold)
    return threshold


def _tag(args: argparse.Namespace) -> int:
    check_k(args.k)  # before the model loads
    _check_tag_options(args)

    def describe(net, image) -> str:
        tags = net.tag(image, args.k, args.caption_samples, args.caption_weight, args.imagenet_weight)[0]
        words = ", ".join(f"{t.word} {t.score:.2f}" for t in tags.words)
        return f"tags: {words}\timagenet: " + ", ".join(f"{t.word} {t.score:.2f}" for t in tags.imagenet)

    return _for_each_image(args, describe)


def _export(args: argparse.Namespace) -> int:
    import json

    from .gallery.build import list_images

    photos = []
    if args.calibration_images:
        if not 1 <= args.calibration_count <= MAX_CALIBRATION_IMAGES:
            count = args.calibration_count
            raise OneNetError(f"--calibration-count must be 1 to {MAX_CALIBRATION_IMAGES:,}, got {count}")
        photos = list_images(args.calibration_images)[: args.calibration_count]
        if not photos:
            raise OneNetError(f"no images in {args.calibration_images}")
    from .hub import check_model_folder

    checkpoint = check_model_folder(Path(args.checkpoint))  # before torch and the model load
    check_output_folder(Path(args.out) if args.out else checkpoint / "onnx", "ONNX folder")
    from .onnx.export import export_onnx  # needs the onnx extra: a missing one is a one-line error

    manifest = export_onnx(
        args.checkpoint, args.out, int8_dynamic=args.int8_dynamic, fp16=args.fp16, calibration_images=photos,
        gallery_encoder_only=args.gallery_encoder_only,
    )  # fmt: skip
    print(json.dumps(manifest, indent=2))
    return 0


def _release(args: argparse.Namespace) -> int:
    check_new_folder(Path(args.out), "a release")  # before torch and the model load
    from .publish.release import write_release

    out = write_release(
        args.model_dir, args.out, args.eval, args.card, args.model_name, args.fp16_weights, onnx=args.onnx,
        calibration_images=args.calibration_images,
    )  # fmt: skip
    print(f"released {args.model_dir} to {out}")
    return 0


def _build_space(args: argparse.Namespace) -> int:
    check_new_folder(Path(args.out), "a Space folder")  # before torch and the model load
    from .publish.space_bundle import build_space

    out = build_space(args.model, args.out, args.gallery, args.revision, args.model_id)
    print(f"Space written to {out}: deploy it with `hf upload ORG/NAME {out} --repo-type space`")
    return 0


def _push(args: argparse.Namespace) -> int:
    from .publish.release import push_release

    result = push_release(args.folder, args.repo_id, args.private, args.dry_run)
    if not args.dry_run:
        print(f"pushed {args.folder} to https://huggingface.co/{args.repo_id} ({result})")
        return 0
    for file in result:
        print(f"{file.size:>12,}  {file.path}")
    print(f"{sum(f.size for f in result):>12,}  bytes in {len(result)} files would be uploaded to {args.repo_id}")
    return 0


def _print_scored(rows) -> None:
    for row in rows:
        print(f"{escape_controls(row.word if hasattr(row, 'word') else row.path)}\t{row.score:.4f}")


def _similar_words(args: argparse.Namespace) -> int:
    check_k(args.k)  # before the model loads
    _print_scored(_load(args).similar_words(" ".join(args.words), args.k, args.space))
    return 0


def _analogy(args: argparse.Namespace) -> int:
    check_k(args.k)  # before the model loads
    _print_scored(_load(args).analogy(args.a, args.b, args.c, args.k, args.space, args.method))
    return 0


def _index(args: argparse.Namespace) -> int:
    from .gallery.build import check_ann_options, check_image_folder, check_index_folder

    check_image_folder(args.images)  # before the model loads
    check_index_folder(args.out, [args.images])
    check_ann_options(args.ann, args.n_trees)
    if args.engine == "local" and (args.address or args.num_workers is not None):
        raise OneNetError("--address and --num-workers apply to --engine ray")
    embedder = None
    if args.engine == "ray":
        from .ray_indexing import RayEmbedder

        workers = 2 if args.num_workers is None else args.num_workers
        embedder = RayEmbedder(
            args.model, workers, args.address, args.revision, args.backend, args.onnx_dir, args.onnx_variant
        )
    options = {"ann": args.ann, "n_trees": args.n_trees, "rebuild": args.rebuild}
    encoder = _gallery_encoder(args) if embedder is None else None
    if encoder is not None:  # the export gives every gallery array: no PyTorch in this process
        from .gallery.build import build_gallery
        from .gallery.embedding import onnx_embedder

        embedder = onnx_embedder(encoder)
        print(f"embedding new or changed images with {embedder.description}", file=sys.stderr)
        index = build_gallery(
            args.images, args.out, encoder.fingerprint, encoder.representation_size, embedder, **options
        )
    else:
        net = _load(args)
        embedder = embedder or net.gallery_embedder()
        print(f"embedding new or changed images with {embedder.description}", file=sys.stderr)
        index = net.build_index(args.images, args.out, embedder=embedder, **options)
    for entry in index.metadata["skipped"]:
        path, reason = entry["path"], entry["reason"]
        reason = reason if reason.startswith(path) else f"{path}: {reason}"  # most reasons name the file already
        print(f"skipped {escape_controls(reason)}", file=sys.stderr)
    changes = ", ".join(f"{count} {change}" for change, count in index.metadata["build_changes"].items())
    skipped = f"{len(index.metadata['skipped'])} skipped"
    print(f"indexed {len(index)} images into {escape_controls(args.out)} ({changes}; {skipped})")
    return 0


def _gallery_encoder(args: argparse.Namespace):
    """The exported gallery encoder `onenet index` runs without loading PyTorch (`--backend auto` on CPU, the
    default), or None: PyTorch embeds, as `OneNet.gallery_embedder` decides. An export that cannot serve says why."""
    if args.backend != "auto" or args.device not in (None, "cpu"):
        return None
    folder = resolve_model(args.model, args.revision, with_onnx=args.onnx_dir is None)
    try:
        from .onnx.graphs import MANIFEST_FILE, OnnxExportError, OnnxGalleryEncoder, gallery_variant

        return OnnxGalleryEncoder(folder, args.onnx_dir, gallery_variant(args.onnx_variant))
    except ImportError:
        return None  # no onnxruntime: the onnx extra is optional here
    except OnnxExportError as error:
        if (Path(args.onnx_dir) if args.onnx_dir else folder / "onnx").joinpath(MANIFEST_FILE).is_file():
            print(f"not using the ONNX export: {error}", file=sys.stderr)
        return None


def _check_index(folder: str) -> None:
    """--index must hold a gallery index: checked before the model loads."""
    from .gallery.index import check_index_present

    check_index_present(folder)


def _similar_images(args: argparse.Namespace) -> int:
    _check_index(args.index)
    net = _load(args)
    query = int(args.query) if args.query.isdecimal() and args.query.isascii() else args.query
    exact = True if args.exact else None
    _print_scored(net.similar_images(net.load_index(args.index), query, args.k, exact, args.focus_class))
    return 0


def _search(args: argparse.Namespace) -> int:
    check_k(args.k)  # before the model loads
    check_text_length(" ".join(args.text), "text")
    _check_index(args.index)
    net = _load(args)
    _print_scored(net.search(net.load_index(args.index), " ".join(args.text), args.k, args.method))
    return 0


def _map(args: argparse.Namespace) -> int:
    check_map_path(args.out)  # before the model loads
    if args.index and args.space:
        raise OneNetError("--space applies to word maps (--words, --top-words); an image map shows representations")
    if not args.index and args.color_by:
        raise OneNetError("--color-by applies to image maps (--index); a word map shows words")
    if args.index:
        _check_index(args.index)
    net = _load(args)
    index = net.load_index(args.index) if args.index else None
    words = args.words.split(",") if args.words is not None else None
    space, color_by = args.space or "learned", args.color_by or "class"
    result = net.embedding_map(index, words, args.top_words, space, color_by, args.method, args.perplexity, args.seed)
    result.save(args.out)
    print(f"{result.title}, {result.settings}\nwritten to {escape_controls(str(args.out))}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    if args.beam_size is not None:
        check_beam_size(args.beam_size)  # before the model loads
    check_output_folder(args.out)
    explanation = _load(args).explain(args.image, args.caption, args.beam_size)
    print(f"caption: {escape_controls(explanation.caption)}")
    for path, word in zip(explanation.save_overlays(args.out), explanation.words, strict=True):
        print(f"{escape_controls(str(path))}\t{escape_controls(word.word)}\t{word.log_prob:.4f}")
    return 0


def _neuron(args: argparse.Namespace) -> int:
    check_neuron_sizes(args.k, args.n_words, args.n)  # before the model loads
    if args.out:  # the contact sheet is optional
        check_output_file(args.out)
    _check_index(args.index)
    net = _load(args)
    from .explore.neurons import DESCRIBED, neuron_sheet
    from .explore.sheets import save_image

    index = net.load_index(args.index)
    if args.image is None:
        found = [net.neuron(index, args.unit, args.channel, args.k, args.n_words)]
    else:
        found = net.distinctive_neurons(index, args.image, args.n, args.k, args.n_words, args.kind)
    for item in found:
        stats = f"gallery mean {item.gallery_mean:.4f}, std {item.gallery_std:.4f}"
        if item.z_score is not None:
            stats = f"this image {item.activation:.4f}, z-score {item.z_score:.2f}; {stats}"
        print(f"{item.name} of {DESCRIBED[item.kind]}: {stats}")
        words = ", ".join(f"{escape_controls(w.word)} {w.score:+.3f}" for w in item.words) or "none"
        print(f"words (mean log-probability rise when it is pushed up): {words}")
        for image in item.images:
            print(f"{escape_controls(image.path)}\t{image.activation:.4f}")
    if args.out:
        print(f"contact sheet written to {escape_controls(str(save_image(neuron_sheet(found), args.out)))}")
    return 0


def _layers(args: argparse.Namespace) -> int:
    check_channels(args.channels)  # before the model loads
    out = check_output_folder(args.out)
    stages = _load(args).layer_activations(args.image, args.channels)
    from .explore.sheets import save_image

    out.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        height, width = stage.resolution
        strongest = ", ".join(f"{c} ({m:.3f})" for c, m in zip(stage.channels[:5], stage.means[:5], strict=False))
        path = save_image(stage.to_image(), out / stage.file_name)
        print(f"{escape_controls(str(path))}\t{stage.name}: {stage.stage_channels} channels at {height}x{width}; "
              f"strongest: {strongest}")  # fmt: skip
    return 0


def _save_imagined(snapshot, out: str, what: str) -> int:
    """Write a Create result (several images side by side) as a PNG and say what was made."""
    from .explore.sheets import save_image

    images = snapshot.images
    strip = images[0] if len(images) == 1 else _side_by_side(images)
    path = save_image(strip, out)
    print(f"{what} written to {escape_controls(str(path))} ({strip.width}x{strip.height}; "
          f"{snapshot.steps} steps, objective {snapshot.objective:.4f})")  # fmt: skip
    return 0


def _side_by_side(images):
    from PIL import Image

    strip = Image.new("RGB", (sum(image.width for image in images), max(image.height for image in images)), "white")
    left = 0
    for image in images:
        strip.paste(image, (left, 0))
        left += image.width
    return strip


def _check_optimisation(args: argparse.Namespace, **weights: float) -> None:
    """An optimisation use's own numbers and `weights`, checked before the model loads (the use checks them too)."""
    check_steps(args.steps)
    check_image_size(args.size)
    if getattr(args, "seed", None) is not None:
        check_seed(args.seed)
    for name, weight in weights.items():
        check_weight(name, weight)
    check_output_file(args.out)


def _visualize(args: argparse.Namespace) -> int:
    check_image_count(args.images)
    _check_optimisation(args, diversity=args.diversity)
    check_memory(args.size, images=args.images)
    net = _load(args)
    snapshot = net.visualize(
        args.imagenet_class, args.channel, args.unit, args.stage, args.steps, args.seed, args.images, args.diversity,
        args.size,
    )  # fmt: skip
    return _save_imagined(snapshot, args.out, "visualisation")


def _imagine(args: argparse.Namespace) -> int:
    check_text_length(args.text, "sentence")  # before the model loads
    _check_optimisation(args)
    check_memory(args.size)
    snapshot = _load(args).imagine(args.text, args.steps, args.seed, args.size)
    return _save_imagined(snapshot, args.out, "imagined image")


def _dream(args: argparse.Namespace) -> int:
    _check_optimisation(args, strength=args.strength)
    check_octaves(args.octaves, args.steps)
    net = _load(args)
    snapshot = net.dream(args.image, args.stage, args.steps, args.strength, args.octaves, args.size, args.seed)
    return _save_imagined(snapshot, args.out, "dream")


def _style(args: argparse.Namespace) -> int:
    _check_optimisation(args, **{"content weight": args.content_weight, "style weight": args.style_weight})
    net = _load(args)
    snapshot = net.style(args.content, args.style, args.steps, args.content_weight, args.style_weight, args.size)
    return _save_imagined(snapshot, args.out, "stylised image")


class _DeprecatedAlias(argparse.Action):
    """An old flag kept for one release: it works as `replacement` does and says on stderr to use that."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str, const: object = True, **kwargs):
        super().__init__(option_strings, dest, nargs=0, const=const, help=argparse.SUPPRESS, **kwargs)
        self.replacement = replacement

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"onenet: {option_string} is deprecated, use {self.replacement}", file=sys.stderr)
        setattr(namespace, self.dest, self.const)


def example_photos_option(command: argparse.ArgumentParser, verb: str) -> None:
    """`--example-photos` (scikit-image's six photos, the Space's examples); `--sample-photos` is its old name,
    kept until the next release ("samples" are the tagger's sampled captions)."""
    help_text = f"also {verb} scikit-image's six example photos"
    command.add_argument("--example-photos", action="store_true", help=help_text)
    old = {"dest": "example_photos", "action": _DeprecatedAlias, "replacement": "--example-photos"}
    command.add_argument("--sample-photos", **old)


def build_parser() -> argparse.ArgumentParser:
    from .gallery.ann import ANN_METHODS, ANNOY_TREES  # numpy, SQLite and tqdm: not for `onenet --help`
    from .gallery.build import MAX_N_TREES

    parser = argparse.ArgumentParser(prog="onenet", description="One network, many uses.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help=COMMANDS["train"])
    add_dataclass_arguments(train, CaptionTrainingArguments)
    train.set_defaults(run=_train)
    train_heads = commands.add_parser("train-heads", help=COMMANDS["train-heads"])
    add_dataclass_arguments(train_heads, HeadTrainingArguments)
    train_heads.set_defaults(run=_train_heads)
    train_scst = commands.add_parser("train-scst", help=COMMANDS["train-scst"])
    add_dataclass_arguments(train_scst, SCSTArguments)
    train_scst.set_defaults(run=_train_scst)

    def model_options(sub: argparse.ArgumentParser, decoding: bool = False) -> None:
        help_text = f"checkpoint folder or Hub repo id (default: ${MODEL_ENV} if set, else %(default)s)"
        sub.add_argument("--model", default=default_model(), help=help_text)
        sub.add_argument("--revision", help="Hub branch, tag or commit of --model (default: main)")
        sub.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
        help_text = (
            "onnx: the exported graphs (captions only); auto: PyTorch, with the graphs where they exist"
            " (default: %(default)s)"
        )
        sub.add_argument("--backend", default="torch", choices=["torch", "onnx", "auto"], help=help_text)
        sub.add_argument("--onnx-dir", default=None, help="exported graphs (default: MODEL/onnx)")
        help_text = (
            "int8-static: the image encoder only (others fp32); fastest: int8-static where exported, else fp32"
            " (default: %(default)s)"
        )
        sub.add_argument("--onnx-variant", default="fp32", type=variant_option, choices=VARIANTS, help=help_text)
        if decoding:
            help_text = f"1 (greedy) to {MAX_BEAM_SIZE} (default: the model's generation config, 3 in a release)"
            sub.add_argument("--beam-size", type=int, help=help_text)
            sub.add_argument("--length-penalty", type=float, help="score = log p / length ** this (default: 1.0)")
            help_text = "never repeat an n-gram of this length; 0 = off (default: the model's generation config)"
            sub.add_argument("--no-repeat-ngram-size", type=int, help=help_text)
            help_text = "steer beam search towards the words of the backbone's ImageNet labels; 0 = off (default)"
            sub.add_argument("--imagenet-steering", type=float, default=0.0, help=help_text)
            help_text = (
                "the ImageNet classifier's confidence (0-1) from which a label's word (cat, coffee, bus) must appear"
                " in the caption; 0 = off (default: 0.3, the library's LABEL_THRESHOLD)"
            )
            sub.add_argument("--imagenet-labels", type=float, help=help_text)

    def tagger_options(sub: argparse.ArgumentParser) -> None:
        help_text = "tags: decoder captions sampled per image to sharpen the tag head; 0 = none"
        sub.add_argument("--caption-samples", type=int, default=CAPTION_SAMPLES, help=help_text)
        help_text = "tags: weight of the log chance that the decoder says a word along the sampled captions"
        sub.add_argument("--caption-weight", type=float, default=CAPTION_WEIGHT, help=help_text)
        help_text = "tags: weight of the log chance that the backbone's ImageNet labels name a word; 0 = off"
        sub.add_argument("--imagenet-weight", type=float, default=IMAGENET_WEIGHT, help=help_text)

    evaluate = commands.add_parser("evaluate", help=COMMANDS["evaluate"])
    model_options(evaluate, decoding=True)
    evaluate.add_argument("--task", default="captions", choices=EVALUATION_TASKS)
    evaluate.add_argument("--data-dir", help="dataset folder (all tasks but analogy)")
    evaluate.add_argument("--data-format", default="flickr8k", choices=["flickr8k", "coco"])
    evaluate.add_argument("--split", default="dev")
    evaluate.add_argument(
        "--cache-dir", default=DEFAULT_CACHE_DIR, help="backbone feature cache (default: %(default)s)"
    )
    evaluate.add_argument(
        "--methods", default=",".join(SEARCH_METHODS), help="retrieval task: search methods, comma-separated"
    )
    evaluate.add_argument("--captions-per-image", type=int, help="retrieval: query with each image's first N captions")
    evaluate.add_argument("--space", default="glove", choices=["glove", "learned"], help="analogy word space")
    evaluate.add_argument("--analogy-methods", default=",".join(ANALOGY_METHODS))
    evaluate.add_argument("--restrict-vocab", type=int, default=30_000, help="analogy: most frequent words used")
    evaluate.add_argument("--questions", help="analogy questions file (default: gensim's questions-words.txt)")
    tagger_options(evaluate)
    evaluate.add_argument("--output", help="write the results as JSON here")
    evaluate.add_argument("--captions-output", help="captions task: write IMAGE<TAB>caption lines here")
    evaluate.set_defaults(run=_evaluate)

    caption = commands.add_parser("caption", help=COMMANDS["caption"])
    model_options(caption, decoding=True)
    caption.add_argument("images", nargs="*")
    example_photos_option(caption, "caption")
    caption.set_defaults(run=_caption)

    tag = commands.add_parser("tag", help=COMMANDS["tag"])
    model_options(tag)
    tag.add_argument("images", nargs="*")
    example_photos_option(tag, "tag")
    tag.add_argument("-k", type=int, default=5)
    tagger_options(tag)
    tag.set_defaults(run=_tag)

    words = commands.add_parser("similar-words", help=COMMANDS["similar-words"])
    model_options(words)
    words.add_argument("words", nargs="+")
    words.add_argument("--space", default="learned", choices=["learned", "glove"])
    words.add_argument("-k", type=int, default=10)
    words.set_defaults(run=_similar_words)

    analogy = commands.add_parser("analogy", help=COMMANDS["analogy"])
    model_options(analogy)
    for name in ("a", "b", "c"):
        analogy.add_argument(name)
    analogy.add_argument("--space", default="glove", choices=["learned", "glove"])
    analogy.add_argument("--method", default="3cosadd", choices=ANALOGY_METHODS)
    analogy.add_argument("-k", type=int, default=5)
    analogy.set_defaults(run=_analogy)

    index = commands.add_parser("index", help=COMMANDS["index"])
    model_options(index)
    index.add_argument("images", help="folder of images (searched recursively)")
    index.add_argument("--out", required=True, help="index folder (created, or extended when it exists)")
    index.add_argument(
        "--ann",
        choices=ANN_METHODS,
        default="ivfpq",
        help="nearest-neighbour index of shards over 20,000 images (default: %(default)s)",
    )
    index.add_argument("--n-trees", type=int, default=ANNOY_TREES, help=f"Annoy trees (1 to {MAX_N_TREES:,})")
    index.add_argument("--rebuild", action="store_true", help="re-embed everything instead of extending")
    help_text = "local: this process; ray: Ray Data actors (the 'distributed' extra; README 'Beyond one machine')"
    index.add_argument("--engine", choices=["local", "ray"], default="local", help=help_text)
    index.add_argument("--address", help="--engine ray: the Ray cluster (default: a local Ray on this machine)")
    help_text = f"--engine ray: actors, each loading the model once (1 to {MAX_RAY_WORKERS:,}; default 2)"
    index.add_argument("--num-workers", type=int, help=help_text)
    index.set_defaults(run=_index, backend="auto", onnx_variant="fastest")  # the fastest exported image encoder

    similar = commands.add_parser("similar-images", help=COMMANDS["similar-images"])
    model_options(similar)
    similar.add_argument("query", help="image path, or a gallery row number")
    similar.add_argument("--index", required=True)
    similar.add_argument("-k", type=int, default=5)
    similar.add_argument("--exact", action="store_true", help="exact search even for a large gallery")
    similar.add_argument("--focus-class", help="ImageNet class index or name, e.g. 284 or 'Siamese cat'")
    similar.set_defaults(run=_similar_images)

    search = commands.add_parser("search", help=COMMANDS["search"])
    model_options(search)
    search.add_argument("text", nargs="+")
    search.add_argument("--index", required=True)
    search.add_argument("--method", default="reranked", choices=SEARCH_METHODS)
    search.add_argument("-k", type=int, default=5)
    search.set_defaults(run=_search)

    maps = commands.add_parser("map", help=COMMANDS["map"])
    model_options(maps)
    source = maps.add_mutually_exclusive_group(required=True)
    source.add_argument("--index", help="gallery index folder: map its images")
    source.add_argument("--words", help="comma-separated words to map, e.g. dog,cat,ball")
    source.add_argument("--top-words", type=int, help="map the N most frequent words of --space")
    maps.add_argument("--space", choices=["learned", "glove"], help="word maps: the word space (default: learned)")
    maps.add_argument("--color-by", choices=COLOR_BY, help="image maps: top ImageNet class or top tag (default: class)")
    maps.add_argument("--method", default="opentsne", choices=MAP_METHODS)
    maps.add_argument("--perplexity", type=float, help="t-SNE perplexity (default: min(30, (points - 1) / 3))")
    maps.add_argument("--seed", type=int, default=0, help="the same seed gives the same map")
    maps.add_argument("--out", required=True, help="map.html (interactive) or map.png (thumbnails or words)")
    maps.set_defaults(run=_map)
    explain = commands.add_parser("explain", help=COMMANDS["explain"])
    model_options(explain)
    explain.add_argument("image")
    explain.add_argument("--out", required=True, help="folder for 01-WORD.png, ... (created; nothing else is touched)")
    explain.add_argument("--caption", help="explain this caption instead of the model's own")
    help_text = f"beam for the model's own caption: 1 (greedy) to {MAX_BEAM_SIZE} (default: the generation config)"
    explain.add_argument("--beam-size", type=int, help=help_text)
    explain.set_defaults(run=_explain)
    neuron = commands.add_parser("neuron", help=COMMANDS["neuron"])
    model_options(neuron)
    neuron.add_argument("--index", required=True)
    which = neuron.add_mutually_exclusive_group(required=True)
    which.add_argument("--unit", type=int, help="a unit of the image representation (0-511 in the shipped model)")
    which.add_argument("--channel", type=int, help="a channel of the pooled backbone features (0-1279)")
    which.add_argument("--image", help="an image: its most distinctive units (or channels, --kind channel)")
    help_text = f"top gallery images per neuron (1 to {MAX_NEURON_IMAGES})"
    neuron.add_argument("-k", "--k", type=int, default=9, help=help_text)
    help_text = f"words per neuron (0 to {MAX_NEURON_WORDS}; 0 skips the decoder)"
    neuron.add_argument("--words", type=int, default=10, dest="n_words", help=help_text)
    neuron.add_argument("-n", type=int, default=5, help=f"--image: how many distinctive neurons (1 to {MAX_NEURONS})")
    neuron.add_argument("--kind", default="unit", choices=NEURON_KINDS, help="--image: units or channels")
    neuron.add_argument("--out", help="also write a contact sheet PNG here (thumbnails with their activations)")
    neuron.set_defaults(run=_neuron)

    stages = commands.add_parser("layers", help=COMMANDS["layers"])
    model_options(stages)
    stages.add_argument("image")
    stages.add_argument("--out", required=True, help="folder for NN-STAGE.png files (created; nothing else touched)")
    help_text = f"strongest channels shown per stage (1 to {MAX_CHANNELS})"
    stages.add_argument("--channels", type=int, default=CHANNELS, help=help_text)
    stages.set_defaults(run=_layers)

    def imagine_options(sub: argparse.ArgumentParser, steps: int, seed: bool = True) -> None:
        sub.add_argument("--out", required=True, help="PNG file to write")
        sub.add_argument("--steps", type=int, default=steps, help=f"optimisation steps, 1 to {MAX_STEPS}")
        if seed:
            sub.add_argument("--seed", type=int, default=0, help="same seed, same image (on one machine)")
        help_text = f"image side in pixels, {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (a photo: its short side)"
        sub.add_argument("--size", type=int, default=260, help=help_text)

    visualize = commands.add_parser("visualize", help=COMMANDS["visualize"])
    model_options(visualize)
    target = visualize.add_mutually_exclusive_group(required=True)
    target.add_argument("--class", dest="imagenet_class", help="an ImageNet class: index 0-999 or name")
    target.add_argument("--channel", type=int, help="a channel of --stage (the head: 0-1279)")
    target.add_argument("--unit", type=int, help="a unit of the image representation (0-511 in the shipped model)")
    visualize.add_argument("--stage", default="head", help="--channel's backbone stage: stem, stage 1..7, head")
    help_text = f"several images side by side, 1 to {MAX_OPTIMIZED_IMAGES}"
    visualize.add_argument("--images", type=int, default=1, help=help_text)
    visualize.add_argument("--diversity", type=float, default=0.0, help="with --images: push them apart (e.g. 1)")
    imagine_options(visualize, VISUALIZE_STEPS)
    visualize.set_defaults(run=_visualize)

    imagine = commands.add_parser("imagine", help=COMMANDS["imagine"])
    model_options(imagine)
    imagine.add_argument("text", help="a sentence in the caption vocabulary, e.g. 'a dog runs on the beach'")
    imagine_options(imagine, IMAGINE_STEPS)
    imagine.set_defaults(run=_imagine)

    dream = commands.add_parser("dream", help=COMMANDS["dream"])
    model_options(dream)
    dream.add_argument("image")
    dream.add_argument("--stage", default=DREAM_STAGE, help="stem, stage 1..7 or head (default: %(default)s)")
    dream.add_argument("--strength", type=float, default=DREAM_STRENGTH, help="step size, 0 to 100 (%(default)s)")
    dream.add_argument("--octaves", type=int, default=DREAM_OCTAVES, help="scales, 1 to 6 (%(default)s)")
    imagine_options(dream, DREAM_STEPS)
    dream.set_defaults(run=_dream)

    style = commands.add_parser("style", help=COMMANDS["style"])
    model_options(style)
    style.add_argument("content")
    style.add_argument("style")
    style.add_argument("--content-weight", type=float, default=CONTENT_WEIGHT, help="0 to 100 (%(default)s)")
    style.add_argument("--style-weight", type=float, default=STYLE_WEIGHT, help="0 to 100 (%(default)s)")
    imagine_options(style, STYLE_STEPS, seed=False)
    style.set_defaults(run=_style)

    export = commands.add_parser("export", help=COMMANDS["export"])
    export.add_argument("checkpoint", help="OneNet checkpoint folder")
    export.add_argument("--out", help="output folder (default: CHECKPOINT/onnx)")
    help_text = "skip the dynamic int8 (CPU) variant"
    export.add_argument("--no-int8-dynamic", dest="int8_dynamic", action="store_false", help=help_text)
    old = {"dest": "int8_dynamic", "action": _DeprecatedAlias, "replacement": "--no-int8-dynamic", "const": False}
    export.add_argument("--no-int8", **old)
    export.add_argument("--fp16", action="store_true", help="also write an fp16 (GPU) variant")
    help_text = "folder of photos to calibrate a static int8 image encoder on (the fast path of onenet index)"
    export.add_argument("--calibration-images", help=help_text)
    help_text = f"photos used from that folder (1 to {MAX_CALIBRATION_IMAGES:,})"
    export.add_argument("--calibration-count", type=int, default=CALIBRATION_IMAGES, help=help_text)
    help_text = "only the image encoder (static int8 with --calibration-images: under 20 MB, shippable; else fp32)"
    export.add_argument("--gallery-encoder-only", action="store_true", help=help_text)
    export.set_defaults(run=_export)

    release = commands.add_parser("release", help=COMMANDS["release"])
    release.add_argument("model_dir", help="trained model: folder of `onenet train`/`train-heads`, or a Hub id")
    release.add_argument("--out", required=True, help="new folder to write (refused if it exists and is not empty)")
    release.add_argument("--eval", nargs="*", default=[], help="`onenet evaluate --output` JSON files for the card")
    release.add_argument("--card", help="model card body in Markdown (e.g. model_card.md); its YAML is rebuilt")
    release.add_argument("--model-name", help="name in the card (default: the --out folder's name)")
    release.add_argument("--fp16-weights", action="store_true", help="store weights in fp16 (computed in fp32)")
    release.add_argument("--no-onnx", dest="onnx", action="store_false", help="leave out onnx/ (writing it needs onnx)")
    help_text = "photos (not evaluated on) to calibrate the static int8 image encoder on: the fast path of onenet index"
    release.add_argument("--calibration-images", help=help_text)
    release.set_defaults(run=_release)

    push = commands.add_parser("push", help=COMMANDS["push"])
    push.add_argument("folder", help="folder written by `onenet release`")
    push.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--dry-run", action="store_true", help="only list the files and sizes that would be uploaded")
    push.set_defaults(run=_push)

    space = commands.add_parser("build-space", help=COMMANDS["build-space"])
    space.add_argument("--model", default=default_model(), help="model folder or Hub repo id (default: %(default)s)")
    space.add_argument("--revision", help="Hub branch, tag or commit of --model")
    space.add_argument("--out", required=True, help="new folder to write (refused if it exists and is not empty)")
    space.add_argument("--gallery", help="image folder, or a COCO-format folder (its openly licensed photos only)")
    space.add_argument("--model-id", help="Hub repo the Space's card names when --model is a folder")
    space.set_defaults(run=_build_space)
    return parser


def command_list_parser() -> argparse.ArgumentParser:
    """`onenet` with no command or only --help: the command list, built without the modules behind the commands
    (their defaults import torch), so it answers at once."""
    parser = argparse.ArgumentParser(prog="onenet", description="One network, many uses.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        commands.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        command_list_parser().parse_args(argv)  # prints the help, or the usage error naming the valid commands
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except OneNetError as error:  # bad input, a missing file, model or extra: one line; anything else is a bug
        print(f"onenet {args.command}: error: {escape_controls(str(error))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
