"""Run jobs as child processes of this machine (types ``local_basic`` and ``local``).

A pool of worker threads (at most ``proc_nb``) takes queued jobs; each
worker starts its job without a shell, then blocks in ``os.wait4`` on it,
so a job's end is known the moment it happens, together with its rusage,
and the next queued job starts at once: nothing sleeps in a polling loop.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from .. import constants as C
from ..errors import JobSpecError, SchedulerClosedError, UnknownJobError
from ..job import Job, as_job
from ..process import KILL_GRACE, JobProcess, ProcessSpec
from ..scheduler import ExitInfo, Scheduler

__all__ = ["KILL_GRACE", "ConfiguredLocalScheduler", "LocalScheduler", "__main_scheduler__"]


class _Record:
    """Book-keeping of one local job."""

    __slots__ = (
        "error",
        "exit_info",
        "id",
        "job",
        "process",
        "signal_end",
        "state",
    )

    def __init__(self, job_id: str, job: Job, signal_end: bool) -> None:
        self.id = job_id
        self.job = job
        self.state: str = C.USER_ON_HOLD if job.hold else C.QUEUED_ACTIVE
        self.process = JobProcess(ProcessSpec.from_job(job))
        self.exit_info: ExitInfo | None = None
        self.error: str | None = None
        self.signal_end = signal_end and job.signal_end


class LocalScheduler(Scheduler):
    """Run jobs on this machine, at most ``proc_nb`` at a time (0: the CPU count).

    ``max_proc_nb`` caps ``proc_nb`` when > 0. ``interval`` is accepted for
    Soma-Workflow compatibility; no loop waits on it.
    """

    scheduler_type = "local_basic"

    def __init__(self, proc_nb: int = 0, interval: float = 0.05, max_proc_nb: int = 0) -> None:
        super().__init__()
        if proc_nb < 0 or max_proc_nb < 0:
            raise JobSpecError("proc_nb and max_proc_nb must be >= 0")
        limit = proc_nb or (os.cpu_count() or 1)
        if max_proc_nb:
            limit = min(limit, max_proc_nb)
        self.proc_nb = proc_nb
        self.max_proc_nb = max_proc_nb
        self.interval = interval
        self.limit = max(1, limit)
        self._cond = threading.Condition()
        self._records: dict[str, _Record] = {}
        self._queue: deque[_Record] = deque()
        self._ids = itertools.count(1)
        self._workers: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    # -- submission ----------------------------------------------------------------
    def job_submission(self, jobs: Sequence[Any], signal_end: bool = True) -> list[str | None]:
        ids: list[str | None] = []
        errors: list[str | None] = []
        accepted: list[_Record] = []
        for obj in jobs:
            try:
                job = as_job(obj)
            except JobSpecError as exc:
                ids.append(None)
                errors.append(str(exc))
                continue
            accepted.append(_Record("", job, signal_end))
            ids.append("")
            errors.append(None)
        with self._cond:
            if self._closed:  # clean() ran meanwhile (the base class refuses calls after it)
                raise SchedulerClosedError("this LocalScheduler was cleaned; build a new one")
            it = iter(accepted)
            for i, slot in enumerate(ids):
                if slot is None:
                    continue
                rec = next(it)
                rec.id = str(next(self._ids))
                ids[i] = rec.id
                self._records[rec.id] = rec
                if not rec.job.hold:
                    self._queue.append(rec)
            self._spawn_workers_locked()
            self._cond.notify(len(accepted))
        self._set_submission_errors(errors)
        return ids

    def _spawn_workers_locked(self) -> None:
        while self._queue and self._idle < len(self._queue) and len(self._workers) < self.limit:
            t = threading.Thread(target=self._worker, name=f"soma-local-{len(self._workers)}", daemon=True)
            self._workers.append(t)
            self._idle += 1
            t.start()

    # -- workers ----------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._idle -= 1
                    return
                rec = self._queue.popleft()
                self._idle -= 1
                rec.state = C.RUNNING
            try:
                self._execute(rec)
            finally:
                with self._cond:
                    self._idle += 1

    def _execute(self, rec: _Record) -> None:
        result = rec.process.run()
        self._finish(rec, result.status, result.exit_info, result.error)

    def _finish(self, rec: _Record, state: str, info: ExitInfo, error: str | None = None) -> None:
        with self._cond:
            rec.state = state
            rec.exit_info = info
            rec.error = error
        if error and self.logger:
            self.logger.error("job %s: %s", rec.id, error)
        if rec.signal_end:
            self.jobs_finished_event.set()

    # -- queries ----------------------------------------------------------------------------
    def _record(self, scheduler_job_id: str) -> _Record:
        rec = self._records.get(scheduler_job_id) if isinstance(scheduler_job_id, str) else None
        if rec is None:
            raise UnknownJobError(scheduler_job_id)
        return rec

    def get_job_status(self, scheduler_job_id: str) -> str:
        with self._cond:
            return self._record(scheduler_job_id).state

    def get_jobs_status(self, scheduler_job_ids: Iterable[str]) -> dict[str, str]:
        with self._cond:
            return {i: self._record(i).state for i in scheduler_job_ids}

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        with self._cond:
            rec = self._record(scheduler_job_id)
            return rec.exit_info or ExitInfo(C.EXIT_UNDETERMINED, None, None, None)

    def get_job_error(self, scheduler_job_id: str) -> str | None:
        """Why a job could not start (missing executable, ...), or None."""
        with self._cond:
            return self._record(scheduler_job_id).error

    # -- kill ----------------------------------------------------------------------------------
    def kill_job(self, scheduler_job_id: str) -> None:
        notify = False
        with self._cond:
            rec = self._record(scheduler_job_id)
            if rec.state in C.END_STATES:
                return
            if rec.state in C.WAITING_STATES:
                if rec in self._queue:
                    self._queue.remove(rec)
                rec.state = C.FAILED
                rec.exit_info = ExitInfo(C.EXIT_NOTRUN, None, None, None)
                notify = rec.signal_end
            else:
                rec.process.kill()
        if notify:
            self.jobs_finished_event.set()

    # -- life cycle ------------------------------------------------------------------------------
    def clean(self) -> None:
        """Kill what still runs or waits, and stop the worker threads."""
        with self._cond:
            pending = [r.id for r in self._records.values() if r.state not in C.END_STATES]
        for jid in pending:
            self.kill_job(jid)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            workers = list(self._workers)
        deadline = time.monotonic() + KILL_GRACE + 3
        for t in workers:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    @classmethod
    def build_scheduler(cls, config: Any) -> LocalScheduler:
        return ConfiguredLocalScheduler(config)


class ConfiguredLocalScheduler(LocalScheduler):
    """A :class:`LocalScheduler` whose settings come from a configuration object.

    Accepts a :class:`~soma_schedulers.config.SchedulerConfig` (``cpu_nb``,
    ``max_cpu_nb``, ``interval``), ``None``, or Soma-Workflow's
    ``LocalSchedulerCfg`` (``get_proc_nb()``, ``get_interval()``, ``get_max_proc_nb()``).
    """

    def __init__(self, config: Any = None) -> None:
        proc_nb, interval, max_proc_nb = 0, 0.05, 0
        if config is not None:
            if callable(getattr(config, "get_proc_nb", None)):
                proc_nb = int(config.get_proc_nb() or 0)
                interval = float(config.get_interval() or 0.05)
                max_proc_nb = int(config.get_max_proc_nb() or 0)
            else:
                proc_nb = int(getattr(config, "cpu_nb", 0) or 0)
                interval = float(getattr(config, "interval", 0.05) or 0.05)
                max_proc_nb = int(getattr(config, "max_cpu_nb", 0) or 0)
        super().__init__(proc_nb=proc_nb, interval=interval, max_proc_nb=max_proc_nb)
        self.config = config

    @classmethod
    def build_scheduler(cls, config: Any) -> ConfiguredLocalScheduler:
        return cls(config)


__main_scheduler__ = ConfiguredLocalScheduler
