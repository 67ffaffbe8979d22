"""Can the classifier's view of a photo keep invented people out of captions? A person probe and a caption gate.

People are half the objects captions invent on coco-mini-dev, and ImageNet has no person class to vouch against
them. This fits a logistic "does a person appear" probe on the frozen classifier's log-probabilities (1,000 inputs,
one weight each) of Flickr8k's train photos, labelled by their captions (the share of the five that name a person),
reports its ROC AUC on Flickr8k dev and on coco-mini-dev (labels from the instance annotations), then penalises the
caption vocabulary's person words by WEIGHT x log((chance + 0.01) / 1.01), as label guidance penalises absent
animals, and scores coco-mini-dev's captions at each weight (0 is the default captioner).

    python -m bench.quality.person_gate --weights 0 1 2 --output bench/results/guidance/person_gate.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

import onenet_hf.label_guidance as guidance
from onenet_hf import OneNet
from onenet_hf.data.datasets import read_coco_objects, read_flickr8k, read_split
from onenet_hf.data.feature_cache import cached_backbone_features
from onenet_hf.evaluation.captions import CaptionEvaluator
from onenet_hf.options import DEFAULT_CACHE_DIR
from onenet_hf.utils.atomic_files import write_json

PERSON_WORDS = frozenset(
    "person people man men woman women boy boys girl girls child children kid kids baby babies toddler guy guys lady "
    "ladies player players crowd someone skier skiers surfer surfers biker bikers rider riders cyclist climber "
    "swimmer swimmers".split()
)
FLOOR = 0.01  # as label guidance's ABSENT_FLOOR


def log_probabilities(net: OneNet, grids: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The classifier's log-softmax (N, 1000) from backbone feature grids (N, 1280, H, W)."""
    rows = []
    with torch.inference_mode():
        for start in range(0, len(grids), batch_size):
            pooled = net.model.get_pooled_features(torch.from_numpy(np.asarray(grids[start : start + batch_size])))
            rows.append(torch.log_softmax(net.model.get_imagenet_logits(pooled).float(), -1).numpy())
    return np.concatenate(rows)


def split_log_probabilities(net: OneNet, paths: list[Path], cache_dir: str) -> np.ndarray:
    grids = cached_backbone_features(net.model, net.processor.image_processor, paths, cache_dir)
    return log_probabilities(net, grids)


def person_share(captions) -> float:
    """The share of a photo's captions that name a person."""
    return float(np.mean([bool(PERSON_WORDS & set(re.findall(r"[a-z]+", c.lower()))) for c in captions]))


def fit_probe(features: np.ndarray, shares: np.ndarray, regularisation: float):
    """Logistic regression on soft labels: each photo once as a person photo (weight = share), once not."""
    from sklearn.linear_model import LogisticRegression

    labels = np.tile([0, 1], len(shares))
    weights = np.stack([1 - shares, shares], 1).ravel()
    return LogisticRegression(C=regularisation, max_iter=3000).fit(np.repeat(features, 2, 0), labels, weights)


def gated(probe, weight: float):
    """`label_guidance` with the person words penalised by the probe's chance."""
    original = guidance.label_guidance
    coefficients = torch.tensor(probe.coef_[0], dtype=torch.float32)
    intercept = float(probe.intercept_[0])

    def label_guidance(tokens, probabilities, *args, **kwargs):
        result = original(tokens, probabilities, *args, **kwargs)
        ids = {word: i for i, word in enumerate(guidance.extended_words(tuple(tokens)))}
        columns = [ids[word] for word in PERSON_WORDS if word in ids]
        chance = torch.sigmoid(torch.log(probabilities.float().clamp_min(1e-30)) @ coefficients + intercept)
        result.token_bias[:, columns] += weight * torch.log((chance[:, None] + FLOOR) / (1 + FLOOR))
        return result

    return label_guidance


def main() -> None:
    from sklearn.metrics import roc_auc_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--flickr8k", default="../shared/datasets/flickr8k")
    parser.add_argument("--coco", default="../shared/datasets/coco-mini-dev")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument("--regularisation", type=float, default=0.01, help="scikit-learn's C")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    parser.add_argument("--output", help="JSON file for the results")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    train, dev = (read_flickr8k(args.flickr8k, split) for split in ("train", "dev"))
    coco = read_split(args.coco, "dev", "coco")
    objects = read_coco_objects(Path(args.coco) / "instances_dev.json")
    train_shares = np.array([person_share(e.captions) for e in train])
    train_features = split_log_probabilities(net, [e.path for e in train], args.cache_dir)
    probe = fit_probe(train_features, train_shares, args.regularisation)
    dev_shares = np.array([person_share(e.captions) for e in dev])
    dev_chance = probe.predict_proba(split_log_probabilities(net, [e.path for e in dev], args.cache_dir))[:, 1]
    coco_people = np.array(["person" in objects.get(e.path.name, frozenset()) for e in coco])
    coco_chance = probe.predict_proba(split_log_probabilities(net, [e.path for e in coco], args.cache_dir))[:, 1]
    result = {
        "probe": {
            "inputs": "classifier log-probabilities (1,000)",
            "regularisation": args.regularisation,
            "flickr8k_dev_auc": roc_auc_score(dev_shares >= 0.6, dev_chance),
            "coco_mini_dev_auc": roc_auc_score(coco_people, coco_chance),
            "coco_mini_dev_photos_with_people": int(coco_people.sum()),
        },
        "captions": {},
    }
    print(json.dumps(result["probe"]), flush=True)
    original = guidance.label_guidance
    try:
        for weight in args.weights:
            guidance.label_guidance = gated(probe, weight)
            metrics = CaptionEvaluator(data_dir=args.coco, split="dev", data_format="coco")(net)["metrics"]
            shown = {name: metrics[name] for name in ("CIDEr", "BLEU-4", "CHAIRi_%", "CHAIRs_%", "object_recall_%")}
            result["captions"][str(weight)] = shown
            print(f"weight {weight}: " + ", ".join(f"{name} {value:.4f}" for name, value in shown.items()), flush=True)
    finally:
        guidance.label_guidance = original
    if args.output:
        write_json(result, Path(args.output))


if __name__ == "__main__":
    main()
