#!/bin/bash
# The whole recipe from an empty feature cache, timed as one run: cross-entropy, both heads, the SCST stage.
# Run from anywhere: bash tools/recipe.sh (its figures: bench/results/recipe/). It deletes only its own cache.
set -euo pipefail
cd "$(dirname "$0")/.."
F=../shared/datasets/flickr8k; C="${TMPDIR:-/tmp}/onenet-recipe-cache"; O=runs/recipe
mkdir -p $O
rm -rf $C
s=$(date +%s)
/usr/bin/time -f "train wall %e s" onenet train --data-dir $F --output-dir $O/scratch --cache-dir $C > $O/train.log 2>&1 || exit 1
t1=$(date +%s); echo "train done $((t1-s)) s"
/usr/bin/time -f "heads wall %e s" onenet train-heads --model-dir $O/scratch --data-dir $F --output-dir $O/heads --cache-dir $C > $O/heads.log 2>&1 || exit 1
t2=$(date +%s); echo "heads done $((t2-t1)) s"
/usr/bin/time -f "scst wall %e s" onenet train-scst --model-dir $O/heads --data-dir $F --output-dir $O/scst --cache-dir $C --rollout beam --dropout --eval-beam-size 3 --epochs 3 > $O/scst.log 2>&1 || exit 1
t3=$(date +%s); echo "scst done $((t3-t2)) s; total $((t3-s)) s"
echo ALLDONE
