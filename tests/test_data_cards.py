"""Data cards: load and validate; the README index and the YAML files agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from medldm.data.cards import SPLITS, DataCard, list_cards, load_card
from medldm.data.normalize import FixedRangeNormalizer, PercentileNormalizer
from medldm.errors import DataNotFoundError, InvalidInputError

REPO = Path(__file__).resolve().parents[1]
README = REPO / "data_cards" / "README.md"
CARDS_DIR = REPO / "medldm" / "data" / "cards"
EXPECTED_IDS = ["brain_mri_native", "dicom_qa", "ixi_t1", "mednist", "microscopy"]


def test_every_shipped_card_loads_and_validates():
    assert list_cards() == EXPECTED_IDS
    for card_id in EXPECTED_IDS:
        card = load_card(card_id)
        assert isinstance(card, DataCard)
        assert card.id == card_id and card.folder == card_id
        assert card.licence and card.attribution and card.url.startswith("https://")


def test_readme_index_and_card_files_agree():
    text = README.read_text(encoding="utf-8")
    index = text.split("## Index", 1)[1].split("\n## ", 1)[0]
    linked = set(re.findall(r"medldm/data/cards/(\w+)\.yaml", text))
    listed = set(re.findall(r"^\| `(\w+)` \|", index, flags=re.MULTILINE))
    on_disk = {p.stem for p in CARDS_DIR.glob("*.yaml")}
    assert linked == on_disk == listed == set(list_cards())


def test_readme_carries_each_licence():
    text = README.read_text(encoding="utf-8")
    for card_id in list_cards():
        assert load_card(card_id).licence.split(" (")[0].split(";")[0] in text
    for needle in [
        "https://brain-development.org/ixi-dataset/",
        "Bradley J. Erickson",
        "BSD 2",
        "Lesjak",
    ]:
        assert needle in text


def test_card_normalisers_match_the_conventions():
    assert load_card("ixi_t1").normalizer() == PercentileNormalizer(0.5, 99.5)
    assert load_card("mednist").normalizer() == FixedRangeNormalizer(0.0, 255.0)
    assert load_card("microscopy").normalizer() == PercentileNormalizer(0.1, 99.9)


def test_ixi_card_split_is_28_3_3_in_sorted_subject_order():
    split = load_card("ixi_t1").split
    ordered = split["train"] + split["validation"] + split["test"]
    assert [len(split[s]) for s in SPLITS] == [28, 3, 3]
    assert ordered == sorted(ordered) and len(set(ordered)) == 34


def test_unknown_id_error_lists_known_ids():
    with pytest.raises(DataNotFoundError) as info:
        load_card("brats")
    for card_id in EXPECTED_IDS:
        assert card_id in str(info.value)


def test_card_loads_from_a_path_and_missing_path_raises(tmp_path):
    assert load_card(CARDS_DIR / "mednist.yaml") == load_card("mednist")
    with pytest.raises(DataNotFoundError):
        load_card(tmp_path / "nope.yaml")


def _write_card(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((CARDS_DIR / "ixi_t1.yaml").read_text(encoding="utf-8"))
    data.update(changes)
    path = tmp_path / f"{data['id']}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_card_with_missing_or_unknown_field_raises(tmp_path):
    path = _write_card(tmp_path, licenze="CC0")
    with pytest.raises(InvalidInputError, match="unknown fields \\['licenze'\\]"):
        load_card(path)


def test_card_with_overlapping_splits_raises(tmp_path):
    split = load_card("ixi_t1").split | {"test": ["IXI012"]}
    with pytest.raises(InvalidInputError, match="IXI012"):
        load_card(_write_card(tmp_path, split=split))


def test_card_with_unknown_normalisation_raises(tmp_path):
    with pytest.raises(InvalidInputError, match="normalization"):
        load_card(_write_card(tmp_path, normalization={"method": "zscore"}))


def test_card_id_must_match_file_name(tmp_path):
    path = _write_card(tmp_path)
    renamed = path.rename(tmp_path / "other.yaml")
    with pytest.raises(InvalidInputError, match="differs from its file name"):
        load_card(renamed)


# --- against the real data ---------------------------------------------------------------
def test_card_folders_exist_in_the_data_root(data_root):
    for card_id in list_cards():
        assert (data_root / load_card(card_id).folder).is_dir(), card_id


def test_ixi_split_lists_are_the_sorted_rule_applied_to_the_files(data_root):
    card = load_card("ixi_t1")
    files = sorted((data_root / card.folder).glob(card.file_patterns[0]))
    ids = sorted(f.name.split("-")[0] for f in files)
    assert ids[:28] == card.split["train"]
    assert ids[28:31] == card.split["validation"]
    assert ids[31:] == card.split["test"]


def test_every_microscopy_file_is_in_exactly_one_split_or_excluded(data_root):
    card = load_card("microscopy")
    on_disk = sorted(p.name for p in (data_root / card.folder).glob("*.tif"))
    listed = [n for key in (*SPLITS, "exclude") for n in card.split.get(key, [])]
    assert sorted(listed) == on_disk == sorted(card.files)


def test_every_dicom_qa_case_exists(data_root):
    card = load_card("dicom_qa")
    assert card.split["train"] == card.split["validation"] == []
    for case in card.split["test"]:
        assert (data_root / card.folder / case).exists(), case


def test_mednist_card_counts_match_the_files(data_root):
    from medldm.data.datasets import _npz_images_shape

    card = load_card("mednist")
    for name, count in (card.classes or {}).items():
        assert _npz_images_shape(data_root / card.folder / f"{name}.npz") == (count, 64, 64)
