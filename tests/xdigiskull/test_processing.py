"""Worker-side set-up of a build."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# a worker's allocation pattern: file bytes, a float frame, the resized image and the PNG, freed in turn
PIPELINE_FAULTS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from xdigiskull.processing import keep_freed_memory

    kept = keep_freed_memory() if sys.argv[1] == "keep" else None

    def one_file():
        data = np.ones(2 << 20, np.uint8)
        frame = np.ones((1024, 1024), np.float32)
        del data
        small = np.ones((780, 780), np.float32)
        del frame
        png = np.ones(600_000, np.uint8)
        return small.sum() + png.sum()

    one_file()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        one_file()
    print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
    """
)


def _faults_per_file(mode: str) -> tuple[str, float]:
    result = subprocess.run([sys.executable, "-c", PIPELINE_FAULTS, mode], capture_output=True, text=True, check=True)
    kept, faults = result.stdout.split()
    return kept, float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_keep_freed_memory_stops_page_faults_between_files():
    kept, faults = _faults_per_file("keep")
    if kept == "False":
        pytest.skip("this Python does not run on glibc")
    assert kept == "True"
    # each file's buffers (about 9 MB) would otherwise be mapped and zero-filled again: ~2,000 faults
    assert faults < 20


def test_build_workers_do_not_import_torch():
    # every worker process imports these modules; torch would cost each about a second and 300 MB
    modules = "xdigiskull.processing, xdigiskull.build, xdigiskull.image_io, xdigiskull.reading, xdigiskull.cli"
    code = f"import sys, {modules}; heavy = [m for m in ('torch', 'diffusers', 'datasets') if m in sys.modules]; print(heavy)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
