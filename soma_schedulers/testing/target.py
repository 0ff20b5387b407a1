"""What the conformance suite runs against: a scheduler plus where its jobs run."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import constants as C
from ..scheduler import Scheduler

__all__ = ["JobsNotEnded", "Target", "wait_for_end"]


class JobsNotEnded(AssertionError):
    """Jobs not ended (or not in the awaited state) after a wait; ``pending`` maps each id to its
    last status (a failure report shows those jobs' DRMS log lines first)."""

    def __init__(self, message: str, pending: dict[str, str]) -> None:
        super().__init__(message)
        self.pending = pending


@dataclass
class Target:
    """One backend under test.

    ``workdir`` is a directory that both the test process and the jobs see
    at the same path; ``python`` is the Python interpreter *as the jobs see
    it* (job programs are ``python -c CODE``); ``make_scheduler`` builds a
    fresh instance (the suite shares one, ``scheduler``, between cases).
    """

    name: str
    scheduler_type: str
    make_scheduler: Callable[[], Scheduler]
    workdir: Path
    python: str
    timeout: float = 60.0
    poll: float = 0.02
    examples: int = 25
    finalizers: list[Callable[[], None]] = field(default_factory=list)
    #: Ids the shared scheduler gave, in order (failure reports show their DRMS log lines first).
    submitted: list[str] = field(default_factory=list)
    _scheduler: Scheduler | None = None

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            sched = self.make_scheduler()
            submit = sched.job_submission

            def recording(jobs: Sequence[Any], signal_end: bool = True) -> list[str | None]:
                ids = submit(jobs, signal_end)
                self.submitted.extend(i for i in ids if isinstance(i, str))
                return ids

            sched.job_submission = recording  # type: ignore[method-assign]
            self._scheduler = sched
        return self._scheduler

    @property
    def capabilities(self) -> frozenset[str]:
        return type(self.scheduler).capabilities

    def new_dir(self, label: str) -> Path:
        """A fresh directory under ``workdir`` that jobs (maybe another uid) can write."""
        path = self.workdir / f"{label}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        os.chmod(path, 0o777)
        return path

    def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.clean()
            self._scheduler = None
        while self.finalizers:
            self.finalizers.pop()()


def wait_for_end(
    scheduler: Scheduler, ids: Iterable[str], timeout: float = 60.0, poll: float = 0.02
) -> dict[str, str]:
    """Poll (batched) until every job is ``done`` or ``failed``; AssertionError after ``timeout``."""
    ids = list(ids)
    deadline = time.monotonic() + timeout
    while True:
        status = scheduler.get_jobs_status(ids)
        if all(s in C.END_STATES for s in status.values()):
            return status
        if time.monotonic() > deadline:
            pending = {i: s for i, s in status.items() if s not in C.END_STATES}
            raise JobsNotEnded(f"{len(pending)} job(s) not ended after {timeout:g} s: {pending}", pending)
        time.sleep(poll)


def wait_for_status(
    scheduler: Scheduler, job_id: str, wanted: frozenset[str], timeout: float = 60.0, poll: float = 0.02
) -> str:
    """Poll until the job's status is in ``wanted`` (or ended); return it."""
    deadline = time.monotonic() + timeout
    while True:
        status = scheduler.get_job_status(job_id)
        if status in wanted or status in C.END_STATES:
            return status
        if time.monotonic() > deadline:
            raise JobsNotEnded(f"job {job_id} still {status!r} after {timeout:g} s", {job_id: status})
        time.sleep(poll)
