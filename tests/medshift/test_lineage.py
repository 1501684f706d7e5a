"""medshift.lineage: the shipped weights' lineage.json reads, its seeds are consistent, bad files are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medshift.lineage import held_out_seeds, load_lineage, seed_ranges, training_procedure_table, training_seeds

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "medshift-xdigiskull-demo"


def test_the_shipped_lineage_holds_its_heads_out():
    lineage = load_lineage(SHIPPED)
    train = training_seeds(lineage)
    assert train[0] == 1 and 27 in train and len(train) == 24
    assert held_out_seeds(lineage) == [2, 7, 11] and not set(train) & set(held_out_seeds(lineage))
    assert [stage["stage"] for stage in lineage["stages"]] == list(range(1, 9))
    table = training_procedure_table(lineage)
    assert len(table) == 2 + 8 and all(len(line) <= 120 for line in table)


def test_seed_ranges_are_short():
    assert seed_ranges([1, 3, 4, 5, 6, 8, 9, 10, 12, 13]) == "1, 3-6, 8-10, 12-13"
    assert seed_ranges([7]) == "7" and seed_ranges([]) == ""


def test_a_folder_without_lineage_has_none_and_bad_files_are_named(tmp_path):
    assert load_lineage(tmp_path) is None
    (tmp_path / "lineage.json").write_text("{not json")
    with pytest.raises(ValueError, match="lineage.json is not valid JSON"):
        load_lineage(tmp_path)
    (tmp_path / "lineage.json").write_text(json.dumps({"stages": [{"stage": 1}], "validation_seeds": [], "evaluation_seeds": []}))
    with pytest.raises(ValueError, match="stage 1 lacks date, component"):
        load_lineage(tmp_path)
