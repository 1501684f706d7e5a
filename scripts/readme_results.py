"""The README's "Results" table, generated from the shipped model's evaluation JSON (never typed by hand).

    python scripts/readme_results.py           # print the table
    python scripts/readme_results.py --write   # put it into README.md between the results markers

`checkpoints/medshift-xdigiskull-demo/evaluation.json` is the results.json of `medshift evaluate` on the shipped
weights (the command is printed under the table); the model card's "Evaluation" is the same table
(`medshift.model_card.evaluation_table`). tests/test_readme.py checks that README.md holds this script's output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medshift.model_card import EVALUATION_FILE, evaluation_table

REPO = Path(__file__).resolve().parents[1]
EVALUATION = REPO / "checkpoints" / "medshift-xdigiskull-demo" / EVALUATION_FILE
START, END = "<!-- results table: scripts/readme_results.py -->", "<!-- end of results table -->"


def results_block(evaluation: Path = EVALUATION) -> str:
    """The Markdown the README holds between its two results markers."""
    return "\n".join(evaluation_table(json.loads(evaluation.read_text(encoding="utf-8"))))


def replace_block(readme: str, block: str) -> str:
    """`readme` with the text between the markers replaced by `block`; a ValueError if a marker is missing."""
    if START not in readme or END not in readme:
        raise ValueError(f"README.md lacks the markers {START!r} and {END!r}")
    before, rest = readme.split(START, 1)
    return f"{before}{START}\n{block}\n{END}{rest.split(END, 1)[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args()
    block = results_block()
    if not args.write:
        print(block)
        return
    readme = REPO / "README.md"
    readme.write_text(replace_block(readme.read_text(encoding="utf-8"), block), encoding="utf-8")
    print(f"wrote the results table into {readme}")


if __name__ == "__main__":
    main()
