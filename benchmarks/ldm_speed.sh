#!/usr/bin/env bash
# Fast vs slow LDM solvers side by side on the same measurements (issue 5): latent_dds
# (<= 50 NFE, no backprop) against latent DPS and PSLD at 1000 steps (backprop through the
# UNet and the decoder), with TV as reference, on IXI test slices at MRI 4x, one seed.
# Any medldm-bench override may follow (e.g. data.limit=3 for more cases).
# Output: benchmarks/results/ldm_speed/ (results.csv with NFE and seconds per case).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
[[ -x $bin/medldm-bench ]] || bin=$(dirname "$(command -v medldm-bench)")
start=$(date +%s)
"$bin/medldm-bench" --config-name ldm physics=[mri_4x] solvers=[tv,latent_dds,latent_dps,psld] \
    seeds=[0] data.slices=1 data.limit=1 output_dir=benchmarks/results/ldm_speed "$@"
echo "ldm speed: $(( $(date +%s) - start )) s; report: benchmarks/results/ldm_speed/report.md"
