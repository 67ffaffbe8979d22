"""Re-ranking the beam's n-best list by consensus with the captions of the nearest training images (Devlin et
al. 2015): how much CIDEr a decoding-time choice can add within one-vector conditioning.

Each candidate's consensus is its mean CIDEr-D (`CiderD`, idf from the training references) against the five
captions of each of the image's k nearest training images by cosine of image representations; the chosen
caption maximises the beam's length-normalised score + weight x consensus (weight 0 is plain beam search, a
very large weight consensus alone). Every (beam size, k, weight) is chosen on the split it is measured on, so
the best row is optimistic. Run:
python -m bench.quality.caption_consensus --model checkpoints/onenet-flickr8k --output runs/consensus.json
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.common import write_result
from onenet_hf import OneNet, read_split
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
from onenet_hf.decoding import generate_candidates
from onenet_hf.evaluation import caption_metrics
from onenet_hf.training.cider import CiderD
from onenet_hf.training.scst import reference_token_ids


def representations(net: OneNet, examples, cache_dir: str) -> torch.Tensor:
    features = cached_backbone_features(net.model, net.processor.image_processor, [e.path for e in examples], cache_dir)
    grids = (torch.from_numpy(np.array(features[s : s + 256])) for s in range(0, len(examples), 256))
    return torch.cat([net.model.get_image_features(backbone_features=grid) for grid in grids])


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--train-data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--data-format", default="flickr8k")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--neighbours", type=int, nargs="+", default=[10, 30, 60])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0, 1000.0])
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    model, processor = net.model.eval(), net.processor
    train = read_split(args.train_data_dir, "train")
    examples = read_split(args.data_dir, args.split, args.data_format)
    train_embeds, embeds = representations(net, train, args.cache_dir), representations(net, examples, args.cache_dir)
    cosines = torch.nn.functional.normalize(embeds, dim=-1) @ torch.nn.functional.normalize(train_embeds, dim=-1).T
    cider = CiderD(reference_token_ids(processor.tokenizer, train))
    rows = []
    for beam_size in args.beam_sizes:
        candidates, generation = [], copy.deepcopy(model.generation_config)
        generation.num_beams = beam_size
        for start in tqdm(range(0, len(examples), 100), desc=f"beam {beam_size}"):
            candidates += generate_candidates(model, embeds[start : start + 100], generation)
        for k in args.neighbours:
            neighbours = cosines.topk(k, dim=1).indices.tolist()
            consensus = [
                [float(cider.scores([h.token_ids] * k, neighbours[i]).mean()) for h in hypotheses]
                for i, hypotheses in enumerate(candidates)
            ]
            for weight in args.weights:
                chosen = [
                    hypotheses[
                        int(np.argmax([h.score + weight * c for h, c in zip(hypotheses, consensus[i], strict=True)]))
                    ]
                    for i, hypotheses in enumerate(candidates)
                ]
                texts = processor.batch_decode([h.token_ids for h in chosen], skip_special_tokens=True)
                scores = caption_metrics([e.captions for e in examples], texts, ("BLEU-4", "CIDEr"))
                rows.append({"beam_size": beam_size, "neighbours": k, "weight": weight, **scores})
                print(json.dumps(rows[-1]), flush=True)
    if args.output:
        write_result({**vars(args), "rows": rows}, Path(args.output))


if __name__ == "__main__":
    main()
