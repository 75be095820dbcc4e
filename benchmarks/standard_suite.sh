#!/usr/bin/env bash
# The standard benchmark suite of issue 3 in one command, with the classical solvers:
#
#   benchmarks/standard_suite.sh                 # the three parts one after another
#   benchmarks/standard_suite.sh --parallel      # the parts as parallel joblib jobs
#   benchmarks/standard_suite.sh seeds=[0]       # any medldm-bench override
#
# What runs (configs/bench/standard.yaml, parts in configs/bench/suite/):
#   IXI T1 test subjects, 4 central axial slices each at 128x128: mri_4x, mri_8x,
#     mri_multicoil_4x, mri_multicoil_8x, inpaint_box, inpaint_random;
#   MedNIST CT test block, 8 images per CT class at 64x64: ct_sparse_30, ct_sparse_60;
#   microscopy test image BPAE_mito (central 256x256): microscopy_deconv (Gaussian PSF, as
#     the measured psf.tif is all NaN);
#   solvers zero_filled, cg, tv, biharmonic (inpainting only), richardson_lucy (microscopy
#     only), with the per-operator presets tuned on training cases; seeds 0, 1, 2.
# Output: benchmarks/results/standard/ (results.csv, report.md, report.html; figures/,
# cases/, runs/ and hydra/ can be regenerated). A rerun skips rows already in results.csv;
# delete the folder for a fresh run. Needs the data root (MEDLDM_DATA_DIR or ../shared/data).
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ -x .venv/bin/medldm-bench ]]; then
    bench=.venv/bin/medldm-bench
else
    bench=medldm-bench
fi

launcher=()
if [[ "${1:-}" == "--parallel" ]]; then
    shift
    # One torch thread per job: the jobs, not the threads, share the cores.
    launcher=(hydra/launcher=joblib hydra.launcher.n_jobs=3 threads=1)
fi

start=$(date +%s)
"$bench" --config-name standard output_dir=benchmarks/results/standard "${launcher[@]}" "$@"
echo "standard suite: $(( $(date +%s) - start )) s; report: benchmarks/results/standard/report.md"
