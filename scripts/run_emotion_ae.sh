#!/usr/bin/env bash
# Table 4 of the emotion-embedding autoencoder (Zhang and Xue 2021), leave-one-speaker-out, as in
# docs/results_ae.md, on a 2-core CPU machine: one run per RUN name, from the CPU-budget recipes in
# recipes/reduced/ (their headers say what they reduce) and recipes/is10_svm.yaml.
#
# Usage: scripts/run_emotion_ae.sh RUN [RUN ...]     (one after the other; start two shells to use
#        two cores). RUN = CORPUS-loso-ROW[-sSEED], e.g. emodb-loso-ae_ee_in, emovo-loso-ae-s1;
#        CORPUS emodb | emovo (EMOVO_ROOT, default ../shared/corpora/emovo); ROW
#          is10_svm                          recipes/is10_svm.yaml (not reduced)
#          ae_ee_in                          recipes/reduced/emotion_ae.yaml (the full system)
#          ae | ae_ee | ae_in | ae_os | ae_os_ee_in    recipes/reduced/emotion_ae_<ROW>.yaml
#        (ae: recipes/reduced/emotion_ae_ae.yaml); SEED (default 0) goes to --set seed=SEED;
#        nothing else is overridden. The speaker-dependent k-fold runs are plain commands in
#        docs/results_ae.md.
# Each run writes results/emotion_ae/<RUN>/ and <RUN>.time (GNU time -v: wall time, peak memory);
# a run whose .time file exists (done or running) is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
OUT=results/emotion_ae
mkdir -p "$OUT"

for name in "$@"; do
    if [[ ! $name =~ ^(emodb|emovo)-loso-([a-z_0-9]+)(-s([0-9]+))?$ ]]; then
        echo "bad run name $name (want CORPUS-loso-ROW[-sSEED])" >&2; exit 2
    fi
    corpus=${BASH_REMATCH[1]} row=${BASH_REMATCH[2]} seed=${BASH_REMATCH[4]:-0}
    case $row in
        is10_svm) recipe=recipes/is10_svm.yaml ;;
        ae_ee_in) recipe=recipes/reduced/emotion_ae.yaml ;;
        ae) recipe=recipes/reduced/emotion_ae_ae.yaml ;;
        ae_ee | ae_in | ae_os | ae_os_ee_in) recipe=recipes/reduced/emotion_$row.yaml ;;
        *) echo "unknown row in $name" >&2; exit 2 ;;
    esac
    args=(--set "seed=$seed")
    [ "$corpus" = emovo ] && args+=(--corpus emovo --root "${EMOVO_ROOT:-../shared/corpora/emovo}")
    if [ -e "$OUT/$name.time" ]; then echo "skip $name (done or running)"; continue; fi
    echo "$(date -u +%H:%M:%S) start $name: $recipe ${args[*]}"
    nice -n 10 /usr/bin/time -v -o "$OUT/$name.time" \
        serkit experiment "$recipe" "${args[@]}" --out "$OUT/$name" --quiet
    echo "$(date -u +%H:%M:%S) done $name"
done
