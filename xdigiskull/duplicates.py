"""One image, written once: the writing stage's filter of copies.

Real exports hold copies (a series exported twice, a study sent by two modalities, one instance encoded two
ways). A frame is a copy of an earlier written frame when its file has the same SOPInstanceUID and the frame
has the same index, or when its output image is identical (the same decoded pixels through the same
options). Files are written in a fixed order (split by split), so the first copy met is kept and the others
are reported ``duplicate-of`` with its source id: no image is written twice, and never in two splits.
"""

from __future__ import annotations

from xdigiskull.processing import FileOutcome


class DuplicateFilter:
    """Turns the written frames of an outcome that copy an earlier written frame into ``duplicate-of`` skips."""

    def __init__(self) -> None:
        self._by_instance: dict[tuple[str, int], tuple[str, str, int]] = {}
        self._by_pixels: dict[str, tuple[str, str, int]] = {}
        self.dropped = 0

    def check(self, relative: str, outcome: FileOutcome) -> None:
        """Mark the copies among `outcome`'s written frames (in place), and remember the others.

        Args:
            relative: the file's report key (named in a copy's message).
            outcome: the file's processed frames.
        """
        for frame in outcome.frames:
            if frame.row is None:
                continue
            instance_key = (outcome.instance_uid, frame.frame)
            original, why = None, ""
            if outcome.instance_uid and instance_key in self._by_instance:
                original, why = self._by_instance[instance_key], "same SOPInstanceUID"
            elif frame.pixel_digest and frame.pixel_digest in self._by_pixels:
                original, why = self._by_pixels[frame.pixel_digest], "identical image"
            if original is not None:
                source_id, original_file, original_frame = original
                frame.status, frame.reason, frame.row = "skipped", "duplicate-of", None
                frame.duplicate_of = source_id
                frame.message = f"{why} as {original_file} frame {original_frame} (written as {source_id})"
                self.dropped += 1
                continue
            record = (frame.row.source_id, relative, frame.frame)
            if outcome.instance_uid:
                self._by_instance[instance_key] = record
            if frame.pixel_digest:
                self._by_pixels[frame.pixel_digest] = record
