"""Word-level caption tokenizer: lower-cased words, punctuation dropped, rare words mapped to [UNK]."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "[BOS]", "eos_token": "[EOS]"}
UNK_TOKEN_ID = 1  # special tokens take ids 0-3 in the order above


def _normalizer() -> normalizers.Normalizer:
    return normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s']"), " ")]
    )


def build_tokenizer(captions: Iterable[str], min_frequency: int = 5) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the words of `captions` seen at least `min_frequency` times.

    Ids 0-3 are [PAD], [UNK], [BOS], [EOS]; encoding adds [BOS] ... [EOS] around each caption.
    """
    normalizer, pre_tokenizer = _normalizer(), pre_tokenizers.WhitespaceSplit()
    counts: dict[str, int] = {}
    for caption in captions:
        words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(caption))
        for word, _ in words:
            counts[word] = counts.get(word, 0) + 1
    kept = sorted((word for word, count in counts.items() if count >= min_frequency), key=lambda w: (-counts[w], w))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS.values())}
    vocab.update({word: i for i, word in enumerate(kept, start=len(vocab))})
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


__all__ = ["UNK_TOKEN_ID", "build_tokenizer"]
