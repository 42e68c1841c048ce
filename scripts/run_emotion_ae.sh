#!/usr/bin/env bash
# Table 4 of the emotion-embedding autoencoder (Zhang and Xue 2021), leave-one-speaker-out, as in
# docs/results_ae.md, on a 2-core CPU machine: the named runs of the sweep
# sweeps/emotion_ae_table4.yaml, through `serkit sweep --only`.
#
# Usage: scripts/run_emotion_ae.sh RUN [RUN ...]     (one after the other; start two shells to use
#        two cores). RUN = CORPUS-loso-ROW[-sSEED], e.g. emodb-loso-ae_ee_in, emovo-loso-ae-s1 (or a
#        shell pattern); CORPUS emodb | emovo (EMOVO_ROOT, default ../shared/corpora/emovo); ROW
#          is10_svm                          recipes/is10_svm.yaml (not reduced)
#          ae_ee_in                          recipes/reduced/emotion_ae.yaml (the full system)
#          ae | ae_ee | ae_in | ae_os | ae_os_ee_in    recipes/reduced/emotion_ae_<ROW>.yaml
#        SEED (default 0) goes to --set seed=SEED; nothing else is overridden. The speaker-dependent
#        k-fold runs are plain commands in docs/results_ae.md.
# Each run writes results/emotion_ae/CORPUS-loso-ROW-sSEED/ (always with the seed, also 0). The
# sweep skips a complete run, leaves one another shell is running to it and resumes an
# interrupted one; with every run complete it writes results/emotion_ae/emotion_ae_table4.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
only=()
for name in "$@"; do
    [[ $name =~ -s[0-9]+$ || $name == *"*"* ]] || name=$name-s0
    only+=(--only "$name")
done
exec nice -n 10 serkit sweep sweeps/emotion_ae_table4.yaml "${only[@]}" --quiet
