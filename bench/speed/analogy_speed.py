"""Google analogy set on GloVe 6B 50d: onenet's batched solver vs gensim's evaluate_word_analogies.

Prints both accuracies (they must agree within 0.1 points) and the wall-time ratio, measured in one run.
Run: python -m bench.speed.analogy_speed  (needs gensim, a dev/bench dependency)
"""

from __future__ import annotations

import argparse
import time

from gensim.models import KeyedVectors
from gensim.test.utils import datapath

from onenet_hf.evaluation import evaluate_analogies
from onenet_hf.language.word_vectors import glove_vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--restrict-vocab", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs, for each side")
    args = parser.parse_args()
    questions = datapath("questions-words.txt")
    glove = glove_vectors()
    keyed = KeyedVectors(glove.vectors.shape[1])
    keyed.add_vectors(glove.words, glove.vectors)

    ours_times, gensim_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = evaluate_analogies(glove, questions, args.restrict_vocab)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        score, _ = keyed.evaluate_word_analogies(questions, restrict_vocab=args.restrict_vocab)
        gensim_times.append(time.perf_counter() - start)
    total = ours["total"]
    print(f"questions answered: {total['questions']} (skipped, outside the vocabulary: {total['skipped']})")
    print(f"accuracy  onenet {100 * total['accuracy']:.2f}%   gensim {100 * score:.2f}%")
    print(f"difference {100 * abs(total['accuracy'] - score):.3f} points")
    print(f"time (best of {args.repeats})  onenet {min(ours_times):.3f} s   gensim {min(gensim_times):.3f} s")
    print(f"speed-up {min(gensim_times) / min(ours_times):.1f}x")


if __name__ == "__main__":
    main()
