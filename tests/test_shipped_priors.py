"""The priors shipped in medldm/models/weights: each loads by name with its hashes verified,
has a model card and samples, and its autoencoder reproduces a real image it never saw
(a broken, truncated or untrained checkpoint would not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medldm.data.slices import crop_or_pad_to
from medldm.metrics import psnr
from medldm.models.prior import load_prior, shipped_priors

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "medldm" / "models" / "weights"
#: The 3D prior left the shipped set (it does not beat the 2D route on whole volumes); its
#: recipe's milestone stays in the checkout and is still tested.
BRAIN_3D = ROOT / "campaign" / "milestones" / "brain_t1_3d" / "diffusion"


def _mni(resolution: int) -> np.ndarray:
    from nilearn.datasets import load_mni152_template

    data = np.asarray(load_mni152_template(resolution=resolution).get_fdata(), np.float32)
    low, high = np.percentile(data, [0.5, 99.5])
    return np.clip((data - low) / (high - low), 0, 1)


def _real_image(name: str) -> np.ndarray:
    """A real image in [0, 1] from outside the prior's training data, on its grid."""
    if name in ("brain_t1_2d", "brain_t1_lossless_2d"):  # MNI152 at 2 mm, central axial slice
        volume = _mni(2)
        return crop_or_pad_to(volume[:, :, volume.shape[2] // 2].T, (128, 128))
    if name == "brain_native_2d":  # the shipped example (test patient), central axial slice
        import nibabel as nib

        from medldm.problems.model_view import volume_to_model_stack
        from medldm.recon.examples import example_input

        image = nib.as_closest_canonical(nib.load(example_input("brain_native_t1")))
        volume = np.asarray(image.dataobj, np.float32)
        low, high = np.percentile(volume, [0.5, 99.5])
        volume = np.clip((volume - low) / (high - low), 0, 1)
        middle = volume.shape[2] // 2
        return volume_to_model_stack(volume[:, :, middle : middle + 1])[0]  # 256 x 256
    if name == "brain_t1_3d":  # MNI152 at 2 mm, averaged to 4 mm, on the prior's 64x64x48
        from skimage.transform import downscale_local_mean

        volume = _mni(2)
        even = volume[: volume.shape[0] // 2 * 2, : volume.shape[1] // 2 * 2]
        even = even[:, :, : volume.shape[2] // 2 * 2]
        return crop_or_pad_to(downscale_local_mean(even, (2, 2, 2)), (64, 64, 48))
    if name == "ct_2d":  # pydicom's CT_small.dcm, percentiles -> [0, 1], 128 -> 64
        from pydicom import dcmread
        from pydicom.data import get_testdata_file
        from skimage.transform import resize

        ct = dcmread(get_testdata_file("CT_small.dcm")).pixel_array.astype(np.float32)
        low, high = np.percentile(ct, [0.5, 99.5])
        return resize(np.clip((ct - low) / (high - low), 0, 1), (64, 64), anti_aliasing=True)
    if name == "microscopy_2d":  # scikit-image's bundled cell (the app's example input)
        from skimage.data import cell

        image = cell()[200:456, 150:406].astype(np.float32)
        low, high = np.percentile(image, [0.1, 99.9])
        return np.clip((image - low) / (high - low), 0, 1)
    raise AssertionError(f"no real test image for the shipped prior {name!r}")


def test_every_shipped_folder_is_a_listed_prior_with_card_and_samples():
    folders = sorted(p.name for p in WEIGHTS.iterdir() if p.is_dir())
    assert folders == sorted(shipped_priors())
    assert {"brain_t1_2d", "ct_2d", "microscopy_2d"} <= set(folders)
    assert "brain_t1_3d" not in folders  # left the shipped set; see its MODEL_CARD.md
    total = sum(f.stat().st_size for f in WEIGHTS.rglob("*") if f.is_file())
    assert total <= 90_000_000  # the budget for all shipped priors: 90 MB
    for name in folders:
        card = (WEIGHTS / name / "MODEL_CARD.md").read_text()
        assert "Licence" in card and "medldm-train-autoencoder" in card
        assert (WEIGHTS / name / "samples.png").stat().st_size > 1000


# PSNR (dB) the autoencoder must reach on the real image above, a few dB under what the
# weights measured (brain_t1_2d 31.6, brain_t1_lossless_2d 82.0, ct_2d 23.9, microscopy_2d
# 32.0, brain_t1_3d 23.2, brain_native_2d 43.9 on the central slice of its 256 x 256 example).
MIN_PSNR = {
    "brain_t1_2d": 27.0,
    "brain_t1_lossless_2d": 60.0,  # an orthonormal block PCA: lossless but for fp16 storage
    "ct_2d": 20.0,
    "microscopy_2d": 27.0,
    "brain_t1_3d": 20.0,
    "brain_native_2d": 38.0,
}


@pytest.mark.parametrize("name", [*shipped_priors(), "brain_t1_3d"])
def test_shipped_autoencoder_reproduces_an_unseen_real_image(name):
    where = BRAIN_3D if name == "brain_t1_3d" else name
    prior = load_prior(where, device="cpu")  # verifies every file's SHA-256
    image = _real_image(name)
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None]
    with torch.no_grad():
        x_hat = prior.decode(prior.encode(x)).clamp(0, 1)[0, 0].numpy()
    assert np.isfinite(x_hat).all()
    assert psnr(x_hat, image) > MIN_PSNR[name]


def test_the_3d_prior_reconstructs_a_volume_natively():
    """brain_t1_3d (its campaign milestone, no longer shipped) through latent_dds on 3D
    k-space of an unseen real volume (MNI152 at 4 mm): a few steps, one sample, no TV in
    the final step, so what fills the unmeasured k-space is the prior's; the estimate must
    beat zero filling."""
    from medldm.physics.factory import MRIPhysicsFactory
    from medldm.problems.configs import solver_for_operator
    from medldm.problems.simulate import simulate
    from medldm.solvers.zero_filled import ZeroFilled

    prior = load_prior(BRAIN_3D, device="cpu")
    volume = _real_image("brain_t1_3d")
    factory = MRIPhysicsFactory(acceleration=4, center_fraction=0.08, noise_sigma=0.005)
    x = torch.from_numpy(np.ascontiguousarray(volume))[None, None]
    physics, y = simulate(x, factory, seed=0)
    prior_alone = {"n_steps": 4, "n_samples": 1, "final_tv_weight": 0.0}
    solver, _ = solver_for_operator("latent_dds", "mri_4x", prior_alone)
    result = solver.solve(y, physics, prior, generator=torch.Generator().manual_seed(0))
    estimate = result.estimate.abs()[0, 0].numpy()
    zero_filled = ZeroFilled().solve(y, physics).estimate.abs()[0, 0].numpy()
    assert estimate.shape == volume.shape and np.isfinite(estimate).all()
    # measured: 24.1 dB against zero filling's 22.4 (4 steps, no TV in the last step)
    assert psnr(estimate, volume) > psnr(zero_filled, volume) + 1.0
