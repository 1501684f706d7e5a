"""benchmarks/fuzz_build.py on a few hundred mutated files: the build completes, every input is in the report,
and nothing ends as an internal error."""

from __future__ import annotations

from synthetic import load_script


def _load_script():
    return load_script("fuzz_build")


def test_a_few_hundred_mutated_files_build_without_a_crash(tmp_path):
    fuzz_build = _load_script()
    result = fuzz_build.fuzz(300, tmp_path, seed=13, num_proc=1)
    assert result.crashed == ""
    assert result.missing == []  # every input file is in the report
    assert result.internal_errors == []
    assert sum(result.reasons.values()) > 200 and result.frames_written > 10  # the mutations reach every stage
    assert {"invalid-attribute", "truncated-pixel-data", "corrupt-image"} <= set(result.reasons)


def test_mutations_are_reproducible(tmp_path):
    fuzz_build = _load_script()
    first = fuzz_build.write_inputs(tmp_path / "a", 40, seed=5)
    second = fuzz_build.write_inputs(tmp_path / "b", 40, seed=5)
    assert first == second
    assert all((tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() for name in first)
