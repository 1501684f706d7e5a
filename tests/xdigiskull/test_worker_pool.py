"""`WorkerPool.run` through real worker deaths: results come back in order, and only the items that killed
their worker get the "died" result."""

from __future__ import annotations

import time

import pytest

from xdigiskull.worker_pool import WorkerPool, describe_exit

# the work: importable by the spawned workers (the test puts it on sys.path); items 20 and 41 kill their worker
WORK = '''
import os
import signal
import time

DEADLY = (20, 41)


def start_worker():
    pass


def double(items):
    out = []
    for item in items:
        if item in DEADLY:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.002)
        out.append(2 * item)
    return out
'''


@pytest.fixture
def work_module(tmp_path, monkeypatch):
    (tmp_path / "xdigiskull_pool_work.py").write_text(WORK)
    monkeypatch.syspath_prepend(str(tmp_path))
    import xdigiskull_pool_work

    return xdigiskull_pool_work


def test_run_keeps_order_and_pins_each_death_on_its_item(work_module):
    pool = WorkerPool(2, work_module.start_worker)
    chunks = [[2 * i, 2 * i + 1] for i in range(40)]  # more chunks than in flight: deaths are also met at submission
    results = []
    try:
        for chunk_results in pool.run(chunks, work_module.double, lambda item, how: (item, how)):
            results += chunk_results
            time.sleep(0.02)  # a slow consumer (the build writes parquet): a death is met at the next submission
    finally:
        pool.shutdown()
    expected = [(i, "killed by signal SIGKILL") if i in work_module.DEADLY else 2 * i for i in range(80)]
    assert results == expected
    assert pool.deaths >= 4  # each deadly item breaks the pool once, then once more alone


def test_describe_exit():
    assert describe_exit(-9) == "killed by signal SIGKILL" and describe_exit(3) == "exit code 3"
    assert describe_exit(None) == "exit status unknown"
