"""Microscopy TIFF / OME-TIFF reading and writing (medldm.io.microscopy).

Synthetic files are written with tifffile itself (OME, ImageJ, plain) in ``tmp_path``;
real stacks come from the shared data folder (skipped when absent).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from medldm.errors import (
    DataNotFoundError,
    InvalidInputError,
    OutputExistsError,
    UnsupportedFormatError,
)
from medldm.io.image import MedImage
from medldm.io.microscopy import read_microscopy, write_tiff

#: tifffile axes -> the MedImage axes they read as.
AXES_CASES = {
    "ZYX": ("x", "y", "z"),
    "TYX": ("x", "y", "t"),
    "CYX": ("x", "y", "c"),
    "TZCYX": ("x", "y", "z", "c", "t"),
}


def _stack(tiff_axes: str, dtype=np.uint16) -> np.ndarray:
    sizes = {"T": 3, "Z": 4, "C": 2, "Y": 5, "X": 6}
    shape = tuple(sizes[a] for a in tiff_axes)
    return np.arange(np.prod(shape)).reshape(shape).astype(dtype)


def _as_medimage_order(data: np.ndarray, tiff_axes: str) -> np.ndarray:
    order = [tiff_axes.index(a) for a in "XYZCT" if a in tiff_axes]
    return np.transpose(data, order)


# --- reading files written by tifffile ---------------------------------------------------
@pytest.mark.parametrize("tiff_axes", list(AXES_CASES))
def test_tiff_ome_axes_and_pixel_sizes_are_read(tmp_path, tiff_axes):
    data = _stack(tiff_axes)
    path = tmp_path / "s.ome.tif"
    meta = {"axes": tiff_axes, "PhysicalSizeX": 325.0, "PhysicalSizeXUnit": "nm"}
    meta.update({"PhysicalSizeY": 0.325, "PhysicalSizeZ": 2.0})  # default unit µm
    tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata=meta)
    img = read_microscopy(path)
    assert img.axes == AXES_CASES[tiff_axes]
    np.testing.assert_array_equal(img.array, _as_medimage_order(data, tiff_axes))
    assert img.metadata["format"] == "ome-tiff"
    assert img.metadata["tiff_axes"] == tiff_axes
    assert img.metadata["pixel_size_source"] == "ome"
    assert img.metadata["pixel_size_um"]["x"] == pytest.approx(0.325)
    assert img.metadata["pixel_size_um"]["y"] == pytest.approx(0.325)
    assert img.spacing[:2] == pytest.approx((0.000325, 0.000325))  # mm
    if "z" in img.axes:
        assert img.spacing[2] == pytest.approx(0.002)
    assert (img.modality, img.unit) == ("OT", "counts")
    assert img.metadata["warnings"] == []


@pytest.mark.parametrize("tiff_axes", list(AXES_CASES))
def test_tiff_imagej_axes_and_pixel_sizes_are_read(tmp_path, tiff_axes):
    data = _stack(tiff_axes, np.float32)
    path = tmp_path / "ij.tif"
    meta = {"axes": tiff_axes, "unit": "micron", "spacing": 1.5, "finterval": 4.0}
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.2, 1 / 0.25), metadata=meta)
    img = read_microscopy(path)
    assert img.axes == AXES_CASES[tiff_axes]
    np.testing.assert_array_equal(img.array, _as_medimage_order(data, tiff_axes))
    sizes = img.metadata["pixel_size_um"]
    assert (sizes["x"], sizes["y"]) == (pytest.approx(0.2), pytest.approx(0.25))
    if "z" in img.axes:
        assert sizes["z"] == pytest.approx(1.5)
    assert img.metadata["pixel_size_source"] == "imagej"
    assert img.metadata["time_interval_s"] == pytest.approx(4.0)
    assert img.unit == "unknown"  # float data


def test_tiff_resolution_tag_in_centimetres_gives_pixel_size(tmp_path):
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, _stack("YX"), resolution=(20000, 20000), resolutionunit="CENTIMETER")
    img = read_microscopy(path)
    assert img.metadata["pixel_size_um"] == {"x": pytest.approx(0.5), "y": pytest.approx(0.5)}
    assert img.metadata["pixel_size_source"] == "tiff-resolution"


def test_tiff_dpi_resolution_is_used_with_a_warning(tmp_path):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, _stack("YX"), resolution=(72, 72), resolutionunit="INCH")
    img = read_microscopy(path)
    assert img.metadata["pixel_size_um"]["x"] == pytest.approx(25400 / 72)
    assert any("dots-per-inch" in w for w in img.metadata["warnings"])


def test_tiff_without_pixel_size_assumes_1um_and_warns(tmp_path):
    path = tmp_path / "bare.tif"
    tifffile.imwrite(path, _stack("YX"))
    img = read_microscopy(path)
    assert img.spacing == pytest.approx((0.001, 0.001))
    assert any("pixel size unknown, assumed 1 µm" in w for w in img.metadata["warnings"])


@pytest.mark.parametrize(("stack_axis", "axes"), [("z", ("x", "y", "z")), ("t", ("x", "y", "t"))])
def test_tiff_generic_page_stack_goes_to_stack_axis(tmp_path, stack_axis, axes):
    path = tmp_path / "pages.tif"
    pages = np.zeros((7, 5, 6), np.uint16)  # (3 or 4 pages would look like RGB samples)
    tifffile.imwrite(path, pages)  # no axes metadata: tifffile calls the stack "Q"
    img = read_microscopy(path, stack_axis=stack_axis)
    assert img.metadata["tiff_axes"][0] in "IQ"
    assert img.axes == axes
    assert any("unspecified stack" in w for w in img.metadata["warnings"])


def test_tiff_rgb_samples_become_channel_axis(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    img = read_microscopy(path)
    assert img.axes == ("x", "y", "c")
    np.testing.assert_array_equal(img.array, rgb.transpose(1, 0, 2))


def test_tiff_second_series_is_selectable(tmp_path):
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(_stack("YX"), metadata={"axes": "YX", "PhysicalSizeX": 1.0})
        tif.write(_stack("ZYX"), metadata={"axes": "ZYX", "PhysicalSizeX": 0.5})
    img = read_microscopy(path, series=1)
    assert img.axes == ("x", "y", "z") and img.metadata["n_series"] == 2
    assert img.metadata["pixel_size_um"]["x"] == pytest.approx(0.5)
    with pytest.raises(InvalidInputError, match="has 2 series"):
        read_microscopy(path, series=2)


# --- writing ------------------------------------------------------------------------------
def _image(tiff_axes: str, dtype=np.uint16, sizes_um=(0.3, 0.4, 2.0)) -> MedImage:
    data = _as_medimage_order(_stack(tiff_axes, dtype), tiff_axes)
    axes = AXES_CASES[tiff_axes]
    affine = np.diag([*(s / 1000 for s in sizes_um), 1.0])
    return MedImage(data, affine, axes, metadata={"time_interval_s": 5.0})


@pytest.mark.parametrize(
    ("name", "dtype", "source"),
    [
        ("out.ome.tif", np.uint16, "ome"),
        ("out.tif", np.float32, "imagej"),
        ("out.tiff", np.float64, "medldm"),  # ImageJ cannot hold float64: plain TIFF
    ],
)
@pytest.mark.parametrize("tiff_axes", list(AXES_CASES))
def test_write_tiff_round_trip_keeps_array_axes_and_pixel_sizes(
    tmp_path, name, dtype, source, tiff_axes
):
    image = _image(tiff_axes, dtype)
    path = write_tiff(image, tmp_path / name)
    back = read_microscopy(path)
    assert back.axes == image.axes
    assert back.array.dtype == image.array.dtype
    np.testing.assert_array_equal(back.array, image.array)
    assert back.spacing == pytest.approx(image.spacing, rel=1e-6)
    np.testing.assert_allclose(back.affine[:2], image.affine[:2], rtol=1e-6)
    assert back.metadata["pixel_size_source"] == source
    if "t" in image.axes:
        assert back.metadata["time_interval_s"] == pytest.approx(5.0)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == tiff_axes
        assert tif.is_ome == (source == "ome")
        assert tif.is_imagej == (source == "imagej")


def test_write_tiff_ome_flag_overrides_the_name(tmp_path):
    path = write_tiff(_image("ZYX"), tmp_path / "plain_name.tif", ome=True)
    assert read_microscopy(path).metadata["format"] == "ome-tiff"


def test_write_tiff_of_2d_image(tmp_path):
    image = MedImage(np.arange(30, dtype=np.uint8).reshape(6, 5), np.diag([5e-4, 5e-4, 1, 1]))
    back = read_microscopy(write_tiff(image, tmp_path / "flat.tif"))
    assert back.axes == ("x", "y")
    np.testing.assert_array_equal(back.array, image.array)
    assert back.spacing == pytest.approx((5e-4, 5e-4))


def test_write_tiff_warns_that_rotation_is_lost(tmp_path):
    affine = np.array([[0, -1e-3, 0, 0], [1e-3, 0, 0, 0], [0, 0, 1e-3, 0], [0, 0, 0, 1]])
    image = MedImage(np.zeros((4, 4, 2), np.uint8), affine)
    with pytest.warns(UserWarning, match="rotation"):
        write_tiff(image, tmp_path / "rot.tif")


def test_write_tiff_refuses_to_overwrite_unless_asked(tmp_path):
    path = write_tiff(_image("ZYX"), tmp_path / "a.tif")
    with pytest.raises(OutputExistsError):
        write_tiff(_image("CYX"), path)
    assert read_microscopy(path).axes == ("x", "y", "z")
    write_tiff(_image("CYX"), path, overwrite=True)
    assert read_microscopy(path).axes == ("x", "y", "c")


def test_write_tiff_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken_imwrite(filename, *args, **kwargs):
        Path(filename).write_bytes(b"II*\x00 partial")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken_imwrite)
    with pytest.raises(OSError, match="disk full"):
        write_tiff(_image("ZYX"), tmp_path / "a.ome.tif")
    assert os.listdir(tmp_path) == []


def test_write_tiff_rejects_other_suffixes(tmp_path):
    with pytest.raises(InvalidInputError, match=r"\.tif"):
        write_tiff(_image("ZYX"), tmp_path / "a.nii")


# --- broken and foreign files ------------------------------------------------------------
def test_tiff_missing_file_raises_data_not_found(tmp_path):
    with pytest.raises(DataNotFoundError):
        read_microscopy(tmp_path / "absent.tif")


def test_tiff_random_bytes_raise_unsupported_format_naming_the_file(tmp_path):
    path = tmp_path / "noise.tif"
    path.write_bytes(np.random.default_rng(1).bytes(3000))
    with pytest.raises(UnsupportedFormatError) as info:
        read_microscopy(path)
    assert info.value.path == path and isinstance(info.value, InvalidInputError)


@pytest.mark.parametrize("kind", ["imagej", "ome", "plain"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])  # in an IFD, in pixels, in the last IFD
def test_tiff_truncated_file_raises_invalid_input(tmp_path, kind, keep):
    full = tmp_path / "full.tif"
    data = _stack("ZYX")
    if kind == "imagej":
        tifffile.imwrite(full, data, imagej=True, metadata={"axes": "ZYX"})
    elif kind == "ome":
        tifffile.imwrite(full, data, ome=True, metadata={"axes": "ZYX"})
    else:
        tifffile.imwrite(full, data, photometric="minisblack", metadata={"axes": "ZYX"})
    whole = full.read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(InvalidInputError) as info:
        read_microscopy(path)
    assert info.value.path == path


def test_tiff_size_limit_refuses_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, _stack("ZYX"), photometric="minisblack")  # 240 bytes

    def no_read(*args, **kwargs):
        raise AssertionError("pixels read despite the size limit")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", no_read)
    with pytest.raises(InvalidInputError, match="above the limit"):
        read_microscopy(path, max_bytes=100)
    monkeypatch.setenv("MEDLDM_MAX_IMAGE_BYTES", "100")
    with pytest.raises(InvalidInputError, match="above the limit"):
        read_microscopy(path)


# --- real data ------------------------------------------------------------------------------
def test_bead_stack_pixel_sizes_from_imagej_metadata(microscopy_dir):
    img = read_microscopy(microscopy_dir / "Bead_Image1_crop.tif")
    assert img.axes == ("x", "y", "z") and img.array.shape == (150, 150, 41)
    assert img.array.dtype == np.uint8 and img.unit == "counts"
    sizes = img.metadata["pixel_size_um"]  # ImageJ: 44.46 px per µm, spacing 0.125 µm
    assert sizes["x"] == pytest.approx(1 / 44.460534)
    assert sizes["z"] == pytest.approx(0.125)
    assert img.spacing[2] == pytest.approx(0.000125)


def test_cell_painting_channels_are_channel_axis(microscopy_dir):
    img = read_microscopy(microscopy_dir / "IXMtest_A02_s9.tif")
    assert img.axes == ("x", "y", "c") and img.array.shape == (695, 395, 3)
    with tifffile.TiffFile(microscopy_dir / "IXMtest_A02_s9.tif") as tif:
        np.testing.assert_array_equal(img.array[:, :, 1], tif.asarray()[1].T)


def test_time_lapse_read_with_stack_axis_t(microscopy_dir):
    img = read_microscopy(microscopy_dir / "membrane_2d_timelapse.tif", stack_axis="t")
    assert img.axes == ("x", "y", "t") and img.array.shape == (256, 256, 5)


def test_psf_with_nan_raises_by_default_with_count_and_fix(microscopy_dir):
    path = microscopy_dir / "psf.tif"
    with pytest.raises(InvalidInputError, match=r"\d+ of 922500 voxels are NaN or Inf") as info:
        read_microscopy(path)
    assert info.value.path == path
    assert "nan_policy='zero'" in info.value.fix


def test_psf_with_nan_policy_zero_is_finite(microscopy_dir):
    img = read_microscopy(microscopy_dir / "psf.tif", nan_policy="zero")
    assert np.isfinite(img.array).all()
    assert any("replaced by 0" in w for w in img.metadata["warnings"])


def test_every_shared_microscopy_file_reads_without_tifffile_complaints(microscopy_dir):
    for path in sorted(microscopy_dir.glob("*.tif")):
        img = read_microscopy(path, nan_policy="ignore")
        assert img.n_spatial >= 2, path
        assert not any(w.startswith("tifffile:") for w in img.metadata["warnings"]), path
