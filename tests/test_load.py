"""Load on the local backend: 2,000 jobs, 8 threads; memory flat after clean()."""

from __future__ import annotations

import gc
import tracemalloc

from soma_schedulers.schedulers.local_scheduler import LocalScheduler
from soma_schedulers.testing.load import run_load


def test_2000_jobs_8_threads_and_memory_after_clean() -> None:
    tracemalloc.start()
    try:
        sizes = []
        for _ in range(2):
            sched = LocalScheduler()
            result = run_load(sched, jobs=2000, threads=8)
            sched.clean()
            assert not result.errors and not result.wrong and result.duplicates == 0, result
            del sched
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    # The second run leaves no more behind than the first: nothing accumulates per job.
    assert sizes[1] - sizes[0] < 256 * 1024, sizes
