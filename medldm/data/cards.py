"""Data cards: what each dataset is, where it lives, how it is split and normalised.

The cards are YAML files shipped with the package in ``medldm/data/cards/`` (one per
dataset); ``data_cards/README.md`` at the repository root is their human-readable index
with the licence attributions. Field meanings are documented there and in
:class:`DataCard`.

Example
-------
>>> card = load_card("ixi_t1")
>>> card.folder, card.licence
('ixi_t1', 'CC BY-SA 3.0')
>>> len(card.split["train"]), len(card.split["validation"]), len(card.split["test"])
(28, 3, 3)
>>> "mednist" in list_cards()
True
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medldm.data.normalize import Normalizer, normalizer_from_dict
from medldm.errors import DataNotFoundError, InvalidInputError

#: Split names, in order. A card may also list ``exclude``: files kept out of every split.
SPLITS = ("train", "validation", "test")
EXCLUDE = "exclude"


@dataclass(frozen=True)
class DataCard:
    """One dataset's card (see ``data_cards/README.md`` for every field).

    ``split`` holds either explicit case lists (``train``/``validation``/``test`` and
    optionally ``exclude``) or, for MedNIST, ``fractions`` applied per class to
    contiguous index blocks; ``split["rule"]`` says the rule in words. ``normalization``
    holds the arguments of a :mod:`medldm.data.normalize` normaliser plus ``scope`` and
    ``description``.
    """

    id: str
    title: str
    folder: str
    description: str
    source: str
    url: str
    licence: str
    licence_url: str
    attribution: str
    modality: str
    file_patterns: list[str]
    shape: list[int] | str
    dtype: str
    intensity_units: str
    split: dict[str, Any]
    normalization: dict[str, Any]
    spacing_mm: list[float] | None = None
    classes: dict[str, int] | None = None
    files: dict[str, dict[str, Any]] | None = None
    path: Path | None = field(default=None, compare=False)

    def normalizer(self) -> Normalizer:
        """The card's intensity normaliser (fit it per image/volume as ``scope`` says)."""
        return normalizer_from_dict(self.normalization)

    def split_cases(self, split: str) -> list[str]:
        """Explicit case list of ``split`` (empty for fraction-based splits)."""
        check_split(split)
        return list(self.split.get(split, []))


def check_split(split: str) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`, else raise InvalidInputError."""
    if split not in SPLITS:
        raise InvalidInputError(f"unknown split {split!r}", fix=f"use one of {list(SPLITS)}")
    return split


def _cards_dir() -> Path:
    return Path(str(resources.files("medldm.data").joinpath("cards")))


def list_cards() -> list[str]:
    """Ids of the cards shipped with medldm, sorted."""
    return sorted(p.stem for p in _cards_dir().glob("*.yaml"))


def load_card(id_or_path: str | os.PathLike[str]) -> DataCard:
    """Load and validate a card by id (``"ixi_t1"``) or by the path of a YAML file.

    Raises
    ------
    DataNotFoundError
        Unknown id (the message lists the known ids) or missing file.
    InvalidInputError
        The YAML does not describe a valid card (missing or unknown fields, overlapping
        splits, an unknown normalisation method...).
    """
    text = os.fspath(id_or_path)
    is_path = isinstance(id_or_path, os.PathLike) or text.endswith((".yaml", ".yml"))
    if is_path or os.sep in text or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise DataNotFoundError("data card file not found", path=path, fix="check the path")
    else:
        path = _cards_dir() / f"{text}.yaml"
        if not path.is_file():
            raise DataNotFoundError(
                f"unknown dataset id {text!r}; known ids: {', '.join(list_cards())}",
                fix="use one of the known ids, or pass the path of a card YAML file",
            )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise InvalidInputError(f"data card is not valid YAML: {err}", path=path) from err
    return card_from_dict(data, path=path)


def card_from_dict(data: Any, path: Path | None = None) -> DataCard:
    """Validate a parsed card mapping and build a :class:`DataCard`."""
    if not isinstance(data, dict):
        raise InvalidInputError("a data card must be a YAML mapping", path=path)
    names = {f.name for f in fields(DataCard)} - {"path"}
    required = {f.name for f in fields(DataCard) if f.default is not None and f.name != "path"}
    missing = sorted(required - set(data))
    unknown = sorted(set(data) - names)
    if missing or unknown:
        raise InvalidInputError(
            f"data card has missing fields {missing} and unknown fields {unknown}",
            path=path,
            fix="see data_cards/README.md for the card fields",
        )
    if path is not None and data["id"] != path.stem:
        raise InvalidInputError(
            f"card id {data['id']!r} differs from its file name {path.name!r}",
            path=path,
            fix="name the file <id>.yaml",
        )
    _check_split(data, path)
    try:
        normalizer_from_dict(data["normalization"])
    except InvalidInputError as err:
        raise InvalidInputError(f"bad normalization block: {err.message}", path=path) from err
    return DataCard(**data, path=path)


def _check_split(data: dict[str, Any], path: Path | None) -> None:
    split = data["split"]
    if not isinstance(split, dict) or "rule" not in split:
        raise InvalidInputError("split must be a mapping with a 'rule'", path=path)
    if "fractions" in split:
        fractions = split["fractions"]
        if set(fractions) != set(SPLITS) or abs(sum(fractions.values()) - 1.0) > 1e-9:
            raise InvalidInputError(
                f"split fractions {fractions} must give {list(SPLITS)} and sum to 1",
                path=path,
            )
        if not data.get("classes"):
            raise InvalidInputError("fraction splits need a 'classes' block", path=path)
        return
    seen: dict[str, str] = {}
    for name in (*SPLITS, EXCLUDE):
        for case in split.get(name) or []:
            if case in seen:
                raise InvalidInputError(
                    f"case {case!r} is in both {seen[case]!r} and {name!r}",
                    path=path,
                    fix="put every case in exactly one split",
                )
            seen[case] = name
    if not any(split.get(name) for name in SPLITS):
        raise InvalidInputError(f"split lists no cases in {list(SPLITS)}", path=path)
