#!/usr/bin/env bash
# Attention-BLSTM-FCN Table 5 rows (Zhao et al. 2019) of docs/results_blstm_fcn.md on a 2-core CPU
# machine: one LOSO run per RUN name, from the CPU-budget recipes in recipes/reduced/ (their
# headers say what they reduce).
#
# Usage: scripts/run_blstm_fcn.sh RUN [RUN ...]      (one after the other; one shell per core)
#        RUN = CORPUS-ROW-sSEED, CORPUS emodb | emovo (EMOVO_ROOT, default ../shared/corpora/emovo),
#        ROW one of
#          blstm_fcn   the full system: recipes/reduced/blstm_fcn_svm.yaml through
#                      benchmarks/bench_blstm_fcn.py, which scores the network and the
#                      deep-spectrum SVM on its fused vectors from the same trained networks and
#                      writes results/blstm_fcn/CORPUS-loso-reduced/{network,svm}-seedSEED
#          fcn | attention_fcn | attention_lstm | attention_blstm | 1layer | 3layer
#                      recipes/reduced/blstm_fcn_<ROW>.yaml through serkit experiment, into
#                      results/blstm_fcn/RUN
#        SEED goes to the seed (--set seed=SEED, or the benchmark's --seeds SEED); nothing else is
#        overridden. Other mel-band counts (Table 6) and the "no recalibration" rows are plain
#        commands in docs/results_blstm_fcn.md.
# Each run gets a GNU `time -v` report (RUN.time, or network-seedSEED.time beside the full
# system's folders); a run whose report exists (done or running) is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
OUT=results/blstm_fcn

for name in "$@"; do
    if [[ ! $name =~ ^(emodb|emovo)-([a-z_0-9]+)-s([0-9]+)$ ]]; then
        echo "bad run name $name (want CORPUS-ROW-sSEED)" >&2; exit 2
    fi
    corpus=${BASH_REMATCH[1]} row=${BASH_REMATCH[2]} seed=${BASH_REMATCH[3]}
    if [ "$row" = blstm_fcn ]; then
        dir=$OUT/$corpus-loso-reduced
        corpus_args=()
        [ "$corpus" = emovo ] && corpus_args=(--set corpus.name=emovo --set "corpus.root=${EMOVO_ROOT:-../shared/corpora/emovo}")
        cmd=(python benchmarks/bench_blstm_fcn.py recipes/reduced/blstm_fcn_svm.yaml --out "$dir" --seeds "$seed")
        timing=$dir/network-seed$seed.time
    else
        recipe=recipes/reduced/blstm_fcn_$row.yaml
        [ -e "$recipe" ] || { echo "no Table 5 row $row for $name ($recipe)" >&2; exit 2; }
        dir=$OUT/$name
        corpus_args=()
        [ "$corpus" = emovo ] && corpus_args=(--corpus emovo --root "${EMOVO_ROOT:-../shared/corpora/emovo}")
        cmd=(serkit experiment "$recipe" --set "seed=$seed" --out "$dir" --quiet)
        timing=$dir.time
    fi
    if [ -e "$timing" ]; then echo "skip $name (done or running)"; continue; fi
    mkdir -p "$(dirname "$timing")"
    echo "$(date -u +%H:%M:%S) start $name: ${cmd[*]} ${corpus_args[*]}"
    /usr/bin/time -v -o "$timing" "${cmd[@]}" "${corpus_args[@]}"
    echo "$(date -u +%H:%M:%S) done $name"
done
