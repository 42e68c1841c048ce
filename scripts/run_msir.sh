#!/usr/bin/env bash
# MSIR Table 1 rows (Wu et al. 2024) of docs/results_msir.md on a 2-core CPU machine: one LOSO run
# per RUN name, from the CPU-budget recipes in recipes/reduced/ (their headers say what they reduce).
#
# Usage: scripts/run_msir.sh RUN [RUN ...]      (one after the other; one shell per core)
#        RUN = CORPUS-ROW-LOSS-sSEED, e.g. emodb-w2v_en-fl-s1, emovo-llf_lstm_3d-ce-s0
#        CORPUS emodb | emovo (EMOVO_ROOT, default ../shared/corpora/emovo)
#        ROW-LOSS picks recipes/reduced/msir_<ROW>_<LOSS>.yaml (ROW "msir", the full system:
#        recipes/reduced/msir_<LOSS>.yaml); LOSS fl = focal loss, ce = cross-entropy
#        SEED goes to --set seed=SEED; nothing else is overridden.
# A RUN is `serkit experiment RECIPE --set seed=SEED [--corpus emovo --root EMOVO_ROOT]
# --out results/msir/RUN --resume`, with OMP_NUM_THREADS=1 and a GNU `time -v` report appended to
# results/msir/RUN.time. A run whose folder exists is done and skipped, one that another shell is
# running (it holds RUN.lock) is skipped, and one that was interrupted continues from the folds it
# finished (--resume; metrics.json's extra.fold_cost then still has every fold).
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
    if [[ ! $name =~ ^(emodb|emovo)-(.+)-(fl|ce)-s([0-9]+)$ ]]; then
        echo "bad run name $name (want CORPUS-ROW-LOSS-sSEED)" >&2; exit 2
    fi
    corpus=${BASH_REMATCH[1]} row=${BASH_REMATCH[2]} loss=${BASH_REMATCH[3]} seed=${BASH_REMATCH[4]}
    recipe=recipes/reduced/msir_${row}_${loss}.yaml
    [ "$row" = msir ] && recipe=recipes/reduced/msir_${loss}.yaml
    [ -e "$recipe" ] || { echo "no recipe $recipe for $name" >&2; exit 2; }
    args=(--set "seed=$seed")
    [ "$corpus" = emovo ] && args+=(--corpus emovo --root "${EMOVO_ROOT:-../shared/corpora/emovo}")
    if [ -e "$OUT/$name/metrics.json" ]; then echo "skip $name (done)"; continue; fi
    exec 9>"$OUT/$name.lock"
    if ! flock -n 9; then echo "skip $name (running in another shell)"; exec 9>&-; continue; fi
    echo "$(date -u +%H:%M:%S) start $name: $recipe ${args[*]}"
    /usr/bin/time -a -v -o "$OUT/$name.time" \
        serkit experiment "$recipe" "${args[@]}" --out "$OUT/$name" --resume --quiet
    exec 9>&-
    echo "$(date -u +%H:%M:%S) done $name"
done
