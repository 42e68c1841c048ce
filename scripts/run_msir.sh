#!/usr/bin/env bash
# MSIR Table 1 rows (Wu et al. 2024) on this 2-core CPU machine, in the CPU-budget form of
# docs/results_msir.md: at most 30 epochs, early stopping patience 6, and for the rows with a CR
# branch (ACRNN, ACRNN + LLF-LSTM, MSIR) that branch narrowed to 32/64 kernels and a 256-unit frame
# layer (the recipe's 128/256 and 768 cost ≈ 6 h per LOSO run here; the override changes nothing
# in rows without a CR branch); everything else the recipe's.
#
# Usage: scripts/run_msir.sh RUN [RUN ...]      (one after the other; one shell per core)
#        RUN = CORPUS-ROW-LOSS-sSEED[-vN], e.g. emodb-w2v_en-fl-s1, emovo-llf_lstm_3d-ce-s0;
#        CORPUS emodb|emovo, ROW = recipes/msir_<ROW>.yaml (or "msir" for the full system),
#        LOSS fl (focal loss, eq. 7, ζ = 0.25, θ = 2) | ce (cross-entropy, the "w/o FL" ablation),
#        -vN: hold out N training speakers for early stopping instead of the recipe's one.
# Each run writes results/msir/<RUN>/ and <RUN>.time (GNU time -v: wall time, peak memory). A run
# whose folder exists is done and skipped, one that another shell is running (it holds <RUN>.lock)
# is skipped, and one that was interrupted continues from the folds it finished (serkit experiment
# --resume; <RUN>.time then gets one report per part, and metrics.json's fold_cost has every fold).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# glibc malloc serves every block above 32 MiB (the CR branch's activations) with a fresh mmap and
# unmaps it on free, so each batch page-faults its memory in again: with the defaults ≈ 40 % of a
# training job's CPU time is kernel time. SERKIT_FAST_MALLOC=1 keeps freed memory in the heap
# instead: half the wall time per fold, but about twice the peak memory (15 GiB for full MSIR on
# EmoDB), so two such jobs do not fit in 24 GiB (docs/results_msir.md, "Memory allocator").
if [ -n "${SERKIT_FAST_MALLOC:-}" ]; then
    export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
fi
OUT=results/msir
mkdir -p "$OUT"

for name in "$@"; do
    if [[ ! $name =~ ^(emodb|emovo)-(.+)-(fl|ce)-s([0-9]+)(-v([0-9]+))?$ ]]; then
        echo "bad run name $name (want CORPUS-ROW-LOSS-sSEED[-vN])" >&2; exit 2
    fi
    corpus=${BASH_REMATCH[1]} row=${BASH_REMATCH[2]} loss=${BASH_REMATCH[3]} seed=${BASH_REMATCH[4]}
    valid=${BASH_REMATCH[6]}
    recipe=recipes/msir_$row.yaml
    [ "$row" = msir ] && recipe=recipes/msir.yaml
    [ -e "$recipe" ] || { echo "no recipe $recipe for $name" >&2; exit 2; }
    args=(--set model.config.max_epochs=30 --set model.config.patience=6 --set "seed=$seed"
          --set 'model.config.conv_channels=[32,64]' --set model.config.frame_fc=256)
    if [ "$loss" = fl ]; then
        args+=(--set model.config.loss=focal --set model.config.zeta=0.25 --set model.config.theta=2.0)
    else
        args+=(--set model.config.loss=cross_entropy)
    fi
    [ -n "$valid" ] && args+=(--set "model.config.valid_speakers=$valid")
    [ "$corpus" = emovo ] && args+=(--corpus emovo --root ../shared/corpora/emovo)
    if [ -e "$OUT/$name/metrics.json" ]; then echo "skip $name (done)"; continue; fi
    exec 9>"$OUT/$name.lock"
    if ! flock -n 9; then echo "skip $name (running in another shell)"; exec 9>&-; continue; fi
    echo "$(date -u +%H:%M:%S) start $name: $recipe ${args[*]}"
    /usr/bin/time -a -v -o "$OUT/$name.time" \
        serkit experiment "$recipe" "${args[@]}" --out "$OUT/$name" --resume --quiet
    exec 9>&-
    echo "$(date -u +%H:%M:%S) done $name"
done
