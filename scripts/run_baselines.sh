#!/usr/bin/env bash
# The functionals + linear SVM baselines of docs/results.md: three openSMILE sets, global and
# per-speaker normalisation, EmoDB (shipped copy) and EMOVO, leave-one-speaker-out.
# Then the same on EmoDB with C fixed at 0.01, as the independent anchors of DESIGN.md were run.
# Usage: scripts/run_baselines.sh [EMOVO_ROOT] [OUT_DIR]
set -euo pipefail
emovo=${1:-../shared/corpora/emovo}
out=${2:-results/baselines}
for set in egemaps compare is10; do
  for norm in global speaker; do
    serkit experiment "recipes/${set}_svm.yaml" --set normalisation=$norm \
      --out "$out/emodb-${set}-${norm}" --overwrite --quiet
    serkit experiment "recipes/${set}_svm.yaml" --corpus emovo --root "$emovo" --set normalisation=$norm \
      --out "$out/emovo-${set}-${norm}" --overwrite --quiet
  done
done
python scripts/results_table.py "$out"/emo*
for set in egemaps compare is10; do
  for norm in global speaker; do
    serkit experiment "recipes/${set}_svm.yaml" --set normalisation=$norm --set model.config.C=0.01 \
      --out "$out/fixed-c/emodb-${set}-${norm}" --overwrite --quiet
  done
done
python scripts/results_table.py "$out"/fixed-c/*
