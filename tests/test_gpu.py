"""The GPU paths, run where CUDA is (the `device` tool lends a GPU machine to some tasks; skipped elsewhere):
caption training, gallery embedding and the image-optimising uses follow the model's device, and training and
embedding agree with the CPU's."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from onenet_hf import OneNet
from onenet_hf.training import captions as training_module
from onenet_hf.training.captions import CaptionTrainingArguments, train
from onenet_hf.training.scst import SCST_LOG_FILE, SCSTArguments, train_scst

from .conftest import SMALL, write_shape_gallery
from .test_training import Interrupted

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CHECKPOINT = Path(__file__).parents[1] / "checkpoints" / "onenet-flickr8k"


def losses(folder: Path) -> list[float]:
    return [row["train_loss"] for row in json.loads((folder / "training_log.json").read_text())]


def metrics_without_java(references, hypotheses, metrics=None) -> dict[str, float]:
    """pycocoevalcap's BLEU-4 and CIDEr on lower-cased whitespace tokens: its PTB tokenizer needs Java, which a
    GPU machine may lack (the figures only choose the epoch kept; the test compares training losses)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [" ".join(r.lower().split()) for r in refs] for i, refs in enumerate(references)}
    res = {i: [" ".join(h.lower().split())] for i, h in enumerate(hypotheses)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {"BLEU-4": float(bleu[3]), "CIDEr": float(Cider().compute_score(gts, res)[0])}


def test_captions_train_on_the_gpu_as_on_the_cpu_and_resume(shapes_dir, tmp_path, monkeypatch):
    if shutil.which("java") is None:
        monkeypatch.setattr("onenet_hf.evaluation.captions.caption_metrics", metrics_without_java)
    arguments = CaptionTrainingArguments(
        data_dir=str(shapes_dir), output_dir="", cache_dir=str(tmp_path / "cache"), epochs=3, **{**SMALL, "dropout": 0}
    )
    cpu = train(replace(arguments, output_dir=str(tmp_path / "cpu"), device="cpu"))
    gpu = train(replace(arguments, output_dir=str(tmp_path / "gpu")))  # no --device: CUDA is chosen
    state = torch.load(gpu / "training_state.pt", map_location="cpu", weights_only=False)
    assert state["setup"]["device"].startswith("cuda")
    np.testing.assert_allclose(losses(gpu), losses(cpu), rtol=1e-3)  # cuDNN's LSTM sums in another order

    evaluate, calls = training_module.evaluate_on_features, []

    def evaluate_then_stop_after_epoch_1(*args, **kwargs):
        if len(calls) == 1:
            raise Interrupted
        calls.append(1)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(training_module, "evaluate_on_features", evaluate_then_stop_after_epoch_1)
    with pytest.raises(Interrupted):
        train(replace(arguments, output_dir=str(tmp_path / "resumed")))
    monkeypatch.setattr(training_module, "evaluate_on_features", evaluate)
    resumed = train(replace(arguments, output_dir=str(tmp_path / "resumed")))
    assert len(losses(resumed)) == 3
    np.testing.assert_allclose(losses(resumed), losses(gpu), rtol=1e-5)

    # SCST backpropagates through the decoder in eval mode (no dropout in its samples): cuDNN must allow it; the
    # beam rollout indexes the GPU's tensors with its slots and turns dropout on for the differentiated pass
    for name, options in {"scst": {"rollout": "sample", "dropout": False}, "scst-beam": {}}.items():
        scst = train_scst(
            SCSTArguments(model_dir=str(gpu), data_dir=str(shapes_dir), output_dir=str(tmp_path / name),
                          cache_dir=str(tmp_path / "cache"), epochs=1, images_per_batch=12, **options)
        )  # fmt: skip
        history = json.loads((scst / SCST_LOG_FILE).read_text())
        assert [row["epoch"] for row in history] == [0, 1] and np.isfinite(history[1]["train_CIDEr-D_reward"])


def test_a_gallery_embedded_and_searched_on_the_gpu_matches_the_cpu(tmp_path):
    """The same rows from a GPU build as from a CPU one; describe's inversion (gradients through the decoder in
    eval mode) finds the same best image on both."""
    (tmp_path / "photos").mkdir()
    photos = write_shape_gallery(tmp_path / "photos", first_seed=0)
    built, found = {}, {}
    for device in ("cpu", "cuda"):
        net = OneNet.from_pretrained(CHECKPOINT, device=device)
        index = net.build_index(photos, tmp_path / device)
        built[device] = index.image_embeds
        found[device] = [Path(match.path).name for match in net.search(index, "a red ball", k=3, method="invert")]
    cosine = (built["cpu"] * built["cuda"]).sum(1) / np.linalg.norm(built["cpu"], axis=1)
    cosine /= np.linalg.norm(built["cuda"], axis=1)
    assert cosine.min() > 0.999
    assert found["cuda"][0] == found["cpu"][0]


def test_the_uses_that_take_gradients_run_on_the_gpu():
    """Each use optimises or differentiates on the model's device (its activations take GPU memory) and returns
    finite results: feature visualisation, imagined captions (through the decoder in eval mode), DeepDream,
    style transfer and Grad-CAM (through the decoder too)."""
    net = OneNet.from_pretrained(CHECKPOINT, device="cuda")
    photo = Image.fromarray(skimage.data.chelsea()).convert("RGB")
    uses = {
        "visualize": lambda: net.visualize(imagenet_class=207, steps=4, size=128, progress=False).pixels,
        "imagine": lambda: net.imagine("a dog runs on the beach", steps=4, size=128, progress=False).pixels,
        "dream": lambda: net.dream(photo, steps=2, octaves=1, size=128, progress=False).pixels,
        "style": lambda: net.style(photo, photo, steps=2, size=128, progress=False).pixels,
        "explain": lambda: torch.from_numpy(np.stack([word.heatmap for word in net.explain(photo).words])),
    }
    for name, use in uses.items():
        weights = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = use()
        assert torch.cuda.max_memory_allocated() > weights, name
        assert result.numel() and torch.isfinite(result).all(), name
