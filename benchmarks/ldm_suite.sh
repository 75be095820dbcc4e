#!/usr/bin/env bash
# The LDM suite (configs/bench/ldm.yaml), 3 seeds, the test splits only:
# - latent_dds against zero-filled, TV, l1-wavelet and biharmonic on the IXI test subjects (MRI 4x
#   and 8x single- and multi-coil and random inpainting with brain_t1_lossless_2d, box inpainting
#   with brain_t1_2d: ldm.yaml's operator_priors);
# - ct_2d + latent_dds against FBP, TV and l1-wavelet on the MedNIST CT test block (30 and 60 views);
# - microscopy_2d + latent_dds against TV, l1-wavelet and Richardson-Lucy on the held-out image;
# then the autoencoders' ceilings on the same test data. Any medldm-bench override may
# follow, e.g. solvers=[tv,latent_dds,psld].
# Output: benchmarks/results/ldm/ (results.csv, report.md, report.html, ceiling*.json).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
[[ -x $bin/medldm-bench ]] || bin=$(dirname "$(command -v medldm-bench)")
start=$(date +%s)
"$bin/medldm-bench" --config-name ldm "$@"
# CT part: the MedNIST CT test block (8 images per class) at 30 and 60 views with the ct_2d prior
"$bin/medldm-bench" --config-name ldm data=mednist_ct_test physics=[ct_sparse_30,ct_sparse_60] \
    solvers=[zero_filled,tv,l1_wavelet,latent_dds] prior=ct_2d "$@"
# microscopy part: widefield deconvolution of the held-out image (BPAE_mito, 256x256 centre)
"$bin/medldm-bench" --config-name ldm data=microscopy_test physics=[microscopy_deconv] \
    solvers=[zero_filled,tv,l1_wavelet,richardson_lucy,latent_dds] prior=microscopy_2d "$@"
"$bin/python" benchmarks/autoencoder_ceiling.py brain_t1_2d --linear-reference --json benchmarks/results/ldm/ceiling.json
"$bin/python" benchmarks/autoencoder_ceiling.py ct_2d --linear-reference --json benchmarks/results/ldm/ceiling_ct.json
"$bin/python" benchmarks/autoencoder_ceiling.py brain_t1_3d --json benchmarks/results/ldm/ceiling_brain_t1_3d.json
"$bin/python" benchmarks/autoencoder_ceiling.py microscopy_2d \
    --json benchmarks/results/ldm/ceiling_microscopy.json
"$bin/python" benchmarks/autoencoder_ceiling.py microscopy_2d --crop 256 --linear-reference \
    --json benchmarks/results/ldm/ceiling_microscopy_crop256.json
echo "ldm suite: $(( $(date +%s) - start )) s; report: benchmarks/results/ldm/report.md"
