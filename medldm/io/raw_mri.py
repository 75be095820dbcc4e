"""Reading measured MRI raw data: Cartesian k-space and what the file says about its grid.

One function, :func:`read_raw_kspace`, reads five formats into one record,
:class:`RawKSpace` (k-space ``complex64 (coils, rows, cols)`` of one 2D slice, the pixel
spacing in mm, the sampling mask when the file has one, and the file's metadata):

====================  ==========================================================================
format                what is read
====================  ==========================================================================
``.npy``              a complex array ``(rows, cols)`` (one coil), ``(coils, rows, cols)`` or
                      ``(slices, coils, rows, cols)``, centred; no geometry (1 mm assumed)
``.cfl`` + ``.hdr``   BART: dims ``[x, y, z, coils, ...]`` (column-major); ``rows = x`` (dim 0,
                      the readout), ``cols = y`` (dim 1, phase encoding); no geometry
``.dat``              Siemens twix (VB or VD/VE, multi-raid) via ``twixtools``: the last
                      measurement (the image scan), its imaging lines ``rows = lines (ky)``,
                      ``cols = samples (kx)``; readout oversampling removed where the header's
                      factor matches the samples per line; spacing = FOV / matrix
``.h5`` (ISMRMRD)     an ISMRMRD dataset (``/dataset/data`` + ``/dataset/xml``) via ``ismrmrd``:
                      rows = ``kspace_encode_step_1``, cols = samples; oversampling removed when
                      the encoded matrix is a multiple of the reconstructed one
``.h5`` (fastMRI)     a ``kspace`` dataset ``(slices, rows, cols)`` (single-coil) or
                      ``(slices, coils, rows, cols)`` (multi-coil), its ``mask`` if present and
                      spacing from its ``ismrmrd_header`` (readout oversampling removed as above)
====================  ==========================================================================

Conventions: k-space is centred (DC at index ``n // 2`` of each axis, as
:func:`medldm.physics.mri.fftnc` places it); averages are summed over; a file with several
slices gives one slice per call (``slice_index``, default the central one). Without
geometry in the file, pixels are taken as 1 mm and the record says so
(``spacing_from_file=False``). ``phase_encode_axis`` (0 = rows, 1 = columns, ``None`` =
unknown) tells along which axis whole lines are acquired, so that retrospective line masks
can be drawn the way the scanner would have.

Example
-------
>>> import tempfile, pathlib
>>> import numpy as np
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> kspace = np.zeros((4, 16, 12), np.complex64); kspace[:, ::2] = 1 + 1j
>>> np.save(folder / "k.npy", kspace)
>>> raw = read_raw_kspace(folder / "k.npy")
>>> raw.kspace.shape, raw.spacing_mm, raw.spacing_from_file
((4, 16, 12), (1.0, 1.0), False)
>>> int(sampling_mask_from_zeros(raw.kspace).sum())  # 8 of 16 rows x 12 columns
96
>>> _ = write_cfl(folder / "k", kspace.transpose(1, 2, 0)[:, :, None])  # BART [x, y, z, coils]
>>> read_raw_kspace(folder / "k.cfl").kspace.shape
(4, 16, 12)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medldm.errors import InvalidInputError, UnsupportedFormatError

#: The file name endings :func:`read_raw_kspace` understands.
RAW_SUFFIXES = (".npy", ".cfl", ".hdr", ".dat", ".h5", ".hdf5", ".mrd")


@dataclass
class RawKSpace:
    """Measured Cartesian k-space of one 2D slice and what its file says about it.

    Attributes
    ----------
    kspace:
        ``complex64 (coils, rows, cols)``, centred (one coil: ``coils = 1``); unsampled
        locations are exactly zero.
    spacing_mm:
        Pixel spacing ``(rows, cols)`` in mm of the image ``ifft2c(kspace)``.
    spacing_from_file:
        ``True`` when the spacing comes from the file's header, ``False`` when 1 mm was
        assumed.
    phase_encode_axis:
        0 (rows) or 1 (columns): the axis along which whole lines were acquired; ``None``
        when the file does not say.
    mask:
        The file's own sampling mask ``(rows, cols)`` (fastMRI's ``mask``), else ``None``.
    format:
        ``"npy"``, ``"bart-cfl"``, ``"siemens-twix"``, ``"ismrmrd"`` or ``"fastmri-h5"``.
    path:
        The file read.
    slice_index, n_slices:
        Which slice of the file this is, and how many it holds.
    metadata:
        What the header says (protocol, field strength, FOV, slice thickness, ...).
    notes:
        What was done while reading (oversampling removed, averages summed, ...), in words.
    """

    kspace: np.ndarray
    spacing_mm: tuple[float, float]
    spacing_from_file: bool
    phase_encode_axis: int | None
    format: str
    path: Path
    mask: np.ndarray | None = None
    slice_index: int = 0
    n_slices: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_coils(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the k-space matrix."""
        return (int(self.kspace.shape[1]), int(self.kspace.shape[2]))

    def describe(self) -> str:
        """One sentence for logs and reports."""
        rows, cols = self.shape
        spacing = f"{self.spacing_mm[0]:.3g}x{self.spacing_mm[1]:.3g} mm"
        spacing += " (from the file)" if self.spacing_from_file else " (ASSUMED: not in the file)"
        where = f", slice {self.slice_index + 1} of {self.n_slices}" if self.n_slices > 1 else ""
        return (
            f"{self.format} k-space {rows}x{cols}, {self.n_coils} coil(s){where}, pixels {spacing}"
        )


# --- public helpers ---------------------------------------------------------------------
def sampling_mask_from_zeros(kspace: np.ndarray) -> np.ndarray:
    """``(rows, cols)`` bool: where any coil holds a non-zero value (a sampled location).

    ``kspace`` is ``(rows, cols)`` or ``(coils, rows, cols)``. Unsampled k-space is stored
    as exact zeros by every format read here; a measured sample is never exactly ``0+0j``
    in practice (receiver noise).
    """
    kspace = np.asarray(kspace)
    if kspace.ndim == 2:
        return kspace != 0
    return np.any(kspace != 0, axis=0)


def remove_readout_oversampling(kspace: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Crop the readout field of view by ``factor`` (2 on Siemens scanners): inverse FFT
    along the readout ``axis``, keep the central ``n / factor`` image samples, FFT back.
    The k-space sample spacing widens by ``factor``; the pixel spacing is unchanged."""
    n = kspace.shape[axis]
    keep = n // int(factor)
    shifted = np.fft.ifftshift(kspace, axes=axis)
    image = np.fft.fftshift(np.fft.ifft(shifted, axis=axis, norm="ortho"), axes=axis)
    start = (n - keep + 1) // 2
    image = np.take(image, np.arange(start, start + keep), axis=axis)
    out = np.fft.fftshift(
        np.fft.fft(np.fft.ifftshift(image, axes=axis), axis=axis, norm="ortho"), axes=axis
    )
    # the orthonormal FFT keeps energy per sample: rescale so image values are unchanged
    return (out * math.sqrt(n / keep)).astype(np.complex64)


def write_cfl(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as BART ``<path>.cfl`` / ``<path>.hdr`` (complex64, column-major,
    dims as given: ``[x, y, z, coils, ...]``). Returns the ``.cfl`` path."""
    base = _cfl_base(Path(path))
    array = np.asarray(array, np.complex64)
    dims = list(array.shape) + [1] * max(0, 16 - array.ndim)
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    np.asfortranarray(array).ravel(order="F").tofile(base.with_suffix(".cfl"))
    return base.with_suffix(".cfl")


def read_raw_kspace(path: str | Path, slice_index: int | None = None) -> RawKSpace:
    """Read measured k-space of one slice from ``path`` (see the module for the formats).

    Parameters
    ----------
    path:
        A ``.npy``, BART ``.cfl``/``.hdr`` (either name), Siemens twix ``.dat``, ISMRMRD or
        fastMRI ``.h5``.
    slice_index:
        For files with several slices: which one (default: the central slice).

    Raises
    ------
    InvalidInputError
        The file is missing, truncated, not complex, or its layout is not Cartesian 2D; the
        message names the file and the fix.
    """
    path = Path(path).expanduser()
    name = path.name.lower()
    if name.endswith((".cfl", ".hdr")):
        return _read_cfl(path, slice_index)
    if not path.is_file():
        raise InvalidInputError(
            "k-space file not found",
            path=path,
            fix="give kspace=<.npy | .cfl | twix .dat | ISMRMRD or fastMRI .h5>",
        )
    if name.endswith(".npy"):
        return _read_npy(path, slice_index)
    if name.endswith(".dat"):
        return _read_twix(path, slice_index)
    if name.endswith((".h5", ".hdf5", ".mrd")):
        return _read_hdf5(path, slice_index)
    raise UnsupportedFormatError(
        f"unknown k-space file type {path.suffix!r}",
        path=path,
        fix=f"use one of {', '.join(RAW_SUFFIXES)} (convert other formats to .npy: a complex "
        "array (coils, rows, cols), centred)",
    )


# --- shared steps -----------------------------------------------------------------------
def _choose_slice(n_slices: int, slice_index: int | None, path: Path) -> int:
    if slice_index is None:
        return n_slices // 2
    index = int(slice_index)
    if not 0 <= index < n_slices:
        raise InvalidInputError(
            f"slice {index} requested, the file holds {n_slices} slice(s)",
            path=path,
            fix=f"give a slice index from 0 to {n_slices - 1}",
        )
    return index


def _checked(kspace: np.ndarray, path: Path) -> np.ndarray:
    if not np.iscomplexobj(kspace):
        raise InvalidInputError(
            f"k-space must be complex, got {kspace.dtype} {kspace.shape}",
            path=path,
            fix="save the complex k-space (real and imaginary parts), not a magnitude image",
        )
    kspace = np.array(kspace, dtype=np.complex64, order="C")  # a copy: the file stays read-only
    if not np.all(np.isfinite(kspace)):
        raise InvalidInputError(
            "k-space contains NaN/Inf", path=path, fix="store unsampled points as exact zeros"
        )
    if kspace.ndim != 3 or min(kspace.shape[1:]) < 2:
        raise InvalidInputError(
            f"k-space of shape {kspace.shape} is not (coils, rows, cols) of a 2D slice",
            path=path,
        )
    if not np.any(kspace != 0):
        raise InvalidInputError("k-space is all zeros", path=path, fix="check the file")
    return kspace


def _assumed_spacing_note() -> str:
    return "the file has no geometry: 1 mm pixels assumed"


# --- .npy ---------------------------------------------------------------------------------
def _read_npy(path: Path, slice_index: int | None) -> RawKSpace:
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        raise InvalidInputError(
            f"cannot read k-space: {error}",
            path=path,
            fix="save it with numpy.save (a complex array, no pickles)",
        ) from error
    n_slices, index = 1, 0
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 4:
        n_slices = array.shape[0]
        index = _choose_slice(n_slices, slice_index, path)
        array = array[index]
    elif array.ndim != 3:
        raise InvalidInputError(
            f"a .npy k-space must be (rows, cols), (coils, rows, cols) or "
            f"(slices, coils, rows, cols); got shape {array.shape}",
            path=path,
        )
    kspace = _checked(np.asarray(array), path)
    return RawKSpace(
        kspace,
        (1.0, 1.0),
        False,
        None,
        "npy",
        path,
        slice_index=index,
        n_slices=n_slices,
        notes=[_assumed_spacing_note()],
    )


# --- BART .cfl/.hdr -----------------------------------------------------------------------
def _cfl_base(path: Path) -> Path:
    return path.with_suffix("") if path.suffix.lower() in (".cfl", ".hdr") else path


def _read_cfl(path: Path, slice_index: int | None) -> RawKSpace:
    base = _cfl_base(path)
    header, data_file = base.with_suffix(".hdr"), base.with_suffix(".cfl")
    for needed in (header, data_file):
        if not needed.is_file():
            raise InvalidInputError(
                f"BART data needs both {header.name} and {data_file.name}; "
                f"{needed.name} is missing",
                path=needed,
                fix="keep the .cfl and .hdr files of one array side by side",
            )
    lines = [
        line.strip() for line in header.read_text(errors="replace").splitlines() if line.strip()
    ]
    try:
        at = lines.index("# Dimensions")
        dims = [int(v) for v in lines[at + 1].split()]
    except (ValueError, IndexError) as error:
        raise InvalidInputError(
            "not a BART header (no '# Dimensions' line followed by integers)",
            path=header,
            fix="write it with BART (or medldm.io.raw_mri.write_cfl)",
        ) from error
    count = math.prod(dims)
    expected = count * np.dtype(np.complex64).itemsize
    if data_file.stat().st_size != expected:
        raise InvalidInputError(
            f"the .cfl holds {data_file.stat().st_size} bytes, the header's dims {dims} need "
            f"{expected}",
            path=data_file,
            fix="the file is truncated or does not belong to this header: rewrite both",
        )
    array = np.fromfile(data_file, np.complex64, count).reshape(dims, order="F")
    extra = [f"dim {i} = {n}" for i, n in enumerate(dims[4:], start=4) if n > 1]
    if extra:
        raise InvalidInputError(
            f"BART array has more than [x, y, z, coils] ({', '.join(extra)})",
            path=data_file,
            fix="select one map/echo/time point first (bart slice <dim> <index> ...)",
        )
    array = array.reshape(dims[:4], order="F")  # [x, y, z, coils]
    n_slices = dims[2]
    index = _choose_slice(n_slices, slice_index, data_file) if n_slices > 1 else 0
    notes = [_assumed_spacing_note()]
    if n_slices > 1:
        # dim 2 of a BART k-space is kz: a 3D acquisition is made 2D by an inverse FFT along z
        hybrid = np.fft.fftshift(
            np.fft.ifft(np.fft.ifftshift(array, axes=2), axis=2, norm="ortho"), axes=2
        )
        array = hybrid[:, :, index : index + 1]
        notes.append(f"3D k-space: inverse FFT along z (dim 2), z slice {index} of {n_slices}")
    kspace = _checked(np.transpose(array[:, :, 0, :], (2, 0, 1)), data_file)
    return RawKSpace(
        kspace,
        (1.0, 1.0),
        False,
        1,
        "bart-cfl",
        data_file,
        slice_index=index,
        n_slices=n_slices,
        notes=notes,
    )


# --- Siemens twix -------------------------------------------------------------------------
def _missing_package(package: str, path: Path) -> InvalidInputError:
    return InvalidInputError(
        f"reading this file needs the Python package {package!r}, which is not installed",
        path=path,
        fix=f"pip install {package} (it is a dependency of medldm: reinstall medldm)",
    )


def _twix_header(hdr: dict[str, Any], *keys: str) -> Any:
    node: Any = hdr
    for key in keys:
        found = (isinstance(node, dict) and key in node) or (
            isinstance(node, list) and isinstance(key, int) and key < len(node)
        )
        if found:
            node = node[key]
        else:
            return None
    return node


def _oversampling_note(factor: float, samples: int, base: int) -> tuple[int, str | None]:
    """``(factor to remove, note)`` for a readout of ``samples`` samples, base resolution
    ``base`` and the header's oversampling ``factor``."""
    if factor and factor > 1 and base and samples == round(factor * base):
        return round(factor), f"readout oversampling x{factor:g} removed ({samples} -> {base})"
    if factor and factor > 1:
        return 1, (
            f"the header gives readout oversampling x{factor:g}, but the lines hold {samples} "
            f"samples for a base resolution of {base}: no oversampling removed"
        )
    return 1, None


def _read_twix(path: Path, slice_index: int | None) -> RawKSpace:
    try:
        import twixtools
    except ImportError as error:
        raise _missing_package("twixtools", path) from error
    try:
        measurements = twixtools.read_twix(str(path), verbose=False)
    except Exception as error:  # twixtools raises bare errors on foreign/truncated files
        raise InvalidInputError(
            f"not a readable Siemens twix file ({type(error).__name__}: {error})",
            path=path,
            fix="give the .dat raw-data file as exported by twix (VB or VD/VE), complete",
        ) from error
    if not measurements:
        raise InvalidInputError("the twix file holds no measurement", path=path)
    scan = measurements[-1]  # multi-raid (VD/VE): the image scan comes last
    hdr = scan.get("hdr", {})
    lines = [mdb for mdb in scan.get("mdb", []) if mdb.is_image_scan()]
    if not lines:
        raise InvalidInputError(
            "the twix image scan holds no imaging lines", path=path, fix="check the file"
        )
    partitions = {mdb.cPar for mdb in lines}
    if len(partitions) > 1:
        raise InvalidInputError(
            f"3D (partition-encoded) twix data ({len(partitions)} partitions) is not supported",
            path=path,
            fix="reconstruct along the partitions first and save one slice's k-space as .npy",
        )
    slices = sorted({mdb.cSlc for mdb in lines})
    index = _choose_slice(len(slices), slice_index, path)
    lines = [mdb for mdb in lines if mdb.cSlc == slices[index]]
    notes: list[str] = []
    if len(measurements) > 1:
        notes.append(
            f"multi-raid file with {len(measurements)} measurements: the last (image scan) read"
        )
    for name, attr in (("echo", "cEco"), ("repetition", "cRep"), ("set", "cSet")):
        values = sorted({getattr(mdb, attr) for mdb in lines})
        if len(values) > 1:
            notes.append(f"{len(values)} {name}s: the first ({values[0]}) is read")
            lines = [mdb for mdb in lines if getattr(mdb, attr) == values[0]]
    samples = {mdb.data.shape[-1] for mdb in lines}
    coils = {mdb.data.shape[0] for mdb in lines}
    if len(samples) != 1 or len(coils) != 1:
        raise InvalidInputError(
            f"imaging lines differ in length {sorted(samples)} or coils {sorted(coils)}",
            path=path,
            fix="non-Cartesian or mixed acquisitions are not supported",
        )
    n_samples, n_coils = samples.pop(), coils.pop()
    kspace_hdr = _twix_header(hdr, "MeasYaps", "sKSpace") or {}
    n_lines = max(int(kspace_hdr.get("lPhaseEncodingLines", 0)), max(m.cLin for m in lines) + 1)
    kspace = np.zeros((n_coils, n_lines, n_samples), np.complex64)
    averages = {mdb.cAve for mdb in lines}
    for mdb in lines:
        kspace[:, mdb.cLin, :] += mdb.data
    if len(averages) > 1:
        notes.append(f"{len(averages)} averages summed")
    base = int(kspace_hdr.get("lBaseResolution", 0) or 0)
    factor = float(
        _twix_header(hdr, "Config", "ReadoutOversamplingFactor")
        or _twix_header(hdr, "Dicom", "flReadoutOSFactor")
        or 1.0
    )
    remove, note = _oversampling_note(factor, n_samples, base)
    if remove > 1:
        kspace = remove_readout_oversampling(kspace, axis=2, factor=remove)
    if note:
        notes.append(note)
    slice_hdr = _twix_header(hdr, "MeasYaps", "sSliceArray", "asSlice", slices[index]) or {}
    phase_fov = slice_hdr.get("dPhaseFOV")
    readout_fov = slice_hdr.get("dReadoutFOV")
    from_file = bool(phase_fov and readout_fov)
    spacing = (
        (float(phase_fov) / kspace.shape[1], float(readout_fov) / kspace.shape[2])
        if from_file
        else (1.0, 1.0)
    )
    if not from_file:
        notes.append("no FOV in the twix header: 1 mm pixels assumed")
    metadata = {
        "protocol": _twix_header(hdr, "MeasYaps", "tProtocolName"),
        "sequence": _twix_header(hdr, "Meas", "tSequenceFileName"),
        "field_strength_t": _twix_header(hdr, "MeasYaps", "sProtConsistencyInfo", "flNominalB0"),
        "patient_position": _twix_header(hdr, "Meas", "tPatientPosition"),
        "fov_mm": [phase_fov, readout_fov],
        "slice_thickness_mm": slice_hdr.get("dThickness"),
        "slice_position": slice_hdr.get("sPosition"),
        "slice_normal": slice_hdr.get("sNormal"),
        "measurements_in_file": len(measurements),
        "readout_oversampling_header": factor,
    }
    return RawKSpace(
        _checked(kspace, path),
        spacing,
        from_file,
        0,
        "siemens-twix",
        path,
        slice_index=index,
        n_slices=len(slices),
        metadata={k: v for k, v in metadata.items() if v is not None},
        notes=notes,
    )


# --- HDF5: ISMRMRD and fastMRI ------------------------------------------------------------
def _read_hdf5(path: Path, slice_index: int | None) -> RawKSpace:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if "kspace" in handle:
                return _read_fastmri(handle, path, slice_index)
            if "dataset" in handle and "data" in handle["dataset"]:
                kind = "ismrmrd"
            else:
                raise UnsupportedFormatError(
                    f"HDF5 file with neither a fastMRI 'kspace' dataset nor an ISMRMRD "
                    f"'/dataset/data' (top level: {sorted(handle.keys())})",
                    path=path,
                    fix="give a fastMRI or ISMRMRD raw-data file, or save the k-space as .npy",
                )
    except OSError as error:
        raise InvalidInputError(
            f"cannot read HDF5: {error}", path=path, fix="check the file is a complete HDF5 file"
        ) from error
    assert kind == "ismrmrd"
    return _read_ismrmrd(path, slice_index)


def _encoding_from_xml(xml: Any, path: Path) -> Any | None:
    """The first ``encoding`` of an ISMRMRD XML header, ``None`` when unparsable."""
    try:
        import ismrmrd
    except ImportError as error:
        raise _missing_package("ismrmrd", path) from error
    try:
        text = xml.decode() if isinstance(xml, bytes) else str(xml)
        header = ismrmrd.xsd.CreateFromDocument(text)
        return header.encoding[0] if header.encoding else None
    except Exception:  # an XML header we cannot parse: no geometry rather than no data
        return None


def _encoded_geometry(
    encoding: Any | None, rows_axis: str, notes: list[str]
) -> tuple[tuple[float, float], bool, int]:
    """``(spacing (rows, cols), from file, readout oversampling factor to remove)`` from an
    ISMRMRD encoding; ``rows_axis`` says which encoded axis the rows are (``"x"`` for
    fastMRI's (readout, phase), ``"y"`` for ISMRMRD's (lines, samples))."""
    if encoding is None:
        notes.append("no ISMRMRD encoding header: 1 mm pixels assumed")
        return (1.0, 1.0), False, 1
    enc, rec = encoding.encodedSpace, encoding.reconSpace
    try:
        spacing_x = float(enc.fieldOfView_mm.x) / float(enc.matrixSize.x)
        spacing_y = float(enc.fieldOfView_mm.y) / float(enc.matrixSize.y)
    except (AttributeError, TypeError, ZeroDivisionError):
        notes.append("incomplete ISMRMRD encoding header: 1 mm pixels assumed")
        return (1.0, 1.0), False, 1
    factor = 1
    try:
        ratio = float(enc.matrixSize.x) / float(rec.matrixSize.x)
        if ratio >= 1.5 and abs(ratio - round(ratio)) < 1e-6:
            factor = round(ratio)
    except (AttributeError, TypeError, ZeroDivisionError):
        factor = 1
    spacing = (spacing_x, spacing_y) if rows_axis == "x" else (spacing_y, spacing_x)
    return spacing, True, factor


def _read_fastmri(handle: Any, path: Path, slice_index: int | None) -> RawKSpace:
    dataset = handle["kspace"]
    if dataset.ndim not in (3, 4):
        raise InvalidInputError(
            f"fastMRI 'kspace' must be (slices, rows, cols) or (slices, coils, rows, cols), "
            f"got {dataset.shape}",
            path=path,
        )
    n_slices = int(dataset.shape[0])
    index = _choose_slice(n_slices, slice_index, path)
    array = np.asarray(dataset[index])
    if array.ndim == 2:
        array = array[None]
    mask = None
    if "mask" in handle:
        line_mask = np.asarray(handle["mask"]).astype(bool).ravel()
        if line_mask.size != array.shape[-1]:
            raise InvalidInputError(
                f"fastMRI mask of {line_mask.size} lines for {array.shape[-1]} columns",
                path=path,
                fix="the file's mask does not fit its k-space: pass mask= explicitly",
            )
        mask = np.broadcast_to(line_mask[None, :], array.shape[-2:]).copy()
    notes: list[str] = []
    xml = handle["ismrmrd_header"][()] if "ismrmrd_header" in handle else None
    encoding = _encoding_from_xml(xml, path) if xml is not None else None
    spacing, from_file, factor = _encoded_geometry(encoding, "x", notes)
    if factor > 1 and array.shape[-2] % factor == 0:
        array = remove_readout_oversampling(array, axis=-2, factor=factor)
        if mask is not None:
            mask = mask[: array.shape[-2]]
        notes.append(f"readout oversampling x{factor} removed (rows, per the header)")
    kspace = _checked(array, path)
    metadata: dict[str, Any] = {
        key: _plain(handle.attrs[key]) for key in handle.attrs if key != "max"
    }
    return RawKSpace(
        kspace,
        spacing,
        from_file,
        1,
        "fastmri-h5",
        path,
        mask=mask,
        slice_index=index,
        n_slices=n_slices,
        metadata=metadata,
        notes=notes,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, str | int | float) else str(value)


def _read_ismrmrd(path: Path, slice_index: int | None) -> RawKSpace:
    try:
        import ismrmrd
    except ImportError as error:
        raise _missing_package("ismrmrd", path) from error
    skip = [
        getattr(ismrmrd, name)
        for name in (
            "ACQ_IS_NOISE_MEASUREMENT",
            "ACQ_IS_NAVIGATION_DATA",
            "ACQ_IS_PHASECORR_DATA",
            "ACQ_IS_DUMMYSCAN_DATA",
            "ACQ_IS_RTFEEDBACK_DATA",
            "ACQ_IS_HPFEEDBACK_DATA",
            "ACQ_IS_PARALLEL_CALIBRATION",
        )
        if hasattr(ismrmrd, name)
    ]
    try:
        dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False, mode="r")
    except Exception as error:
        raise InvalidInputError(
            f"cannot open the ISMRMRD dataset ({error})", path=path, fix="check the file"
        ) from error
    try:
        try:
            xml = dataset.read_xml_header()
        except LookupError:
            xml = None
        acquisitions = [
            dataset.read_acquisition(i) for i in range(dataset.number_of_acquisitions())
        ]
    finally:
        dataset.close()
    imaging = [a for a in acquisitions if not any(a.is_flag_set(flag) for flag in skip)]
    if not imaging:
        raise InvalidInputError(
            "the ISMRMRD dataset holds no imaging acquisitions", path=path, fix="check the file"
        )
    if any(a.traj.size for a in imaging):
        raise InvalidInputError(
            "non-Cartesian ISMRMRD data (acquisitions carry trajectories)",
            path=path,
            fix="only Cartesian k-space is supported: grid it first and save it as .npy",
        )
    if len({a.idx.kspace_encode_step_2 for a in imaging}) > 1:
        raise InvalidInputError(
            "3D ISMRMRD data (several kspace_encode_step_2) is not supported",
            path=path,
            fix="inverse FFT along the partitions and save one slice's k-space as .npy",
        )
    slices = sorted({a.idx.slice for a in imaging})
    index = _choose_slice(len(slices), slice_index, path)
    imaging = [a for a in imaging if a.idx.slice == slices[index]]
    notes: list[str] = []
    for name in ("contrast", "repetition", "set", "phase"):
        values = sorted({getattr(a.idx, name) for a in imaging})
        if len(values) > 1:
            notes.append(f"{len(values)} {name} values: the first ({values[0]}) is read")
            imaging = [a for a in imaging if getattr(a.idx, name) == values[0]]
    shapes = {a.data.shape for a in imaging}
    if len(shapes) != 1:
        raise InvalidInputError(
            f"acquisitions differ in (coils, samples): {sorted(shapes)}",
            path=path,
            fix="mixed acquisitions are not supported",
        )
    n_coils, n_samples = shapes.pop()
    encoding = _encoding_from_xml(xml, path) if xml is not None else None
    n_lines = max(a.idx.kspace_encode_step_1 for a in imaging) + 1
    centre_line = None
    if encoding is not None:
        limits = getattr(encoding, "encodingLimits", None)
        step = getattr(limits, "kspace_encoding_step_1", None) if limits else None
        if step is not None and step.maximum is not None:
            n_lines = max(n_lines, int(step.maximum) + 1)
            centre_line = int(step.center) if step.center is not None else None
    kspace = np.zeros((n_coils, n_lines, n_samples), np.complex64)
    for acquisition in imaging:
        kspace[:, acquisition.idx.kspace_encode_step_1, :] += acquisition.data
    averages = {a.idx.average for a in imaging}
    if len(averages) > 1:
        notes.append(f"{len(averages)} averages summed")
    kspace = _centre_rows(kspace, centre_line, notes)
    spacing, from_file, factor = _encoded_geometry(encoding, "y", notes)
    if factor > 1 and n_samples % factor == 0:
        kspace = remove_readout_oversampling(kspace, axis=2, factor=factor)
        notes.append(f"readout oversampling x{factor} removed (columns, per the header)")
    return RawKSpace(
        _checked(kspace, path),
        spacing,
        from_file,
        0,
        "ismrmrd",
        path,
        slice_index=index,
        n_slices=len(slices),
        notes=notes,
    )


def _centre_rows(kspace: np.ndarray, centre: int | None, notes: list[str]) -> np.ndarray:
    """Zero-pad the lines so that the header's centre line lands at ``n // 2`` (partial
    Fourier acquisitions stop short on one side)."""
    n = kspace.shape[1]
    if centre is None or centre == n // 2 or not 0 < centre < n:
        return kspace
    size = 2 * max(centre, n - centre)
    start = size // 2 - centre
    padded = np.zeros((kspace.shape[0], size, kspace.shape[2]), kspace.dtype)
    padded[:, start : start + n] = kspace
    notes.append(f"partial Fourier: {n} lines zero-filled to {size} around centre line {centre}")
    return padded
