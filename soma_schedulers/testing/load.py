"""Load: many short jobs submitted and polled from several threads at once.

:func:`run_load` is shared by the load tests of every backend: it checks that
no job is lost or duplicated and that each ends with its own exit code, and
returns figures for a report. :func:`submit_in_batches`, :func:`wait_all_ended`
and :func:`wrong_end_states` are the steps of the reliability tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .. import constants as C
from ..job import Job
from ..scheduler import Scheduler

__all__ = ["LoadResult", "run_load", "submit_in_batches", "wait_all_ended", "wrong_end_states"]


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


def submit_in_batches(scheduler: Scheduler, jobs: Sequence[Job],
                      batch: int = 20) -> tuple[list[str | None], list[str | None]]:
    """Submit ``jobs`` ``batch`` at a time, polling the earlier ones in between (submissions and
    polls interleave, as in an engine); the ids (None: refused) and the refusals' reasons."""
    ids: list[str | None] = []
    refused: list[str | None] = []
    for start in range(0, len(jobs), batch):
        got = scheduler.job_submission(jobs[start:start + batch])
        ids += got
        refused += [e for i, e in zip(got, scheduler.last_submission_errors, strict=True) if i is None]
        scheduler.get_jobs_status([i for i in ids if i])
    return ids, refused


def wait_all_ended(scheduler: Scheduler, ids: Sequence[str], seen: set[str] | None = None,
                   timeout: float = 600.0, poll: float = 0.3) -> tuple[dict[str, str], float]:
    """Poll until every job ended (AssertionError after ``timeout``); the statuses, and the longest
    stretch (seconds) a job stayed ``undetermined``. ``seen`` collects every status seen."""
    since: dict[str, float] = {}
    longest = 0.0
    deadline = time.monotonic() + timeout
    while True:
        status = scheduler.get_jobs_status(list(ids))
        now = time.monotonic()
        if seen is not None:
            seen.update(status.values())
        for jid, st in status.items():
            if st == C.UNDETERMINED:
                since.setdefault(jid, now)
                longest = max(longest, now - since[jid])
            else:
                since.pop(jid, None)
        if all(s in C.END_STATES for s in status.values()):
            return status, longest
        if now > deadline:
            raise AssertionError({j: s for j, s in status.items() if s not in C.END_STATES})
        time.sleep(poll)


def wrong_end_states(scheduler: Scheduler, expected: Mapping[str, int],
                     status: Mapping[str, str]) -> dict[str, tuple[object, ...]]:
    """The jobs of ``expected`` (id -> exit code) that did not end ``done``, finished regularly with
    that code: id -> (status, exit status, exit value, signal)."""
    infos = scheduler.get_jobs_exit_info(list(expected))
    ends = {jid: (status[jid], *tuple(infos[jid])[:3]) for jid in expected}
    return {jid: end for jid, end in ends.items() if end != (C.DONE, C.FINISHED_REGULARLY, expected[jid], None)}
