#!/usr/bin/env bash
# A small check of the tuned l1_wavelet and tv presets on TEST data (not the whole standard
# suite): IXI T1 test subjects (1 central axial slice each, 128 x 128) at mri_4x and mri_8x,
# and the MedNIST CT test block (4 images per CT class, 64 x 64) at ct_sparse_30; seed 0;
# zero_filled (FBP for CT), tv and l1_wavelet with their per-operator presets
# (configs/solver/<solver>_<operator>.yaml, tuned on training cases by tune_classical.py).
# Output: benchmarks/results/l1_wavelet_spot_check/ (results.csv, report.md). A few minutes
# on one CPU thread. Any medldm-bench override may follow, e.g. seeds=[0,1,2].
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
[[ -x $bin/medldm-bench ]] || bin=$(dirname "$(command -v medldm-bench)")
out=benchmarks/results/l1_wavelet_spot_check
"$bin/medldm-bench" data=ixi_t1_test data.slices=1 physics=[mri_4x,mri_8x] \
    solvers=[zero_filled,tv,l1_wavelet] seeds=[0] threads=1 progress=false \
    save_arrays=none output_dir=$out "$@"
"$bin/medldm-bench" data=mednist_ct_test data.per_class=4 physics=[ct_sparse_30] \
    solvers=[zero_filled,tv,l1_wavelet] seeds=[0] threads=1 progress=false \
    save_arrays=none output_dir=$out "$@"
echo "report: $out/report.md"
