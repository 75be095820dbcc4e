"""Classical solvers with medldm's own operators (MRI, CT, inpainting, blur) on real
images, measured through the benchmark's physics presets; the solver presets in
configs/solver/ and the tuning script that writes them."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from medldm.metrics import psnr
from medldm.physics.blur import Blur, gaussian_psf
from medldm.physics.coils import birdcage_sensitivities
from medldm.physics.inpainting import Inpainting
from medldm.physics.masks import BoxMask, RandomLineMask
from medldm.physics.mri import MultiCoilMRI
from medldm.problems.configs import load_physics
from medldm.solvers import (
    SOLVERS,
    Biharmonic,
    ConjugateGradient,
    RichardsonLucy,
    TotalVariation,
    ZeroFilled,
)

ROOT = Path(__file__).resolve().parents[1]
SOLVER_CONFIGS = sorted((ROOT / "configs" / "solver").glob("*.yaml"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: extra threads only contend for the shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def brain_slices(data_root: Path) -> torch.Tensor:
    """Central axial slices of two IXI training subjects, 128x128 in [0, 1], (2, 1, H, W)."""
    from medldm.bench.cases.cards import card_cases

    cases = itertools.islice(card_cases("ixi_t1", "train", slices=1, size=128), 2)
    return torch.from_numpy(np.stack([case.image for case in cases]))[:, None]


@pytest.fixture(scope="module")
def ct_images(data_root: Path) -> torch.Tensor:
    """Three real 64x64 MedNIST CT training images in [0, 1], float32, (3, 1, 64, 64)."""
    images = []
    for name in ("HeadCT", "ChestCT", "AbdomenCT"):
        with np.load(data_root / "mednist" / f"{name}.npz") as archive:
            images.append(archive["images"][500].astype(np.float32) / 255.0)
    return torch.from_numpy(np.stack(images))[:, None]


def measure(preset: str, x: torch.Tensor, seed: int = 0):
    """The benchmark's measurement of ``x``: build, prepare the object, measure."""
    factory = load_physics(preset)
    generator = torch.Generator().manual_seed(seed)
    physics = factory.build(tuple(x.shape[2:]), generator, "cpu")
    obj = factory.prepare_object(x, generator)
    return physics, physics(obj, generator)


def mean_psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    return float(np.mean([psnr(estimate[i, 0], truth[i, 0]) for i in range(len(truth))]))


def test_tv_beats_zero_filled_on_mri_4x_of_real_brain_slices(brain_slices):
    gains = []
    for i in range(len(brain_slices)):
        x = brain_slices[i : i + 1]
        physics, y = measure("mri_4x", x, seed=i)  # complex object: smooth random phase
        zero_filled = ZeroFilled().solve(y, physics).estimate
        tv = TotalVariation(weight=0.004, n_iter=200).solve(y, physics)
        assert tv.info["preconditioning"] == "scalar"  # complex operator
        gains.append(mean_psnr(tv.estimate, x) - mean_psnr(zero_filled, x))
    assert min(gains) > 1.0


def test_cg_sense_recovers_a_fully_sampled_image_and_its_residual_decreases(brain_slices):
    x = brain_slices[:1].to(torch.complex64)
    maps = birdcage_sensitivities(8, (128, 128))
    full = MultiCoilMRI(torch.ones(128, 128, dtype=torch.bool), maps)
    rec = ConjugateGradient(n_iter=50, tol=1e-6).solve(full.A(x), full)
    assert psnr(rec.estimate, x) > 50
    mask = RandomLineMask(4, 0.08)((128, 128), generator=torch.Generator().manual_seed(0))
    undersampled = MultiCoilMRI(mask, maps)
    rec = ConjugateGradient(n_iter=20, tol=0).solve(undersampled.A(x), undersampled)
    history = rec.info["residual_history"]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(history))
    assert psnr(rec.estimate, x) > psnr(
        ZeroFilled().solve(undersampled.A(x), undersampled).estimate, x
    )


def test_zero_filled_is_fbp_for_ct_and_tv_beats_it_on_30_views(ct_images):
    physics, y = measure("ct_sparse_30", ct_images)
    fbp = ZeroFilled().solve(y, physics)
    assert fbp.info["method"] == "fbp"
    tv = TotalVariation(weight=0.15, n_iter=300, constraint="nonnegative").solve(y, physics)
    assert tv.info["preconditioning"] == "diagonal"  # real, non-negative projector
    assert mean_psnr(tv.estimate, ct_images) > mean_psnr(fbp.estimate, ct_images) + 3.0
    assert tv.estimate.min() >= 0


def test_biharmonic_fills_the_box_of_the_inpainting_operator(brain_slices):
    mask = BoxMask(0.25)((128, 128))
    physics = Inpainting(mask)
    y = physics.A(brain_slices)
    rec = Biharmonic().solve(y, physics)
    assert rec.residual == pytest.approx(0.0, abs=1e-6)
    assert mean_psnr(rec.estimate, brain_slices) > mean_psnr(y, brain_slices) + 5.0


def test_richardson_lucy_sharpens_a_blurred_real_microscopy_image(microscopy_dir):
    import tifffile

    crop = tifffile.imread(microscopy_dir / "BPAE_nuclei.tif")[300:428, 500:628].astype(np.float32)
    x = torch.from_numpy((crop - crop.min()) / (crop.max() - crop.min()))[None, None]
    physics = Blur(gaussian_psf((15, 15), sigma_px=2.0))
    y = physics.A(x)
    rec = RichardsonLucy(n_iter=30).solve(y, physics)
    assert rec.estimate.min() >= 0
    assert psnr(rec.estimate, x) > psnr(y, x) + 1.0
    assert rec.residual < ConjugateGradient(n_iter=1).solve(y, physics).residual


@pytest.mark.parametrize("path", SOLVER_CONFIGS, ids=lambda p: p.stem)
def test_every_solver_preset_instantiates_its_solver(path):
    from hydra.utils import instantiate

    config = OmegaConf.load(path)
    solver = instantiate(config)
    assert isinstance(solver, SOLVERS[solver.name])
    if path.stem != solver.name:  # a tuned preset: <solver>_<operator>[_<domain>]
        operator = path.stem.removeprefix(f"{solver.name}_")
        header = path.read_text()
        if operator.endswith("_native"):  # tuned on brain_mri_native at its own resolution
            operator = operator.removesuffix("_native")
            assert "--card brain_mri_native" in header
        if operator.endswith("_volume"):  # whole volumes: the 2D prior along slice axis 0
            operator = operator.removesuffix("_volume")
            assert solver.slice_axis == 0 and "whole" in header
        if operator.endswith("_multislice"):  # a slab of 2D k-spaces: slices along axis 0
            assert solver.slice_axis == 0 and solver.slice_tv_weight > 0
        # classical presets are tuned on training cases, LDM presets on validation cases
        # (the prior has seen the training subjects); never on test cases
        assert "Tuned on training cases only" in header or "VALIDATION cases" in header
        assert f"configs/physics/{operator}.yaml" in header
        assert (ROOT / "configs" / "physics" / f"{operator}.yaml").is_file()


def test_tuning_script_writes_a_preset_from_training_cases(tmp_path, data_root):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import tune_classical
    finally:
        sys.path.pop(0)
    plan = tune_classical.Plan("ixi", (0.003, 0.03), tv_n_iter=20, tune_cg=False)
    tune_classical.PLANS["smoke"] = plan
    load = tune_classical.load_physics
    tune_classical.load_physics = lambda name: load("inpaint_random")
    try:
        tune_classical.main(["--operators", "smoke", "--cases", "1", "--output-dir", str(tmp_path)])
    finally:
        tune_classical.load_physics = load
        del tune_classical.PLANS["smoke"]
    text = (tmp_path / "tv_smoke.yaml").read_text()
    assert "ixi_t1_train" in text and "IXI" in text and "--cases 1" in text
    assert OmegaConf.load(tmp_path / "tv_smoke.yaml").weight in (0.003, 0.03)


def test_tv_tuning_keeps_the_better_mri_phase_handling():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import tune_classical
    finally:
        sys.path.pop(0)
    lowres, complex_image = (tune_classical.GridResult("weight") for _ in range(2))
    for weight, a, b in ((1e-3, 20.0, 19.0), (1e-2, 21.0, 21.5), (1e-1, 20.5, 21.0)):
        lowres.add(weight, [(a, 0.5)])
        complex_image.add(weight, [(b, 0.5)])
    grids = tune_classical.PhaseGrids({"lowres": lowres, None: complex_image})
    assert grids.best_phase is None  # 21.5 dB at 1e-2 beats lowres' 21.0
    assert grids.lines()[-1] == "chosen phase: None" and "phase lowres:" in grids.lines()
    assert tune_classical.PLANS["mri_8x"].tv_phases == ("lowres", None)
