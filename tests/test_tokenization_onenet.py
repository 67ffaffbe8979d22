"""The word-level caption tokenizer: vocabulary, special tokens, round trips."""

from __future__ import annotations

from transformers import AutoTokenizer

from onenet_hf import build_tokenizer

CAPTIONS = ["A dog runs on the grass .", "Two dogs run , jumping !", "A dog's ball is red", "a dog sits"]


def test_vocabulary_order_and_special_tokens():
    tokenizer = build_tokenizer(CAPTIONS, min_frequency=2)
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    assert (
        tokenizer.pad_token_id,
        tokenizer.unk_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
    ) == (
        0,
        1,
        2,
        3,
    )
    assert tokenizer.convert_ids_to_tokens([4, 5]) == ["a", "dog"]  # most frequent first
    assert len(tokenizer) == 6


def test_encode_decode_round_trip_drops_punctuation_and_case():
    tokenizer = build_tokenizer(CAPTIONS, min_frequency=1)
    ids = tokenizer("A DOG runs, on the grass!")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a dog runs on the grass"
    assert tokenizer.tokenize("a dog's ball") == ["a", "dog's", "ball"]


def test_rare_and_unknown_words_map_to_unk():
    tokenizer = build_tokenizer(CAPTIONS, min_frequency=2)
    assert tokenizer("a zebra dog")["input_ids"][1:-1] == [4, tokenizer.unk_token_id, 5]


def test_save_and_load_with_auto_tokenizer(tmp_path):
    tokenizer = build_tokenizer(CAPTIONS, min_frequency=1)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "two dogs run on the grass"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.bos_token == "[BOS]" and loaded.eos_token == "[EOS]"
