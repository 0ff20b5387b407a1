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
from collections.abc import Sequence
from typing import Any

from .. import constants as C
from ..errors import JobSpecError, SchedulerClosedError
from ..exit_info import ExitInfo
from ..job import Job, as_job
from ..job_table import JobRecord, TableScheduler
from ..process import KILL_GRACE, JobProcess, ProcessSpec

__all__ = ["KILL_GRACE", "ConfiguredLocalScheduler", "LocalScheduler", "__main_scheduler__"]


class _Record(JobRecord):
    """One local job: its description and its process."""

    __slots__ = ("job", "process")

    def __init__(self, job_id: str, job: Job, signal_end: bool) -> None:
        super().__init__(job_id, C.USER_ON_HOLD if job.hold else C.QUEUED_ACTIVE, signal_end and job.signal_end)
        self.job = job
        self.process = JobProcess(ProcessSpec.from_job(job))


class LocalScheduler(TableScheduler[_Record]):
    """Run jobs on this machine, at most ``proc_nb`` at a time (0: the CPU count).

    ``max_proc_nb`` caps ``proc_nb`` when > 0. ``interval`` is accepted for
    Soma-Workflow compatibility; no loop waits on it.
    """

    scheduler_type = "local_basic"

    def __init__(self, proc_nb: int = 0, interval: float = 0.05, max_proc_nb: int = 0) -> None:
        self._cond = threading.Condition()
        super().__init__(self._cond)  # the job table's lock is the workers' condition
        if proc_nb < 0 or max_proc_nb < 0:
            raise JobSpecError("proc_nb and max_proc_nb must be >= 0")
        limit = proc_nb or (os.cpu_count() or 1)
        if max_proc_nb:
            limit = min(limit, max_proc_nb)
        self.proc_nb = proc_nb
        self.max_proc_nb = max_proc_nb
        self.interval = interval
        self.limit = max(1, limit)
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
                self.job_table.add(rec)
                if not rec.job.hold:
                    self._queue.append(rec)
            self._spawn_workers_locked()
            self._cond.notify(len(accepted))
        self.set_submission_errors(errors)
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
                rec.status = C.RUNNING
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
            rec.end(state, info, error)
        if error and self.logger:
            self.logger.error("job %s: %s", rec.id, error)
        self.signal_ended([rec])

    # -- kill ----------------------------------------------------------------------------------
    def kill_job(self, scheduler_job_id: str) -> None:
        notify = False
        with self._cond:
            rec = self.job_table.get(scheduler_job_id)
            if rec.ended:
                return
            if rec.status in C.WAITING_STATES:
                if rec in self._queue:
                    self._queue.remove(rec)
                rec.end(C.FAILED, ExitInfo.not_run())
                notify = rec.signal_end
            else:
                rec.process.kill()
        if notify:
            self.jobs_finished_event.set()

    # -- life cycle ------------------------------------------------------------------------------
    def clean(self) -> None:
        """Kill what still runs or waits, and stop the worker threads."""
        pending = [r.id for r in self.job_table.unfinished()]
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
