"""medshift.training.common: the pieces shared by `medshift train` and `medshift train-vae`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medshift.training.common import cpu_has_native_bf16, resolve_mixed_precision

# Two processors of /proc/cpuinfo as Linux writes it (abridged to the lines that matter).
ZEN3_AVX2_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma avx avx2 bmi1 bmi2

processor\t: 1
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma avx avx2 bmi1 bmi2
"""
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8
"""
ZEN4 = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_has_native_bf16(ZEN3_AVX2_ONLY) is False
    assert cpu_has_native_bf16(SAPPHIRE_RAPIDS) is True
    assert cpu_has_native_bf16(ZEN4) is True
    # A flag whose name merely contains the text does not count.
    assert cpu_has_native_bf16("flags\t: avx512_bf16x\n") is False


def test_native_bf16_is_unknown_without_a_flags_line():
    assert cpu_has_native_bf16("") is None
    assert cpu_has_native_bf16("processor\t: 0\nmodel name\t: some ARM core\n") is None


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads this machine's /proc/cpuinfo")
def test_native_bf16_reads_this_machines_cpuinfo():
    text = Path("/proc/cpuinfo").read_text()
    if not any(line.startswith("flags") for line in text.splitlines()):
        assert cpu_has_native_bf16() is None
    else:
        assert cpu_has_native_bf16() is any(flag in text.split() for flag in ("avx512_bf16", "amx_bf16"))


def test_mixed_precision_auto_is_float32_on_a_cpu_and_bad_values_are_refused():
    if torch.cuda.is_available():
        pytest.skip("auto picks a GPU precision on a GPU machine")
    assert resolve_mixed_precision("auto") == "no"
    assert resolve_mixed_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="--mixed-precision must be auto, no, fp16 or bf16, got 'fp8'"):
        resolve_mixed_precision("fp8")


def test_bf16_on_a_cpu_without_native_bf16_warns_that_it_is_emulated(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("the warning is about CPU training")
    # A fresh process: accelerate keeps one mixed precision per process, and the other tests train in float32.
    script = (
        "from types import SimpleNamespace; from medshift.training.common import start_accelerator; "
        "start_accelerator(SimpleNamespace(mixed_precision=%r, seed=0, output_dir=%r))"
    )
    for precision in ("bf16", "no"):
        out = subprocess.run(
            [sys.executable, "-c", script % (precision, str(tmp_path / precision))],
            capture_output=True, text=True, check=True,
        ).stdout
        warned = "torch emulates bf16 here" in out
        assert warned is (precision == "bf16" and cpu_has_native_bf16() is False), out
        assert (tmp_path / precision).is_dir()
