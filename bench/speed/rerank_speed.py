"""Time of `reranked` search's own stages for one text, without a gallery: the text encoding (MiniLM alone) and
the caption decoder's re-ranking of 100 candidates (`OneNetModel.get_rerank_scores`), the
latter through the decoder's shorter teacher-forced road (`OneNetCaptionDecoder.teacher_forced_logits`) and
through nn.LSTM as before, in one run, with the largest difference between their scores.

Queries are Flickr8k dev captions (the first caption of `--queries` random dev photos, as the 1M bench draws
them); the candidates are 100 dev image representations. Run:
python -m bench.speed.rerank_speed --output bench/results/rerank_speed/rerank_speed_1.json
"""

from __future__ import annotations

import argparse
import time
import unittest.mock
from pathlib import Path

import numpy as np
import torch

from bench.common import cpu_model, write_result
from bench.speed.gallery_speed import representations
from onenet_hf import OneNet
from onenet_hf.data.datasets import read_split
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR
from onenet_hf.language.text_encoder import encode_sentences
from onenet_hf.uses.search import rerank_token_ids


def timed(call, repeats: int) -> tuple[float, object]:
    """Median milliseconds of `repeats` calls after one untimed call, and the last answer."""
    answer, times = call(), []
    for _ in range(repeats):
        start = time.perf_counter()
        answer = call()
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times)), answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per query and stage (median)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    net = OneNet.from_pretrained(args.model)
    model, decoder = net.model, net.model.decoder
    dev = read_split(args.data_dir, "dev")
    rng = np.random.default_rng(1)
    texts = [dev[i].captions[0] for i in rng.choice(len(dev), args.queries, replace=False)]
    embeds = torch.from_numpy(representations(net, args, "dev")[: args.candidates])
    cosines = torch.linspace(0.5, 0.2, args.candidates)
    token_lists = [rerank_token_ids(net.processor, text, model.config.max_caption_length) for text in texts]
    through_lstm = unittest.mock.patch.object(
        decoder, "teacher_forced_logits", lambda ids, image: decoder(ids, decoder.initial_state(image))[0]
    )
    results = {"cpu": cpu_model(), "queries": len(texts), "candidates": args.candidates, "threads": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        stages: dict[str, list[float]] = {"encode": [], "rerank": [], "rerank_through_lstm": []}
        differences = []
        for text, ids in zip(texts, token_lists, strict=True):
            stages["encode"].append(timed(lambda t=text: encode_sentences([t], model.config.text_encoder_name),
                                          args.repeats)[0])  # fmt: skip
            if ids is None:
                continue
            score = lambda i=ids: model.get_rerank_scores(i, embeds, cosines)  # noqa: E731
            ms, new = timed(score, args.repeats)
            stages["rerank"].append(ms)
            with through_lstm:
                ms, old = timed(score, args.repeats)
            stages["rerank_through_lstm"].append(ms)
            differences.append(float((new - old).abs().max()))
        row = {f"{stage}_ms_p50": float(np.median(times)) for stage, times in stages.items()}
        row |= {f"{stage}_ms_mean": float(np.mean(times)) for stage, times in stages.items()}
        row["speedup_p50"] = row["rerank_through_lstm_ms_p50"] / row["rerank_ms_p50"]
        row["largest_score_difference"] = max(differences)
        results["threads"][threads] = row
        print(f"{threads} thread(s): {row}")
    results["mean_tokens"] = float(np.mean([len(ids) for ids in token_lists if ids is not None]))
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
