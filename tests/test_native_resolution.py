"""Inputs at the scanner's resolution: the shipped example (one test-split volume, with its
licence), and the brain presets' native variant (the native prior on the input's own grid,
the presets tuned for that data)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from medldm.io import load
from medldm.recon.examples import example_input
from medldm.recon.presets import load_preset


def test_the_shipped_native_example_is_a_test_patients_t1_with_its_licence_beside_it():
    path = example_input("brain_native_t1")
    image = load(path)
    assert image.array.shape == (256, 256, 48)
    assert image.spacing[:2] == pytest.approx((0.91, 0.91), abs=0.005)
    folder = Path(path).parent
    licence = (folder / "LICENSE-open_ms_data.txt").read_text()
    readme = (folder / "README.md").read_text()
    assert "Attribution" in licence and "Lesjak" in readme and "test" in readme
    # the test patient of the card: never trained or tuned on
    from medldm.data.cards import load_card

    assert load_card("brain_mri_native").split["test"] == ["patient19"]
    assert "patient19" in readme


def test_the_brain_presets_take_the_native_variant_for_the_native_example():
    spacing = min(load(example_input("brain_native_t1")).spacing[:2])
    for name in ("mri_brain_4x", "mri_brain_8x", "inpaint_box"):
        preset = load_preset(name).for_resolution(spacing)
        assert (preset.prior, preset.domain, preset.grid_size, preset.volume) == (
            "brain_native_2d",
            "native",
            None,
            False,  # clinical slices are solved one by one, as the native presets were tuned
        )
    two_mm = load_preset("mri_brain_4x").for_resolution(2.0)
    assert two_mm.prior == "brain_t1_lossless_2d" and two_mm.volume


def test_the_cli_keeps_a_prior_or_grid_the_user_named_whatever_the_resolution():
    from omegaconf import OmegaConf

    from medldm.recon.cli import _preset
    from medldm.recon.presets import preset_folder

    file = OmegaConf.load(preset_folder() / "mri_brain_4x.yaml")
    assert _preset(OmegaConf.create({"preset": file})).for_resolution(0.9).prior == (
        "brain_native_2d"
    )
    for key, value in (("prior", "/my/checkpoint"), ("grid", {"size": [96, 96]})):
        named = OmegaConf.merge(file, {key: value})
        preset = _preset(OmegaConf.create({"preset": named}))
        assert preset.native == {} and preset.for_resolution(0.9) == preset
    off = _preset(OmegaConf.create({"preset": OmegaConf.merge(file, {"native": None})}))
    assert off.for_resolution(0.9).prior == "brain_t1_lossless_2d"


def test_the_native_example_is_reconstructed_on_its_own_grid_with_the_native_prior():
    import medldm

    result = medldm.reconstruct(
        None, "mri_brain_4x", slices=1, solver_options={"n_steps": 2, "n_samples": 1}
    )
    metrics = result.metrics
    assert metrics["prior"] == "brain_native_2d"
    assert not result.grid.resampled and not result.grid.padded
    assert result.reconstruction.shape == (1, 256, 256)
    assert result.preset.domain == "native" and result.preset.example == "brain_native_t1"
    assert metrics["baseline"]["psnr_db"] > metrics["direct"]["psnr_db"]  # TV_native helps


def test_measured_kspace_takes_the_variant_of_the_spacing_its_file_states(tmp_path):
    """A bare .npy states no spacing: the native prior on its own grid. The same k-space
    stated at 2 mm (a BART .cfl has no spacing either, so the header's spacing is faked
    through the reader) keeps the 2 mm prior and its grid."""
    from medldm.recon.kspace_stages import MeasuredKSpace

    image = np.random.default_rng(0).random((32, 32)).astype(np.complex64)  # no k-space zeros
    np.save(tmp_path / "k.npy", np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image))))
    stages = MeasuredKSpace(
        tmp_path / "k.npy",
        None,
        "mri_brain_4x",
        "cpu",
        0,
        False,
        False,
        options={"acceleration": 4},
        overrides={"solver": "tv"},
    )
    read = stages.read()
    assert not read.raw.spacing_from_file
    view = stages.model_view(read)
    assert view.preset.prior == "brain_native_2d" and view.preset.domain == "native"
    stated = dataclasses.replace(read.raw, spacing_mm=(2.0, 2.0), spacing_from_file=True)
    view = stages.model_view(dataclasses.replace(read, raw=stated))
    assert view.preset.prior == "brain_t1_lossless_2d" and view.preset.grid_size == (128, 128)


def test_measured_kspace_on_a_2d_pattern_takes_the_presets_tuned_for_it(tmp_path):
    """A Poisson-disc-like 2D pattern is not phase-encode lines: its solvers take the
    variable-density presets (tuned for that sampling), not the line operator's."""
    from medldm.physics.masks import VariableDensityMask2D
    from medldm.problems.configs import solver_for_operator
    from medldm.recon.kspace_methods import measured_operator
    from medldm.recon.kspace_stages import MeasuredKSpace

    image = np.random.default_rng(0).random((2, 48, 40)) + 0.1  # two coils, no zeros
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=(1, 2))), axes=(1, 2))
    mask = VariableDensityMask2D(8, 0.1)((48, 40), generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "k.npy", (kspace * mask.numpy()).astype(np.complex64))
    read = MeasuredKSpace(tmp_path / "k.npy", None, "mri_brain_4x", "cpu", 0, False, False).read()
    operator = measured_operator(read.raw.n_coils, read.mask)
    assert operator == "mri_multicoil_8x_variable_density"
    for name in ("tv", "l1_wavelet", "latent_dds"):
        _, source = solver_for_operator(name, operator, None, "native")
        assert source == f"{name}_mri_multicoil_8x_variable_density_native"
    lines = np.zeros((48, 40), bool)
    lines[:, ::8] = lines[:, 18:22] = True
    assert measured_operator(2, lines) == "mri_multicoil_4x"
