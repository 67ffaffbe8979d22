"""OneNet processor: the image processor and the caption tokenizer behind one object."""

from __future__ import annotations

from transformers import BatchFeature, ProcessorMixin

from .errors import OneNetError
from .remote_code import CarriesRemoteCode


class OneNetProcessor(CarriesRemoteCode, ProcessorMixin):
    """Turns images into `pixel_values` and captions into `input_ids`; decodes generated ids back to text."""

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(self, images=None, text=None, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        if images is None and text is None:
            raise OneNetError("You have to specify either images or text.")
        encoding = BatchFeature()
        if images is not None:
            encoding.update(self.image_processor(images, return_tensors=return_tensors))
        if text is not None:
            if images is not None:  # a prompt to caption from: the decoder can only continue words it knows
                self.check_prompt(text)
            encoding.update(self.tokenizer(text, return_tensors=return_tensors, padding=True, **kwargs))
        return encoding

    def check_prompt(self, text: str | list[str]) -> None:
        """A caption prefix must use the caption vocabulary: one error naming the words it lacks."""
        normalizer = self.tokenizer.backend_tokenizer.normalizer
        vocabulary = self.tokenizer.get_vocab()
        prompts = [text] if isinstance(text, str) else list(text)
        unknown = [
            word for prompt in prompts for word in normalizer.normalize_str(prompt).split() if word not in vocabulary
        ]
        if unknown:
            raise OneNetError(
                f"the caption vocabulary ({len(vocabulary):,} words) lacks the prompt's "
                f"{', '.join(repr(w) for w in dict.fromkeys(unknown))}: a prompt is the start of a caption in its words"
            )

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens: bool = True, **kwargs):
        """What transformers' image-text-to-text pipeline decodes with: `batch_decode`, label words included."""
        return self.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)

    def save_pretrained(self, save_directory, **kwargs):
        """Also write `preprocessor_config.json`, so `AutoImageProcessor` loads the folder on its own."""
        saved = super().save_pretrained(save_directory, **kwargs)
        self.image_processor.save_pretrained(save_directory)
        return saved

    def batch_decode(self, sequences, skip_special_tokens: bool = False, **kwargs) -> list[str]:
        """The tokenizer's decoding, and label words the caption vocabulary lacks (ids from `len(tokenizer)` on,
        which label-guided captions may hold) decoded as `label_guidance.extended_words` says."""
        rows = [list(map(int, row)) for row in sequences]
        if all(token < len(self.tokenizer) for row in rows for token in row):
            return self.tokenizer.batch_decode(rows, skip_special_tokens=skip_special_tokens, **kwargs)
        from .label_guidance import extended_words, vocabulary_tokens

        words = extended_words(vocabulary_tokens(self.tokenizer))
        special = set(self.tokenizer.all_special_ids) if skip_special_tokens else set()
        return [" ".join(words[token] for token in row if token not in special) for row in rows]

    def decode(self, token_ids, skip_special_tokens: bool = False, **kwargs) -> str:
        return self.batch_decode([token_ids], skip_special_tokens=skip_special_tokens, **kwargs)[0]


__all__ = ["OneNetProcessor"]
