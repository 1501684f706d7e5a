"""What a wheel installs: every package, the dataset-card template and the phantom's tables."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_is_listed():
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("xdigiskull", "medshift")
        for init in (REPO / top).rglob("__init__.py")
    }
    listed = set(_setuptools()["packages"])
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    for package in listed - on_disk:  # data-only folders: in the tree, or mapped from elsewhere
        folder = _setuptools().get("package-dir", {}).get(package, package.replace(".", "/"))
        assert (REPO / folder).is_dir(), package


def test_card_template_ships_as_package_data():
    config = _setuptools()
    folder = REPO / config["package-dir"]["xdigiskull.dataset_card"]
    patterns = config["package-data"]["*"]
    assert (folder / "README.template.md").is_file() and "*.md" in patterns


def test_phantom_tables_ship_as_package_data():
    config = _setuptools()
    assert "xdigiskull.phantom.data" in config["packages"] and "*.npz" in config["package-data"]["*"]
    assert (REPO / "xdigiskull" / "phantom" / "data" / "physics_tables.npz").is_file()
