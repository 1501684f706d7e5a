"""The build journal: the outcomes of finished files, kept on disk so that `xdigiskull build --resume` can
continue a killed build instead of starting again.

A build works in ``.<OUT>.partial/`` beside its target. The journal there holds ``plan.json`` (the key of the
build: inputs, their sizes and times, labels, splits and every image option) and one pickle per finished chunk
of files, each written under a temporary name and renamed, so a kill at any moment leaves only whole chunks.
A resumed build whose key differs (other inputs or settings) starts afresh; a build without ``--resume``
always does. The journal is the builder's own scratch: it is read back only by the builder, from the folder
it wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

from xdigiskull.processing import FileOutcome, FileTask

PLAN_NAME = "plan.json"


class BuildJournal:
    """Finished chunks of one build plan.

    Args:
        folder: the journal folder (created or emptied by `start`).
        key: what identifies the build plan (see `plan_key`).
    """

    def __init__(self, folder: Path, key: str):
        self.folder = Path(folder)
        self.key = key
        self.resumed_chunks = 0

    def start(self, resume: bool) -> bool:
        """Keep the journal when `resume` and it is of this plan; else empty it. Returns whether it was kept."""
        if resume and self._stored_key() == self.key:
            self.resumed_chunks = len(list(self.folder.glob("chunk-*.pkl")))
            return True
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        temporary = self.folder / f"{PLAN_NAME}.tmp"
        temporary.write_text(json.dumps({"key": self.key}), encoding="utf-8")
        os.replace(temporary, self.folder / PLAN_NAME)
        return False

    def _stored_key(self) -> str | None:
        try:
            return json.loads((self.folder / PLAN_NAME).read_text(encoding="utf-8"))["key"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _chunk_path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:07d}.pkl"

    def has(self, index: int) -> bool:
        """Whether chunk `index` was finished."""
        return self._chunk_path(index).is_file()

    def load(self, index: int) -> list[FileOutcome] | None:
        """The outcomes of chunk `index`, or None when it was not finished (or cannot be read back)."""
        try:
            with open(self._chunk_path(index), "rb") as handle:
                return pickle.load(handle)
        except FileNotFoundError:
            return None
        except Exception:  # a chunk damaged on disk is done again
            return None

    def save(self, index: int, outcomes: list[FileOutcome]) -> None:
        """Record chunk `index` as finished (atomically)."""
        path = self._chunk_path(index)
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            pickle.dump(outcomes, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)


def _stamp(path: str | Path) -> str:
    try:
        info = os.stat(path)
        return f"{info.st_size}:{info.st_mtime_ns}"
    except OSError:
        return "missing"


def plan_key(settings: dict, tasks: list[FileTask]) -> str:
    """SHA-256 over the build's settings (JSON-serialisable) and its tasks in order (file, split, label), with
    every file's size and modification time, so that a changed input makes another plan."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8"))
    for task in tasks:
        digest.update(f"\n{task.relative}\0{task.split}\0{task.label!r}\0{_stamp(task.path)}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def listing_key(labeler_description: str, files: list[Path]) -> str:
    """SHA-256 over the labelling settings and every listed file's path, size and modification time."""
    digest = hashlib.sha256(labeler_description.encode("utf-8", "surrogateescape"))
    for path in files:
        digest.update(f"\n{path}\0{_stamp(path)}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def save_labels(path: Path, key: str, labelled: list, entries: dict[str, dict]) -> None:
    """Keep the labelling stage's result (labelled files, and the entries of files it left out) for a resume:
    with the labelling rules' header reads, it costs a pass over every file."""
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        pickle.dump((key, labelled, entries), handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, path)


def load_labels(path: Path, key: str) -> tuple[list, dict[str, dict]] | None:
    """What `save_labels` kept, when it was kept for the same `key`; else None."""
    try:
        with open(path, "rb") as handle:
            stored_key, labelled, entries = pickle.load(handle)
    except Exception:  # absent or damaged: label again
        return None
    return (labelled, entries) if stored_key == key else None
