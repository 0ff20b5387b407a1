"""Load: many short jobs submitted and polled from several threads at once.

:func:`run_load` is shared by the load tests of every backend: it checks that
no job is lost or duplicated and that each ends with its own exit code, and
returns figures for a report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import constants as C
from ..job import Job
from ..scheduler import Scheduler

__all__ = ["LoadResult", "run_load"]


@dataclass
class LoadResult:
    """What one load run did."""

    jobs: int
    threads: int
    seconds: float
    wrong: dict[str, tuple[object, ...]]
    duplicates: int
    errors: list[str]


def run_load(scheduler: Scheduler, jobs: int = 2000, threads: int = 8, timeout: float = 600.0,
             poll: float = 0.05, make_job: Callable[[int], Job] | None = None) -> LoadResult:
    """Each thread submits its share (in batches of 25) and polls its jobs until they end."""
    make = make_job or (lambda i: Job(command=["/bin/sh", "-c", f"exit {i % 5}"]))
    per_thread = [list(range(t, jobs, threads)) for t in range(threads)]
    ids: dict[int, str] = {}
    errors: list[str] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def worker(numbers: list[int]) -> None:
        mine: dict[str, int] = {}
        try:
            for start in range(0, len(numbers), 25):
                chunk = numbers[start:start + 25]
                got = scheduler.job_submission([make(i) for i in chunk])
                for i, jid in zip(chunk, got, strict=True):
                    if jid is None:
                        errors.append(f"job {i} refused: {scheduler.last_submission_errors}")
                    else:
                        mine[jid] = i
                scheduler.get_jobs_status(list(mine))
            deadline = time.monotonic() + timeout
            while not all(s in C.END_STATES for s in scheduler.get_jobs_status(list(mine)).values()):
                if time.monotonic() > deadline:
                    errors.append("timeout")
                    return
                time.sleep(poll)
        except Exception as exc:  # reported, never swallowed
            errors.append(f"{type(exc).__name__}: {exc}")
        with lock:
            for jid, i in mine.items():
                ids[i] = jid

    pool = [threading.Thread(target=worker, args=(n,)) for n in per_thread]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.monotonic() - t0
    infos = scheduler.get_jobs_exit_info(list(ids.values()))
    wrong: dict[str, tuple[object, ...]] = {jid: tuple(infos[jid])[:3] for i, jid in ids.items()
             if tuple(infos[jid])[:3] != (C.FINISHED_REGULARLY, i % 5, None)}
    duplicates = len(ids) - len(set(ids.values()))
    if len(ids) != jobs and not errors:
        errors.append(f"{jobs - len(ids)} jobs unaccounted for")
    return LoadResult(jobs, threads, seconds, wrong, duplicates, errors)
