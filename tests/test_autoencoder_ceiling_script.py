"""benchmarks/autoencoder_ceiling.py --by-third: the autoencoder's ceiling per third of the
head's foreground extent, beside a bench's slice scores."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import autoencoder_ceiling

from medldm.bench.cases.case import Case
from medldm.data.normalize import Normalization


class HalvingPrior:
    """An 'autoencoder' whose reconstruction is half the image: a known error."""

    image_size = (16, 16)
    device = torch.device("cpu")

    def encode(self, x):
        return x

    def decode(self, z):
        return z / 2


def test_the_ceiling_is_scored_per_slice_of_the_extent_and_averaged_per_third(monkeypatch):
    rng = np.random.default_rng(0)
    volume = rng.uniform(0.2, 1.0, (7, 16, 16)).astype(np.float32)
    volume[0] = 0.0  # outside the head: not in the extent, never scored
    thirds = ["inferior", "inferior", "middle", "middle", "superior", "superior"]
    extent = [
        {"slice": k, "position": (k - 1) / 5, "third": third}
        for k, third in zip(range(1, 7), thirds, strict=True)
    ]
    case = Case(
        "ixi_t1_test", "IXI000", volume, Normalization(0.0, 1.0), metadata={"extent": extent}
    )
    monkeypatch.setattr("medldm.bench.cases.cards.card_cases", lambda *args, **kwargs: iter([case]))
    result = autoencoder_ceiling.ceiling_by_third(HalvingPrior(), "test", batch_size=3)
    data_range = volume.max() - volume.min()
    for third in ("inferior", "middle", "superior"):
        slices = [item["slice"] for item in extent if item["third"] == third]
        expected = [
            10 * np.log10(data_range**2 / np.mean((volume[k] / 2 - volume[k]) ** 2)) for k in slices
        ]
        assert result[third]["n_slices"] == 2
        assert result[third]["psnr_mean"] == pytest.approx(np.mean(expected), abs=1e-3)
        assert 0 < result[third]["ssim_mean"] < 1


def test_solvers_beside_it_are_the_mean_slice_psnr_of_one_operator(tmp_path):
    path = tmp_path / "slices.csv"
    rows = [
        ("mri_4x", "tv", "inferior", 27.0),
        ("mri_4x", "tv", "inferior", 29.0),
        ("mri_4x", "latent_dds", "inferior", 30.0),
        ("mri_8x", "tv", "inferior", 20.0),
    ]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "operator", "solver", "third", "position", "psnr", "ssim"])
        writer.writerows(
            ("ixi_t1_test", op, solver, third, 0.1, psnr, 0.8) for op, solver, third, psnr in rows
        )
    assert autoencoder_ceiling.solvers_by_third(path, "mri_4x") == {
        "tv": {"inferior": 28.0},
        "latent_dds": {"inferior": 30.0},
    }


def test_by_third_refuses_a_prior_of_another_card():
    prior = SimpleNamespace(spatial_dims=2, meta={"data_card": "mednist"})
    with pytest.raises(SystemExit, match="ixi_t1"):
        autoencoder_ceiling.main_by_third(SimpleNamespace(prior="x", split="test"), prior)


def test_a_block_pca_codec_scores_in_place_of_the_autoencoder(monkeypatch):
    """--linear-components: the codec of all 16 components of 4 x 4 blocks is lossless,
    one of 4 components is not."""
    from skimage import data as skdata

    camera = skdata.camera().astype(np.float32)[::4, ::4] / 255.0  # 128 x 128, real
    monkeypatch.setattr(autoencoder_ceiling, "training_images", lambda prior: [camera])
    prior = SimpleNamespace(downsampling_factor=4)
    x = torch.from_numpy(camera[None, None])
    lossless = autoencoder_ceiling.linear_round_trip(prior, 16)(x)
    lossy = autoencoder_ceiling.linear_round_trip(prior, 4)(x)
    assert float((lossless - x).abs().max()) < 1e-4
    assert float((lossy - x).abs().mean()) > 1e-3
