"""README.md's links: every relative file it points to exists, and every #anchor names one of its headings."""

from __future__ import annotations

import re
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
