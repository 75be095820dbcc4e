"""Intensity normalisation: exact round trips, clipping, serialisation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medldm.data.cards import list_cards, load_card
from medldm.data.normalize import (
    FixedRangeNormalizer,
    Normalization,
    PercentileNormalizer,
    normalizer_from_dict,
)
from medldm.errors import InvalidInputError


@pytest.fixture
def volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.gamma(2.0, 400.0, size=(20, 30, 10))


def test_percentile_fit_gives_percentiles_in_physical_units(volume):
    norm = PercentileNormalizer(0.5, 99.5).fit(volume, unit="arbitrary MR units")
    low, high = np.percentile(volume, [0.5, 99.5])
    assert norm.low == pytest.approx(low) and norm.high == pytest.approx(high)
    assert norm.unit == "arbitrary MR units"
    assert norm.method == "percentile 0.5-99.5"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_round_trip_is_exact_without_clipping(volume, dtype):
    x = volume.astype(dtype)
    norm = PercentileNormalizer(1.0, 99.0).fit(x)
    y = norm.forward(x, clip=False)
    assert y.dtype == dtype
    np.testing.assert_allclose(norm.inverse(y), x, rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_round_trip_is_exact_without_clipping(volume, dtype):
    x = torch.as_tensor(volume, dtype=dtype)
    norm = PercentileNormalizer(1.0, 99.0).fit(x)
    y = norm.forward(x, clip=False)
    assert isinstance(y, torch.Tensor) and y.dtype == dtype
    torch.testing.assert_close(norm.inverse(y), x)


def test_numpy_and_torch_give_the_same_numbers(volume):
    norm = PercentileNormalizer(0.5, 99.5).fit(volume)
    np.testing.assert_allclose(
        norm.forward(torch.as_tensor(volume)).numpy(), norm.forward(volume), rtol=0, atol=0
    )


def test_clipped_forward_is_in_unit_range_and_round_trips_inside_range(volume):
    norm = PercentileNormalizer(5.0, 95.0).fit(volume)
    y = norm.forward(volume)
    assert y.min() == 0.0 and y.max() == 1.0
    inside = (volume >= norm.low) & (volume <= norm.high)
    np.testing.assert_allclose(norm.inverse(y)[inside], volume[inside], rtol=1e-12)
    assert norm.forward(volume, clip=False).max() > 1.0


def test_to_dict_from_dict_round_trip_through_json(volume):
    norm = PercentileNormalizer(0.5, 99.5).fit(volume, unit="HU")
    again = Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again == norm
    np.testing.assert_array_equal(again.forward(volume), norm.forward(volume))


def test_from_dict_rejects_foreign_records():
    with pytest.raises(InvalidInputError, match="not a normalisation record"):
        Normalization.from_dict({"low": 0.0, "hi": 1.0})


def test_fixed_range_maps_8bit_to_unit_interval_and_back():
    pixels = np.arange(256, dtype=np.uint8)
    norm = FixedRangeNormalizer(0.0, 255.0).fit(pixels, unit="8-bit grey level")
    y = norm.forward(pixels)
    assert y.dtype == np.float32 and y[0] == 0.0 and y[-1] == 1.0
    np.testing.assert_allclose(norm.inverse(y), pixels, atol=1e-4)


def test_fixed_range_ct_window_clips_outside_the_window():
    norm = FixedRangeNormalizer(-1000.0, 1000.0).fit(unit="HU")
    hu = torch.tensor([-3024.0, -1000.0, 0.0, 1000.0, 3000.0])
    assert norm.forward(hu).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert norm.inverse(norm.forward(hu, clip=False)).tolist() == hu.tolist()


def test_percentile_fit_ignores_nan_values():
    psf_like = np.array([np.nan, 1.0, 2.0, 3.0, np.nan])
    norm = PercentileNormalizer(0.0, 100.0).fit(psf_like)
    assert (norm.low, norm.high) == (1.0, 3.0)


def test_all_nan_image_cannot_be_fitted():
    with pytest.raises(InvalidInputError, match="no finite values"):
        PercentileNormalizer(0.5, 99.5).fit(np.full((3, 3), np.nan))


def test_constant_image_maps_to_zero_and_back():
    flat = np.full((4, 4), 7.0)
    norm = PercentileNormalizer(0.5, 99.5).fit(flat)
    assert norm.scale == 1.0
    np.testing.assert_array_equal(norm.forward(flat), 0.0)
    np.testing.assert_array_equal(norm.inverse(norm.forward(flat)), flat)


@pytest.mark.parametrize(
    "make",
    [
        lambda: PercentileNormalizer(99.5, 0.5),
        lambda: PercentileNormalizer(-1.0, 50.0),
        lambda: FixedRangeNormalizer(1.0, 1.0),
        lambda: Normalization(2.0, 1.0),
        lambda: Normalization(0.0, float("inf")),
    ],
)
def test_bad_ranges_raise(make):
    with pytest.raises(InvalidInputError):
        make()


def test_normalizer_from_dict_builds_every_card_normaliser_and_round_trips():
    for card_id in list_cards():
        normalizer = load_card(card_id).normalizer()
        assert normalizer_from_dict(normalizer.to_dict()) == normalizer


def test_normalizer_from_dict_rejects_unknown_method_and_arguments():
    with pytest.raises(InvalidInputError, match="unknown normalisation method"):
        normalizer_from_dict({"method": "zscore"})
    with pytest.raises(InvalidInputError, match="bad arguments"):
        normalizer_from_dict({"method": "percentile", "low": 0.0, "high": 1.0})
