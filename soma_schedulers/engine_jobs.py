"""Engine-execution jobs: accepted by every backend, answered by the base class, never run.

Soma-Workflow hands its scheduler the barrier, map/reduce, leave-one-out and
cross-validation jobs of a workflow like any other job, with
``is_engine_execution = True`` and an empty command: the engine computes
their outputs itself. Every Soma-Workflow scheduler accepts such a job, gives
it an id and reports it ``done`` / ``finished_regularly`` / 0 without running
anything; so does every soma_schedulers backend, with no code of its own:

* :class:`~soma_schedulers.scheduler.Scheduler` wraps, in every subclass, the
  job methods the subclass defines (:data:`WRAPPED`, through :func:`answering`, in
  :mod:`soma_schedulers.method_guards`). The wrapped
  ``job_submission`` takes the engine jobs out of the list, gives each an id
  from the instance's :class:`EngineJobTable` (``engine-<8 hex>-<n>``), hands
  the backend only the other jobs, and puts the ids back in order;
  the wrapped queries answer for engine ids and hand the backend the others;
  ``kill_job`` of an engine id does nothing; ``attach`` accepts engine ids of
  any instance (their end is known without asking anyone).
* Ids the instance never gave still reach the backend, which raises
  :class:`~soma_schedulers.errors.UnknownJobError` for them as before.

A backend never sees an engine job, so it needs no code for them; the
public methods :meth:`Scheduler.submit_engine_job` and
:meth:`Scheduler.is_engine_job_id` are there for a backend that submits by
another path than ``job_submission``.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from . import constants as C
from .exit_info import ExitInfo

__all__ = [
    "ENGINE_ID_PREFIX",
    "ENGINE_STATUS",
    "WRAPPED",
    "EngineJobTable",
    "answering",
    "engine_exit_info",
    "is_engine_job",
    "looks_like_engine_id",
    "table_of",
]

#: Every engine job id starts with this.
ENGINE_ID_PREFIX = "engine-"
_ENGINE_ID = re.compile(r"engine-[0-9a-f]{8}-[0-9]+\Z")
#: The status of an engine job, from its submission on.
ENGINE_STATUS = C.DONE
#: The job methods a subclass's own definitions of which are wrapped.
WRAPPED = ("job_submission", "get_job_status", "get_jobs_status", "get_job_exit_info",
           "get_jobs_exit_info", "kill_job", "get_job_error", "attach")


def engine_exit_info() -> ExitInfo:
    """``('finished_regularly', 0, None, None)``: how every engine job ends."""
    return ExitInfo.finished(0)


def is_engine_job(obj: object) -> bool:
    """Whether a job description (a :class:`~soma_schedulers.job.Job`, a mapping of its fields,
    or a Soma-Workflow EngineJob) is an engine-execution job."""
    if isinstance(obj, Mapping):
        return bool(obj.get("is_engine_execution", False))
    return getattr(obj, "is_engine_execution", False) is True


def looks_like_engine_id(job_id: object) -> bool:
    """Whether ``job_id`` has the form of an engine job id (given by any instance, any process)."""
    return isinstance(job_id, str) and job_id.startswith(ENGINE_ID_PREFIX) and bool(_ENGINE_ID.match(job_id))


class EngineJobTable:
    """The engine job ids one scheduler instance gave or adopted (thread safe)."""

    def __init__(self) -> None:
        self._token = os.urandom(4).hex()
        self._count = itertools.count(1)
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def new_id(self) -> str:
        """A new engine job id, unique across instances and processes."""
        job_id = f"{ENGINE_ID_PREFIX}{self._token}-{next(self._count)}"
        with self._lock:
            self._ids.add(job_id)
        return job_id

    def adopt(self, job_id: str) -> None:
        """Answer for an engine id another instance gave (see ``attach``)."""
        with self._lock:
            self._ids.add(job_id)

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, str) and job_id.startswith(ENGINE_ID_PREFIX) and job_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


def table_of(sched: Any) -> EngineJobTable:
    """The :class:`EngineJobTable` of a scheduler instance (made on first use)."""
    table = sched.__dict__.get("_engine_jobs")
    if table is None:  # a subclass that did not call Scheduler.__init__
        table = sched.__dict__.setdefault("_engine_jobs", EngineJobTable())
    return table  # type: ignore[no-any-return]


def _engine_ids(sched: Any, ids: list[str]) -> set[str]:
    table = table_of(sched)
    return {i for i in ids if i in table} if len(table) else set()


def _signal_end(job: Any) -> bool:
    value = job.get("signal_end", True) if isinstance(job, Mapping) else getattr(job, "signal_end", True)
    return bool(value)


def _submission(fn: Callable[..., list[str | None]]) -> Callable[..., list[str | None]]:
    def job_submission(self: Any, jobs: Sequence[Any], *args: Any, **kw: Any) -> list[str | None]:
        jobs = list(jobs)
        flags = [is_engine_job(j) for j in jobs]
        if not any(flags):
            return fn(self, jobs, *args, **kw)
        others = [j for j, engine in zip(jobs, flags, strict=True) if not engine]
        got = list(fn(self, others, *args, **kw)) if others else []
        got += [None] * (len(others) - len(got))  # a backend that answered short: no id is no job
        tls = getattr(self, "_tls", None)
        got_errors = list(getattr(tls, "errors", [])) if others else []
        got_errors = (got_errors + [None] * len(got))[:len(got)]
        call_signal_end = bool(kw.get("signal_end", args[0] if args else True))
        ids: list[str | None] = []
        errors: list[str | None] = []
        it = iter(zip(got, got_errors, strict=True))
        for job, engine in zip(jobs, flags, strict=True):
            if engine:
                ids.append(self.submit_engine_job(call_signal_end and _signal_end(job)))
                errors.append(None)
            else:
                job_id, error = next(it)
                ids.append(job_id)
                errors.append(error)
        if tls is not None:
            tls.errors = errors
        return ids

    return job_submission


def _single(fn: Callable[..., Any], answer: Callable[[], Any]) -> Callable[..., Any]:
    def method(self: Any, scheduler_job_id: str, *args: Any, **kw: Any) -> Any:
        if scheduler_job_id in table_of(self):
            return answer()
        return fn(self, scheduler_job_id, *args, **kw)

    return method


def _many(fn: Callable[..., dict[str, Any]], answer: Callable[[], Any]) -> Callable[..., dict[str, Any]]:
    def method(self: Any, scheduler_job_ids: Iterable[str], *args: Any, **kw: Any) -> dict[str, Any]:
        ids = list(scheduler_job_ids)
        engine = _engine_ids(self, ids)
        if not engine:
            return fn(self, ids, *args, **kw)
        others = [i for i in ids if i not in engine]
        got = fn(self, others, *args, **kw) if others else {}
        return {i: answer() if i in engine else got[i] for i in ids}

    return method


def _attach(fn: Callable[..., None]) -> Callable[..., None]:
    def attach(self: Any, scheduler_job_ids: Iterable[str], *args: Any, **kw: Any) -> None:
        # one id given as a str is that id, not its characters
        ids = [scheduler_job_ids] if isinstance(scheduler_job_ids, str) else list(scheduler_job_ids)
        engine = [i for i in ids if looks_like_engine_id(i)]
        if not engine:
            return fn(self, ids, *args, **kw)
        others = [i for i in ids if not looks_like_engine_id(i)]
        if others:
            fn(self, others, *args, **kw)
        table = table_of(self)
        for job_id in engine:
            table.adopt(job_id)
        return None

    return attach


_FACTORIES: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "job_submission": _submission,
    "get_job_status": lambda fn: _single(fn, lambda: ENGINE_STATUS),
    "get_jobs_status": lambda fn: _many(fn, lambda: ENGINE_STATUS),
    "get_job_exit_info": lambda fn: _single(fn, engine_exit_info),
    "get_jobs_exit_info": lambda fn: _many(fn, engine_exit_info),
    "kill_job": lambda fn: _single(fn, lambda: None),
    "get_job_error": lambda fn: _single(fn, lambda: None),
    "attach": _attach,
}


def answering(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, the job method ``name`` (one of :data:`WRAPPED`) of a backend, made to answer for
    engine jobs itself and hand the backend only the others."""
    return _FACTORIES[name](fn)
