"""Benchmark the phantom: exports per second at full detector size, and a byte-for-byte determinism check.

Goal (issue 3, issue 40 goal 6): 100 raw exports (20 poses x 5 classes, 1024^2 detector) in under 60 s on 2 CPU
cores, with peak memory under 4 GiB.

    python benchmarks/bench_phantom.py [--views 20] [--detector 1024] [--frames 2] [--phantom-version 2] [--no-determinism]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import tempfile
import time
from pathlib import Path

from xdigiskull.phantom import generate_exports


def digest(root: Path) -> str:
    """SHA-256 over every file's relative path and bytes."""
    sha = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        sha.update(path.relative_to(root).as_posix().encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=20, help="poses (5 exports each)")
    parser.add_argument("--detector", type=int, default=1024, help="detector pixels per side")
    parser.add_argument("--frames", type=int, default=2, help="frames per DICOM run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--catheter", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="poses rendered at the same time (threads)")
    parser.add_argument("--phantom-version", type=int, default=2, help="phantom version (2, the default, or 1)")
    parser.add_argument("--no-determinism", action="store_true", help="skip the second run and the comparison")
    args = parser.parse_args()

    exports = 5 * args.views
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), time.process_time()
        first = generate_exports(Path(tmp) / "a", views=args.views, seed=args.seed, detector=args.detector,
                                 frames=args.frames, catheter=args.catheter, workers=args.workers, progress=False,
                                 version=args.phantom_version)
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        size_mb = sum(p.stat().st_size for p in first.rglob("*") if p.is_file()) / 1e6
        print(f"{exports} exports ({args.views} poses x 5 classes, {args.detector}^2 detector, "
              f"{args.frames} frames per DICOM) in {seconds:.1f} s: {exports / seconds:.2f} exports/s, "
              f"{size_mb:.0f} MB written")
        # CPU time (all threads) says how busy the machine was: wall time near CPU time / workers means the
        # cores were ours; far above it means other processes shared them
        print(f"CPU time {cpu_seconds:.1f} s over {args.workers} worker thread(s), {os.cpu_count()} cores visible")
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        print(f"phantom v{args.phantom_version}: peak memory (max RSS) {peak_gib:.2f} GiB (goal < 4 GiB)")
        print(f"goal: 100 exports in < 60 s -> {'met' if exports / seconds >= 100 / 60 else 'NOT met'} "
              f"({100 / (exports / seconds):.1f} s per 100 exports)")
        if not args.no_determinism:
            second = generate_exports(Path(tmp) / "b", views=args.views, seed=args.seed, detector=args.detector,
                                      frames=args.frames, catheter=args.catheter, workers=args.workers,
                                      progress=False, version=args.phantom_version)
            same = digest(first) == digest(second)
            print(f"same seed, same bytes: {same}")


if __name__ == "__main__":
    main()
