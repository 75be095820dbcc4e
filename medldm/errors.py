"""Errors raised by medldm.

Every error a user can trigger with bad input derives from :class:`MedLDMError`, names
the file it concerns (when there is one) and says how to fix the problem.

Example
-------
>>> err = InvalidInputError("mixed orientations", path="/data/ct", fix="pick one series")
>>> print(err)
/data/ct: mixed orientations. Fix: pick one series
"""

from __future__ import annotations

from pathlib import Path


class MedLDMError(Exception):
    """Base class of every error medldm raises on purpose.

    Parameters
    ----------
    message:
        What is wrong, in one sentence.
    path:
        The file or folder concerned, if any; it is printed first.
    fix:
        What the user can do about it.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None):
        self.message = message
        self.path = None if path is None else Path(path)
        self.fix = fix
        text = message if self.path is None else f"{self.path}: {message}"
        if fix:
            text = f"{text}. Fix: {fix}"
        super().__init__(text)


class InvalidInputError(MedLDMError, ValueError):
    """An input file or array cannot be used as given (corrupt, inconsistent, unsupported)."""


class UnsupportedFormatError(InvalidInputError):
    """The file is readable but is not an image medldm can use (e.g. a DICOM SR or RTPLAN)."""


class SeriesSelectionError(InvalidInputError):
    """A folder holds several DICOM series and none, or an unknown one, was chosen."""


class OutputExistsError(MedLDMError, FileExistsError):
    """An output file already exists and overwriting was not asked for."""


class DataNotFoundError(MedLDMError, FileNotFoundError):
    """A dataset, file or data root that medldm needs is missing."""
