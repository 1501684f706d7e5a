"""The shipped model card is generated from the weights, lineage.json and evaluation.json: regenerating it
changes nothing, and its lines fit 120 characters."""

from __future__ import annotations

import shutil
from pathlib import Path

from medshift import MedShiftPipeline
from medshift.model_card import write_model_card, wrap_prose

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "medshift-xdigiskull-demo"


def test_the_shipped_card_is_the_generated_one(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(SHIPPED, copy)
    card = write_model_card(MedShiftPipeline.from_pretrained(copy), copy).read_text(encoding="utf-8")
    assert card == (SHIPPED / "README.md").read_text(encoding="utf-8"), "run: python scripts/make_model_card.py " + str(SHIPPED)
    assert "### Training procedure" in card and "| stage | date |" in card and "| MedShift (τ=0.45) |" in card
    assert max(len(line) for line in card.splitlines()) <= 120


def test_wrap_prose_leaves_tables_headings_and_code_alone():
    long = "word " * 40
    text = f"# {long}\n| {long} |\n```\n{long}\n```\n- {long}\n"
    wrapped = wrap_prose(text).splitlines()
    assert wrapped[:4] == [f"# {long}", f"| {long} |", "```", long]
    assert all(len(line) <= 120 for line in wrapped[5:]) and wrapped[6].startswith("  word")
