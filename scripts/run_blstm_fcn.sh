#!/usr/bin/env bash
# Attention-BLSTM-FCN Table 5 rows (Zhao et al. 2019) of docs/results_blstm_fcn.md on a 2-core CPU
# machine: one LOSO run per RUN name.
#
# Usage: scripts/run_blstm_fcn.sh RUN [RUN ...]      (one after the other; one shell per core)
#        RUN = CORPUS-ROW-sSEED, CORPUS emodb | emovo (EMOVO_ROOT, default ../shared/corpora/emovo),
#        ROW one of
#          blstm_fcn   the full system: recipes/reduced/blstm_fcn_svm.yaml through
#                      benchmarks/bench_blstm_fcn.py, which scores the network and the
#                      deep-spectrum SVM on its fused vectors from the same trained networks and
#                      writes results/blstm_fcn/CORPUS-loso-reduced/{network,svm}-seedSEED
#                      (with a GNU `time -v` report, network-seedSEED.time; skipped when it exists)
#          fcn | attention_fcn | attention_lstm | attention_blstm | 1layer | 3layer
#                      the runs of the sweep sweeps/blstm_fcn_table5.yaml (recipes/reduced/
#                      blstm_fcn_<ROW>.yaml into results/blstm_fcn/RUN), through `serkit sweep
#                      --only`: a complete run is skipped, an interrupted one resumed
#        SEED goes to the seed (--set seed=SEED, or the benchmark's --seeds SEED); nothing else is
#        overridden. Other mel-band counts (Table 6) and the "no recalibration" rows are plain
#        commands in docs/results_blstm_fcn.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
OUT=results/blstm_fcn
only=()
for name in "$@"; do
    if [[ ! $name =~ ^(emodb|emovo)-blstm_fcn-s([0-9]+)$ ]]; then only+=(--only "$name"); continue; fi
    corpus=${BASH_REMATCH[1]} seed=${BASH_REMATCH[2]}
    dir=$OUT/$corpus-loso-reduced
    corpus_args=()
    [ "$corpus" = emovo ] && corpus_args=(--set corpus.name=emovo --set "corpus.root=${EMOVO_ROOT:-../shared/corpora/emovo}")
    timing=$dir/network-seed$seed.time
    if [ -e "$timing" ]; then echo "skip $name (done or running)"; continue; fi
    mkdir -p "$dir"
    echo "$(date -u +%H:%M:%S) start $name"
    /usr/bin/time -v -o "$timing" python benchmarks/bench_blstm_fcn.py recipes/reduced/blstm_fcn_svm.yaml \
        --out "$dir" --seeds "$seed" "${corpus_args[@]}"
    echo "$(date -u +%H:%M:%S) done $name"
done
if [ ${#only[@]} -gt 0 ]; then serkit sweep sweeps/blstm_fcn_table5.yaml "${only[@]}" --quiet; fi
