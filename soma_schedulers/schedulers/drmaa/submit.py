"""Submissions through DRMAA: ``runJob`` for one job, ``runBulkJobs`` for a job array, and what
is done when the DRMS's answer is lost.

A submission is never retried blindly. When the family's jobs can be found by name
(:attr:`~.family.Family.findable`: SGE, Slurm), the job (or array) name carries a unique token
(``<name>.soma<hex>``); after a transient failure it is looked for by that name: found, its id
(an array's: its tasks' ids, :meth:`~.family.Family.task_id`) is taken; absent, the call is
retried (up to ``command_retries`` times); when the DRMS cannot be asked either, the submission
fails with the reason and the job is deleted by name (best effort), so that, if the DRMS made it,
it runs nothing (its caller removes the script). Other families fail at once with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from ...config import SchedulerConfig
from ...errors import CommandError, SubmissionError
from ...runner import CommandRunner
from . import session as shared
from .common import TOKEN_MARK, LookupFailed, job_name, one_line
from .family import Family

__all__ = ["LOOKUP_ATTEMPTS", "Submission", "SubmitHost", "Submitter"]

#: Attempts at finding a submission whose answer was lost (the DRMS may be failing right now).
LOOKUP_ATTEMPTS = 5


@dataclass(frozen=True)
class Submission:
    """What one ``runJob`` (``tasks`` None) or ``runBulkJobs`` (``tasks`` array tasks) submits:
    ``/bin/sh path`` with the template's settings."""

    path: str
    native: str
    category: str | None
    hold: bool
    name: str | None
    tasks: int | None = None

    @property
    def what(self) -> str:
        """The submission, in messages (``the job``, ``the array of 3 jobs``)."""
        return "the job" if self.tasks is None else f"the array of {self.tasks} jobs"


class SubmitHost(Protocol):
    """What a :class:`Submitter` needs from its scheduler (the ``DrmaaScheduler``)."""

    runner: CommandRunner
    logger: logging.Logger | None
    config: SchedulerConfig
    call_backoff: float

    @property
    def drmaa(self) -> Any:
        """The ``drmaa`` package."""

    @property
    def family(self) -> Family:
        """The DRMS family of the session."""

    def open_session(self) -> Any:
        """The DRMAA session to call (opened if needed)."""

    def transient_errors(self) -> tuple[type[BaseException], ...]:
        """The DRMAA errors after which a call may or may not have reached the DRMS."""


class Submitter:
    """Submits through one scheduler's session (see the module docstring)."""

    def __init__(self, host: SubmitHost) -> None:
        self.host = host

    def submit(self, sub: Submission) -> list[str]:
        """Submit ``sub``: its job's id, or its tasks' ids in order. :class:`SubmissionError` with
        the DRMS's message (or the reason nothing could be found out) when it is not submitted."""
        host = self.host
        d = host.drmaa
        family = host.family
        last: BaseException | None = None
        name = job_name(sub.name) if sub.name else None
        if family.findable:  # the token finds the job again when the answer is lost
            name = f"{(name or 'job')[:100]}{TOKEN_MARK}{uuid.uuid4().hex[:16]}"
        attempts = host.config.command_retries + 1 if family.findable else 1
        label = "" if sub.tasks is None else f" {sub.what}"
        for attempt in range(attempts):
            if attempt:
                time.sleep(host.call_backoff * 2 ** (attempt - 1))
            session = host.open_session()
            since = time.monotonic()
            try:
                with shared.SESSION.lock:
                    return self._once(session, sub, name)
            except host.transient_errors() as exc:
                if not family.findable or name is None:  # no way to find the job: if the DRMS made it, it runs nothing
                    raise SubmissionError(f"cannot submit{label}: DRMAA: {one_line(exc)} (if the DRMS made "
                                          f"{'the job' if sub.tasks is None else 'it'}, it runs nothing: "
                                          "its script is removed)") from None
                try:
                    found = self.find(family, name, since)
                except LookupFailed as why:
                    self.forget(family, name)
                    raise SubmissionError(
                        f"cannot submit{label}: DRMAA: {one_line(exc)}; whether {family.drms} has "
                        f"{'the job' if sub.tasks is None else 'the array'} is unknown ({why}): "
                        f"job {name} deleted by name, its script removed") from None
                if found is not None:
                    if host.logger:
                        host.logger.warning("%s's answer was lost (%s); found job %s by its name %s",
                                            "runJob" if sub.tasks is None else "runBulkJobs", one_line(exc), found, name)
                    return [found] if sub.tasks is None else [
                        family.task_id(found, family.first_task + n) for n in range(sub.tasks)]
                last = exc
            except d.errors.DrmaaException as exc:
                raise SubmissionError(f"DRMAA refused {sub.what}: {one_line(exc)}") from None
        raise SubmissionError(f"cannot submit{label}: DRMAA: {one_line(last or RuntimeError())} ({attempts} "
                              f"attempts; {family.drms} has no job named {name})")

    def _once(self, session: Any, sub: Submission, name: str | None) -> list[str]:
        d = self.host.drmaa
        jt = session.createJobTemplate()
        try:
            jt.remoteCommand = "/bin/sh"
            jt.args = [sub.path]
            jt.outputPath = ":/dev/null"
            jt.errorPath = ":/dev/null"
            if name:
                jt.jobName = name
            if sub.hold:
                jt.jobSubmissionState = d.JobSubmissionState.HOLD_STATE
            if sub.native:
                jt.nativeSpecification = sub.native
            if sub.category:
                jt.jobCategory = sub.category
            if sub.tasks is None:
                return [str(session.runJob(jt))]
            first = self.host.family.first_task
            ids = [str(i) for i in session.runBulkJobs(jt, first, first + sub.tasks - 1, 1)]
            if len(ids) != sub.tasks:
                raise SubmissionError(f"DRMAA gave {len(ids)} ids for {sub.what}: {' '.join(ids[:5])}...")
            return ids
        finally:
            with contextlib.suppress(d.errors.DrmaaException):
                session.deleteJobTemplate(jt)

    def find(self, family: Family, name: str, since: float) -> str | None:
        """The job named ``name`` (a unique token), live or ended, None when the DRMS has none
        (:meth:`Family.job_named`). Raises LookupFailed when it cannot tell after LOOKUP_ATTEMPTS tries."""
        last: Exception | None = None
        runner = self.host.runner
        for attempt in range(LOOKUP_ATTEMPTS):
            if attempt:
                time.sleep(runner.backoff * attempt)
            try:
                return family.job_named(name, since)
            except CommandError as exc:
                last = exc
                if self.host.logger:
                    self.host.logger.warning("looking for the lost submission %s: %s", name, exc)
        raise LookupFailed(one_line(last) if last else "no answer")

    def forget(self, family: Family, name: str) -> None:
        """Delete (best effort) the job named ``name``, if it exists: it is not tracked."""
        try:
            self.host.runner.run(family.delete_named(name), check=False)
        except CommandError as exc:
            if self.host.logger:
                self.host.logger.warning("cannot delete the untracked job %s: %s", name, exc)
