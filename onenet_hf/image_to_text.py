"""OneNet captions through transformers' `pipeline`: image in, `[{"generated_text": ...}]` out, no prompt.

A release names it in its config's `custom_pipelines` (task "image-to-text", the card's pipeline_tag), so

    pipeline(model="onenet-hf/onenet-flickr8k", trust_remote_code=True)

builds it by Hub id. It runs `OneNetModel.generate`, the beam search of `onenet caption`, on pixels from the same
image loader. transformers' own "image-text-to-text" pipeline works too, with a prompt (`text=""` captions).
"""

from __future__ import annotations

from typing import Any

from transformers import Pipeline


class OneNetImageToTextPipeline(Pipeline):
    """Caption images (paths, PIL images or uint8 arrays); generation options default to the model's config."""

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(
        self, num_beams: int | None = None, max_new_tokens: int | None = None, generate_kwargs: dict | None = None
    ) -> tuple[dict, dict, dict]:
        options = dict(generate_kwargs or {})
        if num_beams is not None:
            options["num_beams"] = num_beams
        if max_new_tokens is not None:
            options["max_new_tokens"] = max_new_tokens
        return {}, {"generate_kwargs": options}, {}

    def preprocess(self, image: Any) -> dict:
        return self.processor(images=image)

    def _forward(self, model_inputs: dict, generate_kwargs: dict | None = None) -> dict:
        options = {"tokenizer": self.processor.tokenizer, **(generate_kwargs or {})}  # label guidance needs the words
        return {"token_ids": self.model.generate(model_inputs["pixel_values"], **options)}

    def postprocess(self, model_outputs: dict) -> list[dict[str, str]]:
        texts = self.processor.batch_decode(model_outputs["token_ids"], skip_special_tokens=True)
        return [{"generated_text": text} for text in texts]


__all__ = ["OneNetImageToTextPipeline"]
