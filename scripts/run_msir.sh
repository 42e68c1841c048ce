#!/usr/bin/env bash
# MSIR Table 1 rows (Wu et al. 2024) of docs/results_msir.md on a 2-core CPU machine: the named runs
# of the sweeps sweeps/msir_table1.yaml (every row, seed 0) and sweeps/msir_loss.yaml (w2v-EN, focal
# loss against cross-entropy, seeds 0-2), through `serkit sweep --only`.
#
# Usage: scripts/run_msir.sh RUN [RUN ...]      (one after the other; start one shell per core)
#        RUN = CORPUS-ROW-LOSS-sSEED, e.g. emodb-w2v_en-fl-s1, emovo-llf_lstm_3d-ce-s0 (shell patterns
#        such as 'emodb-*-s0' work too); CORPUS emodb | emovo (EMOVO_ROOT, default
#        ../shared/corpora/emovo); the recipes are recipes/reduced/msir_<ROW>_<LOSS>.yaml (ROW "msir",
#        the full system: recipes/reduced/msir_<LOSS>.yaml).
# A RUN is `serkit experiment RECIPE --set seed=SEED [--corpus emovo --root EMOVO_ROOT]
# --out results/msir/RUN --resume` with OMP_NUM_THREADS=1 (metrics.json records each fold's wall
# time, CPU time and peak memory). The sweep skips a complete run, leaves one that another shell is
# running to it, and resumes an interrupted one from the folds it finished; once every run of a
# sweep is complete it writes its table, results/msir/<sweep>.md. Without RUN names: every run.
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
table1=() loss=()
for name in "$@"; do
    # the w2v-EN runs beyond Table 1's seed 0 belong to the loss study
    if [[ $name =~ -w2v_en-(fl-s[0-9]+|ce-s[1-9][0-9]*)$ ]]; then loss+=(--only "$name"); else table1+=(--only "$name"); fi
done
if [ $# -eq 0 ] || [ ${#table1[@]} -gt 0 ]; then serkit sweep sweeps/msir_table1.yaml "${table1[@]}" --quiet; fi
if [ $# -eq 0 ] || [ ${#loss[@]} -gt 0 ]; then serkit sweep sweeps/msir_loss.yaml "${loss[@]}" --quiet; fi
