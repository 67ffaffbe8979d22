"""The `OneNet` facade: loading backends and releasing checkpoints."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from onenet_hf import OneNet, OneNetError, OneNetImageProcessor, OneNetProcessor


def test_release_with_half_precision_weights_loads_as_float32(tiny_net, tmp_path):
    tiny_net.save_pretrained(tmp_path, half_precision_weights=True)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.float16}
    loaded = OneNet.from_pretrained(tmp_path)
    assert loaded.model.dtype == torch.float32
    expected = tiny_net.model.decoder.lstm.weight_ih_l0.detach().half().float()
    assert torch.equal(loaded.model.decoder.lstm.weight_ih_l0, expected)
    assert (tmp_path / "preprocessor_config.json").is_file() and (tmp_path / "tokenizer.json").is_file()


def test_unknown_backend_is_named(tiny_net, tmp_path):
    tiny_net.save_pretrained(tmp_path)
    with pytest.raises(OneNetError, match="unknown backend 'tensorrt'; choose one of torch, onnx, auto"):
        OneNet.from_pretrained(tmp_path, backend="tensorrt")


def test_a_processor_that_resizes_to_another_size_than_the_backbone_expects_is_refused(tiny_net):
    other = OneNetProcessor(image_processor=OneNetImageProcessor(size={"height": 224, "width": 224}),
                            tokenizer=tiny_net.processor.tokenizer)  # fmt: skip
    with pytest.raises(OneNetError, match="resizes to 224x224, but the model's backbone expects 260x260"):
        OneNet(tiny_net.model, other)
