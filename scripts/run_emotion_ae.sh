#!/usr/bin/env bash
# Table 4 of the emotion-embedding autoencoder (Zhang and Xue 2021) on this 2-core CPU machine,
# reduced as docs/results_ae.md says: encoder/decoder width 64 (paper 512), conv bank 16 per
# kernel (128), GRUs 32 / 64 (128 / 256), at most 12 epochs (40), patience 4.
#
# Usage: scripts/run_emotion_ae.sh RUN [RUN ...]     (runs one after the other; start two
#        shells to use two cores). RUN = CORPUS-PROTOCOL-ROW[-sSEED], e.g. emodb-loso-ae_ee_in,
#        emovo-loso-ae-s1, emodb-kfold10-ae_ee_in; CORPUS emodb|emovo, PROTOCOL loso|kfold5|kfold10
#        (speaker-dependent k-fold of the paper's Table 14), ROW: see the case below, seed 0 unless -sN.
# Each run writes results/emotion_ae/<RUN>/ and <RUN>.time (GNU time -v: wall time, peak memory);
# a run whose .time file exists (done or running) is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
OUT=results/emotion_ae
mkdir -p "$OUT"
REDUCED=(--set model.config.channels=64 --set model.config.bank_channels=16
         --set model.config.encoder_gru=32 --set model.config.decoder_gru=64
         --set model.config.max_epochs=12 --set model.config.patience=4 --set n_jobs=1)
EMOVO=(--corpus emovo --root ../shared/corpora/emovo)

for name in "$@"; do
    corpus=${name%%-*}         # emodb | emovo
    rest=${name#*-}
    protocol=${rest%%-*}       # loso | kfold5 | kfold10
    row=${rest#*-}             # is10_svm | ae_ee_in | ae | ae_ee | ae_in | ae_os | ae_os_ee_in [-sN]
    seed=0
    if [[ $row =~ ^(.*)-s([0-9]+)$ ]]; then row=${BASH_REMATCH[1]}; seed=${BASH_REMATCH[2]}; fi
    case $row in
        is10_svm) recipe=is10_svm; args=(--set n_jobs=1) ;;
        ae_ee_in) recipe=emotion_ae; args=("${REDUCED[@]}") ;;
        ae) recipe=emotion_ae_ae; args=("${REDUCED[@]}") ;;
        ae_ee | ae_in | ae_os | ae_os_ee_in) recipe=emotion_$row; args=("${REDUCED[@]}") ;;
        *) echo "unknown row in $name" >&2; exit 2 ;;
    esac
    [ "$corpus" = emovo ] && args+=("${EMOVO[@]}")
    case $protocol in
        loso) ;;
        kfold5 | kfold10) args+=(--set "protocol={name: kfold, k: ${protocol#kfold}, seed: 0}") ;;
        *) echo "unknown protocol in $name" >&2; exit 2 ;;
    esac
    args+=(--set "seed=$seed")
    if [ -e "$OUT/$name.time" ]; then echo "skip $name (done or running)"; continue; fi
    echo "$(date -u +%H:%M:%S) start $name: recipes/$recipe.yaml ${args[*]}"
    nice -n 10 /usr/bin/time -v -o "$OUT/$name.time" \
        serkit experiment "recipes/$recipe.yaml" "${args[@]}" --out "$OUT/$name" --quiet
    echo "$(date -u +%H:%M:%S) done $name"
done
