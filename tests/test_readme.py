"""README.md: every relative link and #anchor resolves, it stays short, its prose lines fit 120 characters, and
its Results table is what scripts/readme_results.py generates from the shipped model's evaluation JSON."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # markdown [text](target)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def readme_links(text: str) -> list[str]:
    """Relative targets of the markdown links in `text` (web addresses left out)."""
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def headings(text: str) -> list[str]:
    """Markdown headings outside fenced code blocks (where `# ...` is a shell comment)."""
    found, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            found.append(line.lstrip("#"))
    return found


def test_the_anchor_rule_matches_github():
    assert github_anchor("Model-quality goals (issue 14): current checkpoint") == "model-quality-goals-issue-14-current-checkpoint"
    assert github_anchor("Issue 14, 2026-12-02: what each change bought") == "issue-14-2026-12-02-what-each-change-bought"
    assert readme_links("[a](docs/x.png) [b](https://example.org) [c](#demo-weights)") == ["docs/x.png", "#demo-weights"]


def test_every_relative_link_and_anchor_resolves():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    anchors = {github_anchor(heading) for heading in headings(text)}
    assert "demo-weights" in anchors and "# 1. raw exports" not in " ".join(headings(text))
    assert len(readme_links(text)) > 20
    broken = []
    for target in readme_links(text):
        path, _, anchor = target.partition("#")
        if path and not (REPO / path).exists():
            broken.append(target)
        elif not path and anchor not in anchors:
            broken.append(target)
    assert broken == []


def prose_lines(text: str) -> list[str]:
    """Lines outside fenced code and tables (tables and commands cannot wrap)."""
    found, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and not line.startswith("|"):
            found.append(line)
    return found


def test_user_documentation_is_short_and_wrapped():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 450
    for path in (REPO / "README.md", REPO / "docs" / "model-history.md"):
        long = [line for line in prose_lines(path.read_text(encoding="utf-8")) if len(line) > 120]
        assert long == [], f"{path.name}: prose lines over 120 characters"


def test_results_table_is_generated_from_the_evaluation_json():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- results table: scripts/readme_results.py -->", "<!-- end of results table -->"
    block = readme.split(start, 1)[1].split(end, 1)[0].strip("\n")
    script = subprocess.run([sys.executable, str(REPO / "scripts" / "readme_results.py")], capture_output=True, text=True)
    assert script.returncode == 0, script.stderr
    assert block == script.stdout.strip("\n")
    assert "| MedShift (τ=0.45) |" in block and "medshift evaluate --model checkpoints/medshift-xdigiskull-demo" in block
