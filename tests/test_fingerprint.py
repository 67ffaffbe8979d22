"""One fingerprint scheme: a model in memory and the folder it was saved to (fp32 or fp16 weights) agree."""

from __future__ import annotations

import hashlib

import pytest
import torch

from onenet_hf import OneNet, OneNetConfig, OneNetError, OneNetModel
from onenet_hf.fingerprint import checkpoint_fingerprint, file_hash, model_fingerprint


@pytest.mark.parametrize("half_precision_weights", [False, True])
def test_a_saved_folder_has_the_fingerprint_of_the_model_in_memory(tiny_net, tmp_path, half_precision_weights):
    tiny_net.save_pretrained(tmp_path, half_precision_weights=half_precision_weights)
    expected = model_fingerprint(tiny_net.model)
    assert checkpoint_fingerprint(tmp_path) == expected
    assert model_fingerprint(OneNet.from_pretrained(tmp_path).model) == expected


def test_a_changed_weight_or_config_changes_the_fingerprint(tiny_net):
    before = model_fingerprint(tiny_net.model)
    changed = OneNetModel(tiny_net.model.config)
    changed.load_state_dict(tiny_net.model.state_dict())
    with torch.no_grad():
        changed.decoder.output_bias[0] += 1.0
    assert model_fingerprint(changed) != before
    other_config = OneNetConfig(**{**tiny_net.model.config.to_dict(), "rerank_weight": 2.0})
    assert model_fingerprint(OneNetModel(other_config)) != model_fingerprint(OneNetModel(tiny_net.model.config))


def test_a_folder_without_weights_is_one_clear_error(tmp_path):
    with pytest.raises(OneNetError, match="not a OneNet checkpoint: config.json is missing"):
        checkpoint_fingerprint(tmp_path)


def test_file_hash_is_blake2b_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 5000  # more than one read block
    (tmp_path / "f.bin").write_bytes(data)
    assert file_hash(tmp_path / "f.bin") == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert file_hash(tmp_path / "f.bin", digest_size=8) == hashlib.blake2b(data, digest_size=8).hexdigest()
