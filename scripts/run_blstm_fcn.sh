#!/usr/bin/env bash
# Attention-BLSTM-FCN Table 5 / Table 6 rows (Zhao et al. 2019) on this 2-core CPU machine, in the
# reduced form of docs/results_blstm_fcn.md: FCN 16/32/32, BLSTM 64 cells per direction, batch 32,
# random 300-frame training windows, at most 30 epochs, early stopping patience 6.
#
# Usage: scripts/run_blstm_fcn.sh RUN [RUN ...]      (one after the other; one shell per core)
#        RUN = CORPUS-ROW-sSEED, CORPUS emodb|emovo, ROW one of
#          blstm_fcn        the full system; its network and the deep-spectrum SVM on its fused
#                           vectors are scored from the same trained networks (bench_blstm_fcn.py)
#          blstm_fcn-melsB  the same with B mel bands (Table 6: 30, 40, 60, 80, 100)
#          fcn | attention_fcn | attention_lstm | attention_blstm | 1layer | 3layer
#                           the other Table 5 rows, recipes/blstm_fcn_<ROW>.yaml (network only)
# The full system writes results/blstm_fcn/CORPUS-loso-reduced[-melsB]/{network,svm}-seedS and
# network-seedS.time; the other rows write results/blstm_fcn/RUN and RUN.time (GNU time -v).
# A run whose .time file exists (done or running) is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
OUT=results/blstm_fcn
REDUCED=('fcn_filters=[16,32,32]' lstm_hidden=64 max_train_frames=300 batch_size=32 max_epochs=30 patience=6)
# The network's options: in the model for the Table 5 rows, in the derived feature for the full
# system (recipes/blstm_fcn_svm.yaml: blstm_fcn_deep_spectrum -> linear_svm).
reduced() { local option; for option in "${REDUCED[@]}"; do printf -- '--set\n%s.%s\n' "$1" "$option"; done; }

for name in "$@"; do
    if [[ ! $name =~ ^(emodb|emovo)-([a-z_0-9]+)(-mels([0-9]+))?-s([0-9]+)$ ]]; then
        echo "bad run name $name (want CORPUS-ROW[-melsB]-sSEED)" >&2; exit 2
    fi
    corpus=${BASH_REMATCH[1]} row=${BASH_REMATCH[2]} mels=${BASH_REMATCH[4]} seed=${BASH_REMATCH[5]}
    corpus_args=()
    [ "$corpus" = emovo ] && corpus_args=(--set corpus.name=emovo --set corpus.root=../shared/corpora/emovo)
    if [ "$row" = blstm_fcn ]; then
        dir=$OUT/$corpus-loso-reduced${mels:+-mels$mels}
        extra=()
        [ -n "$mels" ] && extra=(--set "features.logmel.config.n_mels=$mels")
        cmd=(python benchmarks/bench_blstm_fcn.py recipes/blstm_fcn_svm.yaml --out "$dir" --seeds "$seed")
        mapfile -t overrides < <(reduced features.deep_spectrum.config)
        timing=$dir/network-seed$seed.time
    else
        recipe=recipes/blstm_fcn_$row.yaml
        [ -e "$recipe" ] && [ -z "$mels" ] || { echo "no Table 5 row $row for $name" >&2; exit 2; }
        dir=$OUT/$name
        extra=(--set "seed=$seed")
        cmd=(serkit experiment "$recipe" --out "$dir" --quiet)
        mapfile -t overrides < <(reduced model.config)
        timing=$dir.time
    fi
    if [ -e "$timing" ]; then echo "skip $name (done or running)"; continue; fi
    mkdir -p "$(dirname "$timing")"
    echo "$(date -u +%H:%M:%S) start $name: ${cmd[*]}"
    /usr/bin/time -v -o "$timing" "${cmd[@]}" "${overrides[@]}" "${corpus_args[@]}" "${extra[@]}"
    echo "$(date -u +%H:%M:%S) done $name"
done
