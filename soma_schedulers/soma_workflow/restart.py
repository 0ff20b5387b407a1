"""After an engine restart, Soma-Workflow asks about jobs an earlier engine process submitted.

Soma-Workflow 6.x keeps no engine state across processes but its database. A new engine process
starts with no job in memory; ``restart_workflow(wf_id)`` loads the workflow from the database and
the engine loop then polls every job that has a DRMS id and no exit status, with the ids the dead
engine got (``get_job_status(old_id)``, then ``get_job_exit_info``). A scheduler that only knows
its own submissions raises :class:`~soma_schedulers.errors.UnknownJobError`, and the engine marks
the job failed/aborted ("the job may still be running"). :func:`attach_on_demand` makes the
scheduler Soma-Workflow gets follow such an id instead: on an unknown id it calls
:meth:`~soma_schedulers.scheduler.Scheduler.attach` (backends whose ``attachable`` is true) and
asks again. An id the DRMS does not know either still raises ``UnknownJobError``, except from
``get_job_exit_info`` (see :func:`attach_on_demand`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import UnknownJobError
from ..scheduler import ExitInfo, Scheduler

__all__ = ["FOLLOWED", "attach_on_demand"]

#: The methods of the engine's that take one id.
FOLLOWED = ("get_job_status", "get_job_exit_info", "kill_job")
_S = TypeVar("_S", bound=Scheduler)


def _following(sched: Scheduler, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    attachable = getattr(type(sched), "attachable", False)

    def call(scheduler_job_id: str, *args: Any, **kw: Any) -> Any:
        try:
            return method(scheduler_job_id, *args, **kw)
        except UnknownJobError:
            try:
                if not attachable:
                    raise
                sched.attach([scheduler_job_id])  # UnknownJobError when the DRMS does not know it either
            except UnknownJobError:
                if name != "get_job_exit_info":
                    raise
                # Soma-Workflow re-raises an exit-info error, which ends its engine loop: the job it
                # could not ask about (it has just marked it failed/aborted) ends aborted instead.
                if sched.logger is not None:
                    sched.logger.warning("job %s is unknown here: its end is 'aborted'", scheduler_job_id)
                return ExitInfo.aborted()
            if sched.logger is not None:
                sched.logger.info("job %s (submitted by an earlier engine) attached", scheduler_job_id)
            return method(scheduler_job_id, *args, **kw)

    call.__name__ = getattr(method, "__name__", "call")
    call.__doc__ = getattr(method, "__doc__", None)
    return call


def attach_on_demand(sched: _S) -> _S:
    """Make ``sched`` attach to the ids it does not know when asked about them (see the module's doc).

    For any backend, attachable or not, ``get_job_exit_info`` of an id that stays unknown answers
    ``('aborted', None, None, None)`` instead of raising: Soma-Workflow asks it right after a failed
    ``get_job_status`` (the job is then failed/aborted, "the job may still be running"), and an
    error there would end its engine loop.
    """
    for name in FOLLOWED:
        setattr(sched, name, _following(sched, name, getattr(sched, name)))
    return sched
