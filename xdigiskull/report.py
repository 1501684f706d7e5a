"""The build report: one entry per input file (written, or skipped with a reason code and what to do),
the counts per reason, and the JSON file beside the dataset (it names input files, so never inside it)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from xdigiskull.image_io import atomic_write

# what a user can do about a skip, by reason code; reasons without an entry need nothing (or nothing can help)
REASON_HINTS: dict[str, str] = {
    "no-label": "put the file under simulator|azurion/<dose>/, list it in the manifest, or add a labelling rule",
    "unreadable-header": "the labelling rules need this header: re-export the file from its source",
    "unsupported-file-type": "convert it to DICOM, PNG, TIFF, JPEG or BMP, or move it out of RAW_DIR",
    "unreadable": "check the file's permissions, and that a link points to a file",
    "not-a-file": "move the folder, pipe or device out of RAW_DIR, or rename it without an image suffix",
    "empty-file": "copy the file again from its source",
    "file-too-large": "split the series into smaller files, or export the frames you need",
    "not-dicom": "export it as a DICOM Part 10 file, or give it its image format's suffix",
    "corrupt-dicom": "re-export the file from its source",
    "no-pixel-data": "nothing to do for a file without an image (a report or a presentation state); move it out",
    "invalid-attribute": "correct the attribute named in the message (e.g. with dcmodify), or re-export the file",
    "image-too-large": "export the image at a smaller size: frames over the builder's limit are refused",
    "truncated-pixel-data": "the file was cut short (an interrupted copy?): copy it again from its source",
    "corrupt-pixel-data": "re-export the file; its compressed pixel data cannot be decoded",
    "unsupported-transfer-syntax": "install the decoder named in the message, or re-export the file uncompressed",
    "frame-out-of-range": "choose --frames first, middle, all or an index below the file's frame count",
    "corrupt-image": "copy the image again or re-export it; it cannot be decoded",
    "unsupported-pixel-type": "re-export as 8- or 16-bit greyscale",
    "blank-after-windowing": "the pixel values hold no image: check the export (window, rescale) at its source",
    "blank": "nothing to do for a blank frame (a white page, an unexposed plate); check the export if you expected an image",
    "duplicate-of": "nothing to do: the same image (same SOPInstanceUID or identical pixels) is written once, as the id given",
    "worker-died": "the process reading this file died (a decoder crash, or killed for memory): re-export the file, or build it alone to see why",
    "field-too-small": "build with --allow-upscale, or a smaller --size",
    "burned-in-annotation": "build with --mask-burned-in to mask the corners, or export without annotations",
    "internal-error": "a bug in xdigiskull: please report it with this message",
}


def skip_entry(reason: str, message: str) -> dict:
    """A skipped file's report entry, with what to do about it when there is something to do."""
    entry = {"status": "skipped", "reason": reason, "message": message}
    if reason in REASON_HINTS:
        entry["hint"] = REASON_HINTS[reason]
    return entry


def skipped_frame(frame: int, reason: str, message: str, duplicate_of: str = "") -> dict:
    """A skipped frame's entry in its file's ``frames`` list (with a hint, as `skip_entry`; a copy also names
    the source id of the image it copies)."""
    entry = {"frame": frame, **skip_entry(reason, message)}
    if duplicate_of:
        entry["duplicate_of"] = duplicate_of
    return entry


@dataclass
class BuildSummary:
    """What a build produced.

    Attributes:
        out: the dataset folder.
        report_path: where the JSON report went.
        counts: {split: {class name: rows}}.
        files_read, files_skipped, frames_written, frames_skipped: totals.
        skip_reasons: {reason code: frames or files skipped for it}.
        fingerprint: input fingerprint recorded in the card.
        warnings: what the user should know about the dataset (an empty split).
        resumed_files: files taken from a killed build's journal (``--resume``) instead of read again.
    """

    out: Path
    report_path: Path
    counts: dict[str, dict[str, int]]
    files_read: int
    files_skipped: int
    frames_written: int
    frames_skipped: int
    skip_reasons: dict[str, int]
    fingerprint: str
    warnings: list[str] = field(default_factory=list)
    resumed_files: int = 0


def summarise(
    out: Path, report_path: Path, counts, entries: dict[str, dict], fingerprint: str, warnings: list[str] | None = None
) -> BuildSummary:
    """Totals and counts per reason of the report's file entries."""
    reasons: Counter = Counter()
    frames_written = frames_skipped = files_skipped = files_read = 0
    for entry in entries.values():
        if "frames" in entry:
            files_read += 1
            for frame in entry["frames"]:
                if frame["status"] == "written":
                    frames_written += 1
                else:
                    frames_skipped += 1
                    reasons[frame["reason"]] += 1
        if entry.get("status") == "skipped":
            files_skipped += 1
            if "reason" in entry:
                reasons[entry["reason"]] += 1
    return BuildSummary(
        out, report_path, counts, files_read, files_skipped, frames_written, frames_skipped, dict(sorted(reasons.items())), fingerprint, list(warnings or [])
    )


def write_report(path: Path, entries: dict[str, dict], summary: BuildSummary | None, mode: str) -> None:
    """Write the JSON report atomically; `summary` is None for a build that did not complete."""
    from xdigiskull import __version__

    report = {
        "tool": f"xdigiskull {__version__}",
        "completed": summary is not None,
        "labels": mode,
        "totals": None
        if summary is None
        else {
            "files_listed": len(entries),
            "files_read": summary.files_read,
            "files_skipped": summary.files_skipped,
            "frames_written": summary.frames_written,
            "frames_skipped": summary.frames_skipped,
            "skip_reasons": summary.skip_reasons,
            "counts": summary.counts,
            "input_fingerprint": summary.fingerprint,
            "warnings": summary.warnings,
        },
        "files": {relative: entries[relative] for relative in sorted(entries)},
    }
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def report_reasons(path: Path) -> dict[str, int] | None:
    """{reason: count} from a build report, or None when there is no readable, completed report."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        return dict(report["totals"]["skip_reasons"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
