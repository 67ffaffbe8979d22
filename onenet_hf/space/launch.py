"""The Space's command line (`python spaces/app.py`, a built Space's `app.py`): its options parsed before gradio,
torch or the model load, so `--help` answers at once and a model that cannot be had is one line."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import OneNetError
from ..hub import default_model, resolve_model
from ..options import SPACE_MAX_BATCH_SIZE, SPACE_ONNX_VARIANT, variant_option
from ..utils.extras import require
from ..utils.messages import escape_controls
from .batching import MAX_BATCH_SIZE


def batch_size(text: str) -> int:
    """A --max-batch-size value: a whole number from 1 to MAX_BATCH_SIZE."""
    if not text.strip().isdecimal() or not 1 <= int(text) <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_BATCH_SIZE}, got {text[:20]!r}")
    return int(text)


MAX_PORT = 65535


def port(text: str) -> int:
    """A --port value: a whole number from 1 to 65535. Port 0 (any free port) is refused too: gradio then says it
    runs on port 0 and fails to reach itself."""
    if not text.strip().isdecimal() or not 1 <= int(text) <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_PORT}, got {text[:20]!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    # run as `python -m onenet_hf.space` the usage line says so, not "__main__.py"; as `python app.py`, app.py
    prog = "python -m onenet_hf.space" if os.path.basename(sys.argv[0]) == "__main__.py" else None
    parser = argparse.ArgumentParser(prog=prog, description="Serve the OneNet Space")
    parser.add_argument("--model", default=default_model(), help="checkpoint folder or Hub repo id")
    parser.add_argument("--revision", help="Hub branch, tag or commit of --model")
    parser.add_argument("--gallery", help="folder of images to index (default: the example gallery)")
    parser.add_argument("--index-dir", help="the Space's own folder for its gallery index (default: under ~/.cache)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    # a string default goes through `port` too: a bad $GRADIO_SERVER_PORT is the same one line as a bad --port
    parser.add_argument("--port", type=port, default=os.environ.get("GRADIO_SERVER_PORT", "7860"))
    help_text = "let users add photos to the gallery (default: on for the example gallery, off for --gallery)"
    parser.add_argument("--allow-uploads", action=argparse.BooleanOptionalAction, help=help_text)
    help_text = f"caption and tag requests answered together per model pass (default {SPACE_MAX_BATCH_SIZE})"
    parser.add_argument("--max-batch-size", type=batch_size, default=SPACE_MAX_BATCH_SIZE, help=help_text)
    help_text = "the exported graphs captions and tags run on, when the model has them (default %(default)s)"
    choices = ["fp32", "int8-dynamic"]
    parser.add_argument(
        "--onnx-variant", default=SPACE_ONNX_VARIANT, type=variant_option, choices=choices, help=help_text
    )
    return parser


# glibc gives threads that allocate arenas of their own (up to 8 per core) and keeps what is freed in them; a Space's
# worker threads each allocate images and activations. Under 20 visitors of heavy requests the server peaked at
# 4,020 MB with glibc's default and 2,927 MB with 2 arenas, in about the same time (41.4 and 42.5 s;
# `python -m bench.speed.space_memory`, one run each, 2-core AMD EPYC).
SPACE_MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = SPACE_MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads to come, as MALLOC_ARENA_MAX would; an operator's own
    MALLOC_ARENA_MAX is left to rule. False where nothing changed (that variable set, or a C library not glibc)."""
    import ctypes

    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> None:
    """Parse, check what needs no model (the space extra, the model's whereabouts), then serve (`space.app.serve`).
    A OneNetError before serving is one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        require("gradio", "space", "the OneNet Space")
        resolve_model(args.model, args.revision)
        limit_malloc_arenas()  # before the model and gradio's threads allocate
        from .app import serve

        serve(args)
    except OneNetError as error:
        print(f"OneNet Space: error: {escape_controls(str(error))}", file=sys.stderr)
        sys.exit(2)


__all__ = ["MAX_PORT", "SPACE_MALLOC_ARENAS", "batch_size", "build_parser", "limit_malloc_arenas", "main", "port"]
