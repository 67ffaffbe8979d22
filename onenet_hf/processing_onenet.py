"""OneNet processor: the image processor and the caption tokenizer behind one object."""

from __future__ import annotations

from transformers import BatchFeature, ProcessorMixin

from .errors import OneNetError


class OneNetProcessor(ProcessorMixin):
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
            encoding.update(self.tokenizer(text, return_tensors=return_tensors, padding=True, **kwargs))
        return encoding

    def save_pretrained(self, save_directory, **kwargs):
        """Also write `preprocessor_config.json`, so `AutoImageProcessor` loads the folder on its own."""
        saved = super().save_pretrained(save_directory, **kwargs)
        self.image_processor.save_pretrained(save_directory)
        return saved

    def batch_decode(self, *args, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs) -> str:
        return self.tokenizer.decode(*args, **kwargs)


__all__ = ["OneNetProcessor"]
