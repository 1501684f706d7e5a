"""Regenerate a saved MedShift pipeline's model card (README.md) from its weights, lineage.json and
evaluation.json (`medshift.model_card.write_model_card`); the shipped card is made this way:

    python scripts/make_model_card.py checkpoints/medshift-xdigiskull-demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medshift import MedShiftPipeline
from medshift.model_card import write_model_card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="saved MedShiftPipeline folder (with lineage.json, evaluation.json)")
    folder = parser.parse_args().folder
    print(f"wrote {write_model_card(MedShiftPipeline.from_pretrained(folder), folder)}")


if __name__ == "__main__":
    main()
