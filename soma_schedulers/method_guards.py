"""The wrapper the base class puts around every backend's job methods.

:class:`~soma_schedulers.scheduler.Scheduler` calls :func:`wrap_job_methods` for itself and for
every subclass: each job method the class itself defines (:data:`GUARDED_METHODS`) is wrapped
once, so that

* after ``clean()`` it raises :class:`~soma_schedulers.errors.SchedulerClosedError` (outermost);
* ``job_submission`` refuses one job given instead of a list (:class:`JobSpecError`);
* engine-execution jobs are answered without reaching the backend (:mod:`.engine_jobs`);

and ``clean`` is made idempotent, the instance refusing the job methods once the outermost
``clean`` returns. A backend writes none of it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import engine_jobs
from .errors import JobSpecError, SchedulerClosedError
from .job import Job

__all__ = ["GUARDED_METHODS", "check_job_list", "wrap_job_methods"]

#: The methods that raise :class:`~soma_schedulers.errors.SchedulerClosedError` once ``clean()``
#: has run, in every subclass (the base class wraps them: no backend code needed).
GUARDED_METHODS = engine_jobs.WRAPPED
_MARK = "__soma_guard__"


def check_job_list(jobs: object) -> None:
    """Refuse a single job (or anything else that is not a list of jobs) given to job_submission."""
    single = isinstance(jobs, (Job, Mapping)) or callable(getattr(jobs, "plain_command", None))
    if single or isinstance(jobs, (str, bytes)) or not isinstance(jobs, Iterable):
        raise JobSpecError(
            f"job_submission takes a list of jobs, not a {type(jobs).__name__}: pass [job]"
            if single else f"job_submission takes a list of jobs, not a {type(jobs).__name__}")


def _job_method(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """The job method ``name``: closed-instance check, then engine jobs, then ``method``."""
    inner = engine_jobs.answering(name, method)
    submission = name == "job_submission"

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "_soma_closed", False):
            raise SchedulerClosedError(
                f"this {type(self).__name__} was cleaned (clean(), or the end of its with block): "
                f"{name}() needs a new scheduler")
        if submission:
            check_job_list(args[0] if args else kwargs.get("jobs"))
        return inner(self, *args, **kwargs)

    setattr(guarded, _MARK, True)
    return guarded


def _clean(method: Callable[..., Any]) -> Callable[..., Any]:
    """``clean``: idempotent; the instance refuses the job methods once the outermost call returns
    (a subclass's ``clean`` may call ``super().clean()`` or its own job methods, e.g. to kill jobs)."""

    @functools.wraps(method)
    def clean(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "_soma_closed", False):
            return None
        depth = getattr(self, "_soma_cleaning", 0)
        self._soma_cleaning = depth + 1
        try:
            return method(self, *args, **kwargs)
        finally:
            self._soma_cleaning = depth
            if depth == 0:
                self._soma_closed = True

    setattr(clean, _MARK, True)
    return clean


def wrap_job_methods(cls: type) -> None:
    """Wrap the job methods and ``clean`` that ``cls`` itself defines (idempotent)."""
    for name in (*GUARDED_METHODS, "clean"):
        member = cls.__dict__.get(name)
        if not inspect.isfunction(member) or getattr(member, _MARK, False):
            continue
        setattr(cls, name, _clean(member) if name == "clean" else _job_method(name, member))
