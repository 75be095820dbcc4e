#!/usr/bin/env bash
# The native-resolution LDM suite (configs/bench/ldm_native.yaml), 3 seeds, the test patient
# of brain_mri_native only (patient19, each series on its own matrix, no resampling):
# the brain_native_2d prior + latent_dds against zero-filled, TV and l1-wavelet, every solver
# with its preset tuned for this data (<solver>_<operator>_native.yaml), at MRI 4x and 8x
# single- and multi-coil and box inpainting; then the autoencoder's ceiling on the same
# slices beside the linear codec of its latent size. Any medldm-bench override may follow,
# e.g. prior=campaign/milestones/brain_native_2d/diffusion data.slices=2 (a newer milestone).
# Output: benchmarks/results/ldm_native/ (results.csv, report.md, report.html, ceiling.json).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
[[ -x $bin/medldm-bench ]] || bin=$(dirname "$(command -v medldm-bench)")
start=$(date +%s)
"$bin/medldm-bench" --config-name ldm_native "$@"
prior=$("$bin/python" -c "from omegaconf import OmegaConf; print(OmegaConf.load('configs/bench/ldm_native.yaml').prior)")
for arg in "$@"; do [[ $arg == prior=* ]] && prior=${arg#prior=}; done
"$bin/python" benchmarks/autoencoder_ceiling.py "$prior" --card brain_mri_native --split test \
    --linear-reference --json benchmarks/results/ldm_native/ceiling.json
echo "ldm native suite: $(( $(date +%s) - start )) s; report: benchmarks/results/ldm_native/report.md"
