#!/usr/bin/env bash
# The LDM suite (configs/bench/ldm.yaml): brain_t1_2d + latent_dds against zero-filled, TV
# and biharmonic on the IXI test subjects, 3 seeds; then the autoencoder ceiling on the same
# subjects. Any medldm-bench override may follow, e.g. solvers=[tv,latent_dds,psld].
# Output: benchmarks/results/ldm/ (results.csv, report.md, report.html, ceiling.json).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
[[ -x $bin/medldm-bench ]] || bin=$(dirname "$(command -v medldm-bench)")
start=$(date +%s)
"$bin/medldm-bench" --config-name ldm "$@"
"$bin/python" benchmarks/autoencoder_ceiling.py brain_t1_2d --json benchmarks/results/ldm/ceiling.json
echo "ldm suite: $(( $(date +%s) - start )) s; report: benchmarks/results/ldm/report.md"
