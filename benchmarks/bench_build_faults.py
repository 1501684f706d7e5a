"""Benchmark `xdigiskull build` under faults: a build killed half-way and resumed, and a worker killed from
outside, on N distinct 1024x1024 12-bit DICOM files (the files of `bench_build.py`).

Each build is a fresh `xdigiskull build` process (imports and pool start-up included, as a user sees them):

1. a full build (the reference, timed);
2. a build SIGKILLed once `--kill-at` of its chunks are journalled, then `--resume`d (timed): the resume's time
   as a fraction of the full build's, and whether its output is byte-identical (1 and 2 alternate `--repeat`
   times, on the same files; the median ratio is the figure, as the machine may be shared);
3. a build during which one worker process is SIGKILLed from outside at the same point: whether the dataset
   is byte-identical to the full build's, and how many files the report gives as ``worker-died``.

    python benchmarks/bench_build_faults.py --n 2000 --num-proc 2 --repeat 3

Goals (issue 39): the resume takes <= 60 % of a full build; the worker's death costs at most its file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import typer

from bench_build import make_raw, write_pool  # benchmarks/ is on the path when run as a script

from xdigiskull.build import FILES_PER_TASK


def _command(raw: Path, out: Path, num_proc: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "xdigiskull.cli", "build", str(raw), "--out", str(out), "--num-proc", str(num_proc), *extra]


def _chunks_done(out: Path) -> int:
    return len(list((out.parent / f".{out.name}.partial" / "journal").glob("chunk-*.pkl")))


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def _start_and_wait(command: list[str], out: Path, chunks: int) -> subprocess.Popen:
    """Start a build and return once `chunks` chunks are journalled (or it ended)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while _chunks_done(out) < chunks and process.poll() is None:
        time.sleep(0.005)
    return process


def main(
    n: int = typer.Option(2000, "--n", help="Number of files."),
    num_proc: int = typer.Option(2, help="Build worker processes."),
    distinct: int = typer.Option(64, help="Distinct images behind the N files."),
    kill_at: float = typer.Option(0.5, help="Kill when this fraction of the chunks is journalled."),
    repeat: int = typer.Option(3, help="Rounds of (full build, kill, resume); the median ratio is the figure."),
    workdir: Path = typer.Option(None, help="Scratch folder [default: a temporary folder, removed afterwards]."),
) -> None:
    """Print the resume-after-kill time against a full build's, and what a worker killed from outside cost."""
    scratch = Path(workdir or tempfile.mkdtemp(prefix="bench-build-faults-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        (scratch / "pool").mkdir(exist_ok=True)
        raw = scratch / "raw"
        make_raw(raw, write_pool(scratch / "pool", distinct), n)
        at_chunk = max(1, int(kill_at * -(-n // FILES_PER_TASK)))
        print(f"{n} files, num_proc {num_proc}; kills once {at_chunk} of {-(-n // FILES_PER_TASK)} chunks are done")

        ratios = []
        for round_index in range(repeat):  # a full build and a resume after each other, `repeat` times: the median
            full = scratch / "full"
            shutil.rmtree(full, ignore_errors=True)
            full_seconds = _timed(_command(raw, full, num_proc))
            resumed = scratch / "resumed"
            shutil.rmtree(resumed, ignore_errors=True)
            process = _start_and_wait(_command(raw, resumed, num_proc), resumed, at_chunk)
            process.send_signal(signal.SIGKILL)
            process.wait()
            done = _chunks_done(resumed)
            resume_seconds = _timed(_command(raw, resumed, num_proc, "--resume"))
            identical = _folder_bytes(resumed) == _folder_bytes(full)
            ratios.append(resume_seconds / full_seconds)
            print(
                f"round {round_index + 1}: full build {full_seconds:.1f} s; killed with {done} chunks journalled; resume "
                f"{resume_seconds:.1f} s = {ratios[-1]:.0%} of the full build; output byte-identical: {identical}"
            )
        print(f"resume / full build, median of {repeat}: {statistics.median(ratios):.0%} (goal <= 60 %)")

        survived = scratch / "worker-killed"
        process = _start_and_wait(_command(raw, survived, num_proc), survived, at_chunk)
        workers = [p for p in psutil.Process(process.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        if workers and process.poll() is None:
            workers[0].send_signal(signal.SIGKILL)
        process.wait()
        report = json.loads((scratch / "worker-killed.report.json").read_text())
        died = [name for name, entry in report["files"].items() if entry.get("reason") == "worker-died"]
        print(
            f"worker SIGKILLed: {'yes' if workers else 'no (the build ended first)'}; build exit {process.returncode}; "
            f"files in the report: {len(report['files'])} of {n}; worker-died: {len(died)}; "
            f"dataset byte-identical to the full build: {_folder_bytes(survived) == _folder_bytes(full)}"
        )
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    typer.run(main)
