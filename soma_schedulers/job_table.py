"""The jobs one scheduler instance follows: records by id, one lock, the answers of the API.

Every backend of this package keeps its jobs in a :class:`JobTable` of :class:`JobRecord`
(subclassed for what the backend keeps more: a process, a worker rank, a kill request) and
answers the query methods from it through :class:`TableScheduler`: an unknown id raises
:class:`~soma_schedulers.errors.UnknownJobError` the same way everywhere, and a job with no
end yet has :meth:`ExitInfo.undetermined`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from .errors import UnknownJobError
from .exit_info import ExitInfo
from .scheduler import Scheduler

__all__ = ["JobRecord", "JobTable", "TableScheduler"]


class JobRecord:
    """One job: its id, status, end (exit info and the reason of a failure), and whether its end
    sets ``jobs_finished_event``."""

    __slots__ = ("error", "exit_info", "id", "signal_end", "status")

    def __init__(self, job_id: str, status: str, signal_end: bool = True) -> None:
        self.id = job_id
        self.status = status
        self.signal_end = signal_end
        self.exit_info: ExitInfo | None = None
        self.error: str | None = None

    @property
    def ended(self) -> bool:
        """Whether the job's end is recorded."""
        return self.exit_info is not None

    def end(self, status: str, exit_info: ExitInfo, error: str | None = None) -> None:
        """Record the job's end (``status`` is ``done`` or ``failed``)."""
        self.status, self.exit_info = status, exit_info
        if error is not None:
            self.error = error


R = TypeVar("R", bound=JobRecord)


class JobTable(Generic[R]):
    """Records by id, guarded by :attr:`lock` (re-entrant; a backend may pass its own, e.g. the
    condition its worker threads wait on). Every method takes the lock itself."""

    def __init__(self, lock: AbstractContextManager[Any] | None = None) -> None:
        self.lock: AbstractContextManager[Any] = lock if lock is not None else threading.RLock()
        self._jobs: dict[str, R] = {}

    def add(self, rec: R) -> None:
        """Follow ``rec`` (under its id)."""
        with self.lock:
            self._jobs[rec.id] = rec

    def find(self, job_id: object) -> R | None:
        """The record of ``job_id``, None when it is not followed."""
        with self.lock:
            return self._jobs.get(job_id) if isinstance(job_id, str) else None

    def get(self, job_id: object) -> R:
        """The record of ``job_id``; :class:`UnknownJobError` when it is not followed."""
        rec = self.find(job_id)
        if rec is None:
            raise UnknownJobError(job_id)
        return rec

    def get_all(self, job_ids: Iterable[object]) -> list[R]:
        """The records of ``job_ids``, in order (UnknownJobError for the first unknown one)."""
        with self.lock:
            return [self.get(i) for i in job_ids]

    def records(self) -> list[R]:
        """Every record."""
        with self.lock:
            return list(self._jobs.values())

    def unfinished(self) -> list[R]:
        """The records with no end yet."""
        with self.lock:
            return [r for r in self._jobs.values() if r.exit_info is None]

    def remove(self, job_id: str) -> R | None:
        """Stop following ``job_id``; its record, or None."""
        with self.lock:
            return self._jobs.pop(job_id, None)

    def clear(self) -> None:
        """Forget every job."""
        with self.lock:
            self._jobs.clear()

    def __contains__(self, job_id: object) -> bool:
        return self.find(job_id) is not None

    def __len__(self) -> int:
        with self.lock:
            return len(self._jobs)


class TableScheduler(Scheduler, Generic[R]):
    """A :class:`Scheduler` whose queries are answered from its :attr:`job_table`.

    A subclass fills the table and records ends; it overrides :meth:`refresh` when its records
    must be brought up to date before an answer (the polled backends ask the DRMS there).
    """

    def __init__(self, lock: AbstractContextManager[Any] | None = None) -> None:
        super().__init__()
        #: The jobs this instance follows.
        self.job_table: JobTable[R] = JobTable(lock)

    def refresh(self, records: list[R]) -> None:
        """Bring ``records`` (some of them unfinished) up to date before they are read (default:
        nothing: the records are always current)."""

    def fresh_records(self, scheduler_job_ids: Iterable[str]) -> list[R]:
        """The records of ``scheduler_job_ids`` (UnknownJobError first), refreshed when any of them
        may still change (:meth:`refresh`)."""
        recs = self.job_table.get_all(scheduler_job_ids)
        if any(r.exit_info is None for r in recs):
            self.refresh(recs)
        return recs

    def get_jobs_status(self, scheduler_job_ids: Iterable[str]) -> dict[str, str]:
        recs = self.fresh_records(scheduler_job_ids)
        with self.job_table.lock:
            return {r.id: r.status for r in recs}

    def get_job_status(self, scheduler_job_id: str) -> str:
        return self.get_jobs_status([scheduler_job_id])[scheduler_job_id]

    def get_jobs_exit_info(self, scheduler_job_ids: Iterable[str]) -> dict[str, ExitInfo]:
        recs = self.fresh_records(scheduler_job_ids)
        with self.job_table.lock:
            return {r.id: r.exit_info or ExitInfo.undetermined() for r in recs}

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        return self.get_jobs_exit_info([scheduler_job_id])[scheduler_job_id]

    def get_job_error(self, scheduler_job_id: str) -> str | None:
        """Why the job failed to launch or was aborted (the DRMS's or the system's words), or None."""
        return self.job_table.get(scheduler_job_id).error

    def last_status(self, job_id: str) -> str | None:
        """The status last recorded for ``job_id`` (None when not followed); never asks anyone."""
        rec = self.job_table.find(job_id)
        return rec.status if rec is not None else None

    def has_unfinished(self) -> bool:
        """Whether any job this instance follows has no end recorded yet."""
        return bool(self.job_table.unfinished())

    def signal_ended(self, records: Iterable[JobRecord]) -> None:
        """Set ``jobs_finished_event`` if one of ``records`` (just ended) asks for it."""
        if any(r.signal_end for r in records):
            self.jobs_finished_event.set()
