"""Where a MedShift model is: the default one (found from the package, not the working directory) and the
checks that tell a missing local folder from a Hub repository id."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MODEL_ENV = "MEDSHIFT_MODEL"  # a Hub id or folder; an explicit --model / argument wins over it
# the demo weights ship in the repository's checkpoints/ folder, beside the medshift package
DEMO_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "medshift-xdigiskull-demo"


def default_model() -> str:
    """The model used when none is given: $MEDSHIFT_MODEL, else the demo checkpoint of this installation
    (an absolute path, the same from any working directory)."""
    return os.environ.get(MODEL_ENV) or str(DEMO_CHECKPOINT)


def looks_local(name_or_path: str | os.PathLike) -> bool:
    """Whether `name_or_path` can only be a local path: it exists, is absolute, starts with "." or "~", or is not
    shaped like a Hub repository id ("name" or "owner/name")."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    text = str(name_or_path)
    if Path(text).exists() or Path(text).is_absolute() or text.startswith((".", "~")) or os.sep != "/" and os.sep in text:
        return True
    try:
        validate_repo_id(text)
    except HFValidationError:
        return True
    return False


def missing_pipeline_message(path: str | os.PathLike) -> str:
    """The one line for a folder that holds no saved pipeline, with what to do about it."""
    message = f"no MedShift pipeline at {path} (model_index.json missing)"
    if Path(path).resolve() == DEMO_CHECKPOINT:
        message += "; the demo checkpoint ships with the repository (git clone it), or set $MEDSHIFT_MODEL"
    return message


def folder_revision(folder: str | os.PathLike) -> str:
    """``sha256:<16 hex>`` over a saved pipeline's model_index.json and component files (not its README card)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    files = [folder / "model_index.json", *sorted(p for p in folder.glob("*/*") if p.is_file())]
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        file_digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                file_digest.update(block)
        digest.update(file_digest.digest())
    return f"sha256:{digest.hexdigest()[:16]}"
