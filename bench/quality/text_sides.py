"""Which text side for describe-to-search: one retrieval-head recipe, four text inputs, dev recall of each.

- minilm: frozen all-MiniLM-L6-v2 sentence embeddings (384);
- decoder: mean of the caption decoder's learned (unit) word embeddings (300) of the content words, a text
  encoder that shares the decoder's embeddings;
- glove: mean of GloVe 6B 50d vectors of the content words, the tutorial's text side with a learned projection;
- minilm+decoder: both of the first two, side by side.

Each trains a fresh retrieval head with `onenet train-heads`' recipe and seed on the Flickr8k train split
and keeps its best dev epoch. These are retrieval-space figures, without the decoder re-ranking of the `reranked`
method; the shipped head reads minilm. Run:
python -m bench.quality.text_sides --model checkpoints/onenet-flickr8k --data-dir ../shared/datasets/flickr8k
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench.common import write_result
from onenet_hf import OneNet, read_split
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
from onenet_hf.evaluation import image_inputs_from_features
from onenet_hf.language.text_encoder import cached_sentence_embeddings
from onenet_hf.language.word_vectors import WordVectors, content_words, glove_vectors
from onenet_hf.modeling_onenet import OneNetProjection, OneNetRetrievalHead
from onenet_hf.training.captions import seed_everything
from onenet_hf.training.heads import HeadTrainingArguments, train_retrieval_head

FIGURES = [f"text_to_image_{m}" for m in ("R@1", "R@5", "R@10", "median_rank")]
FIGURES += [f"image_to_text_{m}" for m in ("R@1", "R@5", "R@10", "median_rank")]


def bag_of_vectors(vectors: WordVectors, texts: list[str]) -> torch.Tensor:
    """Mean unit vector of each text's content words that `vectors` knows (zeros if it knows none)."""
    rows = np.zeros((len(texts), vectors.vectors.shape[1]), dtype=np.float32)
    for row, text in enumerate(texts):
        words = [word for word in content_words(text) if word in vectors]
        if words:
            rows[row] = vectors.vectors[vectors.ids(words)].mean(0)
    return torch.from_numpy(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    recipe = HeadTrainingArguments(args.model, args.data_dir, output_dir="", cache_dir=args.cache_dir)
    net = OneNet.from_pretrained(args.model)
    model = net.model.requires_grad_(False)
    pooled, owners, texts = {}, {}, {}
    for split in ("train", "dev"):
        examples = read_split(args.data_dir, split)
        paths = [e.path for e in examples]
        grids = cached_backbone_features(model, net.processor.image_processor, paths, args.cache_dir)
        pooled[split], _ = image_inputs_from_features(model, grids)
        owners[split] = torch.tensor([i for i, e in enumerate(examples) for _ in e.captions])
        captions = [caption for e in examples for caption in e.captions]
        texts[split] = {
            "minilm": cached_sentence_embeddings(captions, args.cache_dir, model.config.text_encoder_name),
            "decoder": bag_of_vectors(net.word_vectors("learned"), captions),
            "glove": bag_of_vectors(glove_vectors(), captions),
        }
        texts[split]["minilm+decoder"] = torch.cat([texts[split]["minilm"], texts[split]["decoder"]], dim=1)
    results = {}
    for side in texts["train"]:
        config = model.config
        seed_everything(recipe.seed)
        model.retrieval_head = OneNetRetrievalHead(config)
        in_size = texts["train"][side].shape[1]
        model.retrieval_head.text_projection = OneNetProjection(in_size, config.retrieval_embedding_size, config)
        model.retrieval_head.apply(model._init_weights)
        seed_everything(recipe.seed)
        model.retrieval_head.requires_grad_(True)
        history = train_retrieval_head(
            model, pooled["train"], texts["train"][side], owners["train"],
            pooled["dev"], texts["dev"][side], owners["dev"], recipe,
        )  # fmt: skip
        best = max(history, key=lambda row: sum(row[f"dev_text_to_image_R@{k}"] for k in (1, 5, 10)))
        results[side] = {"epoch": best["epoch"], **{name: best[f"dev_{name}"] for name in FIGURES}}
    print(f"{'text side':14s} epoch  " + "  ".join(f"{name:>24s}" for name in FIGURES))
    for side, row in results.items():
        print(f"{side:14s} {row['epoch']:5d}  " + "  ".join(f"{row[name]:24.2f}" for name in FIGURES))
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
