"""Which class, view and pose each raw file belongs to.

Three ways, chosen with ``--labels``:

* ``folders`` (default): the class comes from the path, ``simulator|synthetic/<low|high>/...`` or
  ``azurion|real/<low|normal|exposure>/...`` (the phantom's layout and the paper's naming).
* a manifest CSV (``file,class`` plus optional ``view,primary_angle,secondary_angle,pair_id``; ``file``
  relative to the raw folder): its class overrides; files it does not list are skipped.
* a rules YAML: DICOM attribute conditions -> class, first matching rule wins::

      rules:
        - class: real_low
          when:
            Manufacturer: Philips            # equal (strings case-insensitive, numbers as numbers)
            KVP: {min: 60, max: 80}          # range, either bound optional
            SeriesDescription: {contains: low}
            "0018,1155": {in: [GRAPHIC, CINE]}
            ProtocolName: {regex: "^Skull"}
            path: "azurion/**"               # glob on the path relative to the raw folder

View, angles and pair id come from the manifest when there is one (``RAW_DIR/manifest.csv`` is used
automatically for ``folders`` and rules), else from the DICOM positioner angles.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from xdigiskull.classes import CLASS_NAMES, DOSES

DOMAIN_FOLDERS: dict[str, str] = {"simulator": "synthetic", "synthetic": "synthetic", "azurion": "real", "real": "real"}
MANIFEST_NAME = "manifest.csv"


class LabelError(Exception):
    """A file that cannot be given a class; the message says why."""


@dataclass(frozen=True)
class LabelInfo:
    """Class and pose of one raw file.

    Attributes:
        class_name: one of `CLASS_NAMES`.
        view: view name ("" when unknown).
        primary_angle, secondary_angle: C-arm positioner angles in degrees (None when unknown).
        pair_id: id shared by all classes of one pose ("" when unknown).
        landmarks: the manifest's ``landmarks`` cell (JSON in the exposed field's pixels; "" when none).
        bone_mask: path of the manifest's ``bone_mask`` PNG ("" when none).
    """

    class_name: str
    view: str = ""
    primary_angle: float | None = None
    secondary_angle: float | None = None
    pair_id: str = ""
    landmarks: str = ""
    bone_mask: str = ""

    @property
    def group(self) -> str:
        """Key that keeps a pose in one split: pair id, else view, else empty (the file is its own group)."""
        return f"pair:{self.pair_id}" if self.pair_id else (f"view:{self.view}" if self.view else "")


@dataclass(frozen=True)
class ManifestRow:
    class_name: str | None
    view: str
    primary_angle: float | None
    secondary_angle: float | None
    pair_id: str
    landmarks: str = ""  # optional label columns (`xdigiskull.label_columns`): JSON, and a mask path
    bone_mask: str = ""


def _float_or_none(text: str | None) -> float | None:
    if text is None or str(text).strip() == "":
        return None
    return float(text)


def read_manifest(path: Path, require_class: bool) -> dict[str, ManifestRow]:
    """Read a manifest CSV into {relative POSIX path: row}.

    Args:
        path: the CSV file.
        require_class: whether a valid ``class`` column is mandatory (manifest labelling) or optional.

    Raises:
        ValueError: missing columns, unknown class names or unreadable angles, naming file and line.
    """
    rows: dict[str, ManifestRow] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        needed = {"file", "class"} if require_class else {"file"}
        if not needed <= columns:
            raise ValueError(f"{path}: manifest needs columns {sorted(needed)}, found {sorted(columns)}")
        for line, row in enumerate(reader, start=2):
            name = (row.get("class") or "").strip() or None
            if name is not None and name not in CLASS_NAMES:
                if require_class:
                    raise ValueError(f"{path}:{line}: unknown class {name!r}; valid classes: {', '.join(CLASS_NAMES)}")
                name = None
            if require_class and name is None:
                raise ValueError(f"{path}:{line}: empty class")
            try:
                primary = _float_or_none(row.get("primary_angle"))
                secondary = _float_or_none(row.get("secondary_angle"))
            except ValueError:
                raise ValueError(f"{path}:{line}: angles must be numbers") from None
            key = PurePosixPath(row["file"].strip().replace("\\", "/")).as_posix()
            mask = (row.get("bone_mask") or "").strip()
            rows[key] = ManifestRow(
                name, (row.get("view") or "").strip(), primary, secondary, (row.get("pair_id") or "").strip(),
                (row.get("landmarks") or "").strip(), str(path.parent / mask) if mask else "",
            )
    return rows


# ------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    class_name: str
    conditions: tuple[tuple[str, object], ...]


def read_rules(path: Path) -> list[Rule]:
    """Read and validate a rules YAML file (see the module docstring for the format).

    Raises:
        ValueError: malformed file, unknown class, unknown attribute or operator, naming the rule.
    """
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(content, dict) or not isinstance(content.get("rules"), list) or not content["rules"]:
        raise ValueError(f"{path}: expected a mapping with a non-empty 'rules' list")
    rules = []
    for number, entry in enumerate(content["rules"], start=1):
        where = f"{path}: rule {number}"
        if not isinstance(entry, dict) or "class" not in entry:
            raise ValueError(f"{where}: each rule needs 'class' and 'when'")
        if entry["class"] not in CLASS_NAMES:
            raise ValueError(f"{where}: unknown class {entry['class']!r}; valid classes: {', '.join(CLASS_NAMES)}")
        when = entry.get("when") or {}
        if not isinstance(when, dict) or not when:
            raise ValueError(f"{where}: 'when' must be a non-empty mapping of attribute -> condition")
        for key, condition in when.items():
            if key != "path":
                _attribute_tag(str(key), where)
            if isinstance(condition, dict):
                unknown = set(condition) - {"min", "max", "in", "contains", "regex", "exists"}
                if unknown:
                    raise ValueError(f"{where}: unknown operator(s) {sorted(unknown)} for {key!r}")
        rules.append(Rule(entry["class"], tuple((str(k), v) for k, v in when.items())))
    return rules


def _attribute_tag(key: str, where: str = "rules"):
    try:
        if "," in key:
            group, element = key.strip("() ").split(",")
            return Tag(int(group, 16), int(element, 16))
        return Tag(key)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"{where}: {key!r} is not a DICOM keyword or a 'GGGG,EEEE' tag") from None


def _matches(value: object, condition: object) -> bool:
    if isinstance(condition, dict):
        if "exists" in condition and bool(condition["exists"]) != (value is not None):
            return False
        if value is None:
            return "exists" in condition and not condition["exists"]
        if "min" in condition and not _as_number(value) >= float(condition["min"]):
            return False
        if "max" in condition and not _as_number(value) <= float(condition["max"]):
            return False
        if "in" in condition and not any(_equal(value, option) for option in condition["in"]):
            return False
        if "contains" in condition and str(condition["contains"]).lower() not in str(value).lower():
            return False
        if "regex" in condition and not re.search(str(condition["regex"]), str(value)):
            return False
        return True
    return value is not None and _equal(value, condition)


def _as_number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")  # comparisons with nan are False: the rule does not match


def _equal(value: object, expected: object) -> bool:
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return _as_number(value) == float(expected)
    return str(value).strip().lower() == str(expected).strip().lower()


def _attribute_value(ds: Dataset | None, key: str) -> object:
    if ds is None:
        return None
    try:
        element = ds.get(_attribute_tag(key))
    except Exception:  # a value pydicom cannot convert (bad bytes, an unknown VR) is no value
        return None
    if element is None or element.value is None or element.value == "":
        return None
    value = element.value
    return value[0] if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else value


# ------------------------------------------------------------------------------------------ labeler


@dataclass
class Labeler:
    """Turns a file's relative path (and DICOM header) into a `LabelInfo`.

    Build one with `make_labeler`. Picklable, so build workers can use it.

    Attributes:
        mode: ``"folders"``, ``"manifest"`` or ``"rules"``.
        manifest: per-file class/pose rows (from the manifest CSV), possibly empty.
        rules: the rules of ``"rules"`` mode.
    """

    mode: str
    manifest: dict[str, ManifestRow] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)

    @property
    def has_label_columns(self) -> bool:
        """Whether the manifest gives any file landmarks or a bone mask (the dataset then has those columns)."""
        return any(row.landmarks or row.bone_mask for row in self.manifest.values())

    @property
    def needs_header(self) -> bool:
        """Whether `label` needs the DICOM header (rules, or poses not in a manifest)."""
        return self.mode == "rules" or not self.manifest

    @functools.cached_property
    def header_tags(self) -> list[BaseTag]:
        """The attributes `label` reads, in tag order: the positioner angles and every attribute a rule tests."""
        keys = ["PositionerPrimaryAngle", "PositionerSecondaryAngle"]
        keys += [key for rule in self.rules for key, _ in rule.conditions if key != "path"]
        return sorted({_attribute_tag(key) for key in keys})

    def label(self, relative_path: str, ds: Dataset | None = None) -> LabelInfo:
        """Label one file.

        Args:
            relative_path: POSIX path relative to the raw folder.
            ds: the file's DICOM header (None for plain images or when not read).

        Raises:
            LabelError: no class can be given; the message says why.
        """
        row = self.manifest.get(relative_path)
        if self.mode == "manifest":
            if row is None:
                raise LabelError("not listed in the labels manifest")
            class_name = row.class_name
        elif self.mode == "rules":
            class_name = self._class_from_rules(relative_path, ds)
        else:
            class_name = class_from_path(relative_path)
        assert class_name is not None
        if row is not None:
            return LabelInfo(class_name, row.view, row.primary_angle, row.secondary_angle, row.pair_id, row.landmarks,
                             row.bone_mask)
        primary = _as_optional_float(_attribute_value(ds, "PositionerPrimaryAngle"))
        secondary = _as_optional_float(_attribute_value(ds, "PositionerSecondaryAngle"))
        view = f"lao{primary:+.0f}_cra{secondary:+.0f}" if primary is not None and secondary is not None else ""
        return LabelInfo(class_name, view, primary, secondary, "")

    def _class_from_rules(self, relative_path: str, ds: Dataset | None) -> str:
        for rule in self.rules:
            if all(
                fnmatch.fnmatch(relative_path, str(condition))
                if key == "path"
                else _matches(_attribute_value(ds, key), condition)
                for key, condition in rule.conditions
            ):
                return rule.class_name
        raise LabelError("no labelling rule matches this file")


def _as_optional_float(value: object) -> float | None:
    try:
        number = None if value is None else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is not None and math.isfinite(number) else None


def class_from_path(relative_path: str) -> str:
    """Class from the folder convention ``<simulator|synthetic|azurion|real>/<dose>/...``.

    Raises:
        LabelError: the path does not follow the convention.
    """
    parts = [p.lower() for p in PurePosixPath(relative_path).parts[:-1]]
    for index, part in enumerate(parts):
        domain = DOMAIN_FOLDERS.get(part)
        if domain is None or index + 1 >= len(parts):
            continue
        dose = parts[index + 1]
        if dose in DOSES[domain]:
            return f"{domain}_{dose}"
        raise LabelError(f"dose folder {dose!r} under {part!r} is not one of {', '.join(DOSES[domain])}")
    raise LabelError("path is not under simulator|synthetic|azurion|real/<dose>/")


def make_labeler(labels: str, raw_dir: Path) -> Labeler:
    """Build the labeler for a ``--labels`` value.

    Args:
        labels: ``"folders"``, or the path of a manifest ``.csv`` or rules ``.yaml``/``.yml`` file.
        raw_dir: the raw folder (its ``manifest.csv``, if any, gives poses in folders/rules mode).

    Raises:
        ValueError: unknown mode, missing or malformed file.
    """
    default_manifest = raw_dir / MANIFEST_NAME
    poses = read_manifest(default_manifest, require_class=False) if default_manifest.is_file() else {}
    if labels == "folders":
        return Labeler("folders", poses)
    path = Path(labels)
    if not path.is_file():
        raise ValueError(f"--labels: {labels!r} is neither 'folders' nor an existing .csv/.yaml file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return Labeler("manifest", read_manifest(path, require_class=True))
    if suffix in (".yaml", ".yml"):
        return Labeler("rules", poses, read_rules(path))
    raise ValueError(f"--labels: {labels!r} must be 'folders', a .csv manifest or a .yaml rules file")
