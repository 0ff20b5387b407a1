"""DRMAA 1.0 through the ``drmaa`` Python package (type ``drmaa``): SGE, slurm-drmaa, pbs-drmaa...

The ``drmaa`` package and the DRMS's ``libdrmaa`` (named by
``DRMAA_LIBRARY_PATH``) are imported when a scheduler is built, not when this
module is imported; without them building one raises
:class:`~soma_schedulers.errors.SchedulerUnavailableError`.

Submission: DRMAA implementations pass argv on differently (SGE joins the
arguments with spaces and hands them to a shell), so no job data goes
through DRMAA. The job script of :func:`soma_schedulers.scripts.build_script`
is written to a private file (mode 0600, in a private ``mkdtemp`` directory
under ``options["tmp_dir"]`` / INI ``OPTION_TMP_DIR``, default
``~/.soma-schedulers/drmaa``, which the execution hosts must see at the same
path), and DRMAA runs ``/bin/sh <that file>``. The file is deleted when the
job's end is recorded, and the directory by :meth:`DrmaaScheduler.clean`, unless it holds
the scripts of jobs not seen to end (they outlive the scheduler, see :mod:`.attach`).
A script that cannot start its command writes the reason to
``<script>.launch`` and exits 127: the job ends ``failed``/``aborted``.

Job arrays: the jobs of one ``job_submission`` that share their native specification, job
category and hold state go as one ``runBulkJobs`` (``ARRAYS``/``ARRAY_MIN_SIZE``, see
docs/contract.md "Bulk submission") on a family whose tasks know their index
(:attr:`.family.Family.task_index`: SGE's ``$SGE_TASK_ID``, slurm-drmaa's
``$SLURM_ARRAY_TASK_ID``; tasks numbered from 1), at most :meth:`.family.Family.max_array_size`
tasks (SGE's ``max_aj_tasks``, Slurm's ``MaxArraySize`` less one) and a script of at most 1 MiB
per array. The array's one private script runs task ``i``'s own job script
(:func:`soma_schedulers.arrays.array_script`); a task writes its launch error to
``<script>.launch.<i>``, and the script is deleted when every task's end is recorded. Each task
is a job of its own to DRMAA (SGE ``12.3``, slurm-drmaa ``12_3``): status, ``wait``, ``control``.
An array has one name (the jobs' when they all have the same, else ``job``), which carries the
token. PBS: one ``runJob`` per job.

Polling: DRMAA has no batched status call, so a poll costs one
``jobStatus`` per unfinished job (``status_cache_seconds`` shared by every
caller and thread), plus one ``wait(id, TIMEOUT_NO_WAIT)`` to reap each job
that ended. DRMAA reaps a job once; its exit info is kept.

What each DRMS behind libdrmaa needs more (native specification, finding a lost submission by
name, completing ends from its accounting: slurm-drmaa's from ``sacct``, doubtful SGE ones from
``qacct``) is said by its family class (:mod:`.family`, :mod:`.sge`, :mod:`.slurm`,
:mod:`.families`), which the shared session (:mod:`.session`) chooses once, when it opens.

Kills: ``control(id, TERMINATE)``. A job this scheduler terminated ends
``killed_by_user`` (it had started) or ``aborted_before_running``, whatever
the implementation reports (slurm-drmaa reports such a job as neither
aborted nor signalled).

Faults (see docs/contract.md#reliability): a DRMAA call that fails with
``DrmCommunicationException`` (or ``TryLaterException``) may or may not have
reached the DRMS. Status calls (``jobStatus``, ``wait``) and kills are retried
``command_retries`` times, :attr:`DrmaaScheduler.call_backoff` apart, doubling;
a job still without an answer is ``undetermined`` (and so are the jobs of that
poll not yet asked: the DRMS is down), at most ``undetermined_timeout``
seconds, then ``failed``/``aborted`` with the reason kept. An end that
``wait`` gave (libdrmaa gives it once) is kept until the job's record takes
it, whatever fails in the same poll. A submission (:mod:`.submit`: ``runJob``,
``runBulkJobs``) is never retried blindly: on SGE and Slurm the job (or array) name carries a unique token (``<name>.soma<hex>``,
name ``job`` by default), and after such a failure the job is looked for by
that name (SGE: ``qstat -j``, then ``qacct -j`` for a job that ended at once;
Slurm: ``squeue --name``, then ``sacct --name``): found, it is tracked;
an array's tasks get their ids from its number (``Family.task_id``);
absent, the call is retried (up to ``command_retries`` times); when the DRMS
cannot be asked either, the submission fails with the reason, the job is
deleted by name (``qdel``, ``scancel --name``; best effort) and its script
removed, so a job that the DRMS did create runs nothing. Other implementations
(no lookup: PBS) fail the submission at once with the reason, the script
removed likewise. A DRMAA call
cannot be interrupted: one that blocks in libdrmaa (SGE: up to its GDI timeout
while qmaster is down) blocks the scheduler's DRMAA calls until it returns. SGE's DRMAA session survives restarts of
``sge_qmaster`` and ``sge_execd`` (calls fail while qmaster is down; the ends
of jobs that finished meanwhile arrive when execd reports them again, up to
about 30 s later).

Sessions: DRMAA 1.0 allows one session per process, so every
``DrmaaScheduler`` of a process shares it (opened by the first, exited when
the last one sleeps or is cleaned). :meth:`DrmaaScheduler.sleep` releases the
session only when none of the scheduler's jobs is unfinished (a DRMS such as
SGE forgets the end of a job that finishes while no session is open);
:meth:`~DrmaaScheduler.wake`, called by every method when needed, reopens it
with the previous contact string.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Container, Hashable, Sequence
from pathlib import Path
from typing import Any

from ... import constants as C
from ...config import SchedulerConfig
from ...errors import ArraysRefused, CommandError, ConfigurationError
from ...job import Job
from ...polled import Observation, PolledScheduler
from ...runner import CommandRunner
from ...scheduler import CAPABILITIES
from . import session as shared
from .attach import AttachedJobs
from .common import LIVE, TRANSIENT_ERRORS, drmaa_unavailable_reason, end_observation, import_drmaa, one_line
from .family import Family
from .scripts import JobScripts
from .submit import Submission, Submitter

__all__ = ["DEFAULT_TMP_DIR", "DrmaaScheduler"]

#: Default parent of the private script directories (``options["tmp_dir"]``).
DEFAULT_TMP_DIR = "~/.soma-schedulers/drmaa"
# The script path is a DRMAA argument, which SGE hands to a shell unquoted.
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./,+=@%:-]+")


class DrmaaScheduler(PolledScheduler):
    """Submit and follow jobs through a DRMAA 1.0 library (see the module docstring).

    The job table, the end-state rules and the undetermined policy are the polled base's
    (:class:`~soma_schedulers.polled.PolledScheduler`, reached through its public hooks);
    the poll is DRMAA's (``jobStatus``/``wait``), completed by the DRMS's :attr:`family`, whose
    commands (``qstat``, ``qacct``, ``sacct``...) :attr:`runner` runs.
    """

    scheduler_type = "drmaa"
    capabilities = CAPABILITIES
    #: Seconds before retrying a DRMAA call that failed transiently (doubled at each retry).
    call_backoff = 0.05

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(config)
        #: Runs the family's DRMS commands (finding a lost submission, accounting).
        self.runner = CommandRunner.for_config(self.config)
        self._drmaa = import_drmaa()
        options = self.config.options
        root = os.path.abspath(os.path.expanduser(str(options.get("tmp_dir") or DEFAULT_TMP_DIR)))
        if not _SAFE_PATH.fullmatch(root):
            raise ConfigurationError(
                f"the DRMAA job script directory {root!r} must contain no spaces or shell characters "
                "(DRMAA implementations pass it through a shell); set OPTION_TMP_DIR"
            )
        self.tmp_root = root
        self.scripts = JobScripts(root)
        self.contact: str | None = str(options["contact"]) if options.get("contact") else None
        self._terminated: set[str] = set()
        self._wait_failing: dict[str, float] = {}  # job -> when its wait() began failing
        #: Ends given by wait() (once) that no record has taken yet.
        self._reaped: dict[str, Observation] = {}
        self._attached: AttachedJobs | None = None  # how attached jobs are observed (.attach)
        self._family: Family | None = None
        self._session: Any = None
        self._max_array_size: int | None = None
        #: Submits with ``runJob``/``runBulkJobs`` (lost answers found by name: :mod:`.submit`).
        self.submitter = Submitter(self)
        #: Applied to the session each DRMAA call goes through (fault injection: testing.faults).
        self.session_wrapper: Callable[[Any], Any] | None = None
        self.wake()

    @classmethod
    def unavailable_reason(cls, config: Any = None) -> str | None:
        """Why DRMAA cannot work here, found without importing ``drmaa`` (which loads libdrmaa): the
        package is missing, ``DRMAA_LIBRARY_PATH`` names no file, or it is unset and the dynamic
        linker knows no ``libdrmaa`` (the ``drmaa`` package's own search)."""
        return drmaa_unavailable_reason()

    # -- session ----------------------------------------------------------------------------
    @property
    def implementation(self) -> str:
        """DRMAA's ``drmaaImplementation`` string (e.g. ``SGE 8.1.9``)."""
        return shared.SESSION.implementation

    @property
    def family(self) -> Family:
        """The DRMS family the session chose when it opened (this scheduler's instance of it)."""
        kind = shared.SESSION.family
        if type(self._family) is not kind:
            self._family = kind(self)
        assert self._family is not None
        return self._family

    @property
    def terminated(self) -> Container[str]:
        """The jobs this scheduler terminated (``control(TERMINATE)``)."""
        return self._terminated

    def wake(self) -> None:
        with shared.SESSION.lock:
            if self._session is None:
                self._session = shared.SESSION.acquire(id(self), self._drmaa, self.contact)
        self.is_sleeping = False

    def sleep(self) -> None:
        self.is_sleeping = True
        if not self.has_unfinished():
            self._close_session()

    def _close_session(self) -> None:
        with shared.SESSION.lock:
            if self._session is not None:
                self._session = None
                shared.SESSION.release(id(self))

    @property
    def drmaa(self) -> Any:
        """The ``drmaa`` package (its ``errors``, ``JobControlAction``...), imported when built."""
        return self._drmaa

    def open_session(self) -> Any:
        """The DRMAA session to call (reopened after :meth:`sleep`), wrapped by :attr:`session_wrapper`."""
        if self._session is None or self.is_sleeping:
            self.wake()
        return self.session_wrapper(self._session) if self.session_wrapper else self._session

    def transient_errors(self) -> tuple[type[BaseException], ...]:
        """The DRMAA errors after which a call may or may not have reached the DRMS."""
        errors = self._drmaa.errors
        return tuple(getattr(errors, n) for n in TRANSIENT_ERRORS if isinstance(getattr(errors, n, None), type))

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """``call()``, retried ``command_retries`` times on a transient DRMAA error."""
        transient = self.transient_errors()
        for attempt in range(self.config.command_retries + 1):
            if attempt:
                time.sleep(self.call_backoff * 2 ** (attempt - 1))
            try:
                return call()
            except transient:
                if attempt >= self.config.command_retries:
                    raise
        raise AssertionError("unreachable")

    # -- submission -------------------------------------------------------------------------------
    def _script_dir(self) -> str:
        return self.scripts.directory()

    def native_specification_string(self, job: Job) -> tuple[str, str | None, Job]:
        """DRMAA's ``nativeSpecification`` for ``job`` (queue, parallel settings, native
        specification), its ``jobCategory`` and the job to write the script for."""
        items: list[str] = []
        if job.queue:
            items.append(self.family.queue_template.format(queue=job.queue))
        parallel, category, job = self.family.parallel_items(job, self.parallel_job_submission_info or {})
        items += parallel
        items += self.native_specification_for(job)
        return " ".join(i for i in items if i.strip()), category, job

    def submit_one(self, job: Job) -> str:
        native, category, job = self.native_specification_string(job)
        path = self.scripts.write(job)
        try:
            [job_id] = self.submitter.submit(Submission(path, native, category, job.hold, job.name))
        except BaseException:
            self.scripts.remove(path)
            raise
        self.scripts.add([job_id], path)
        return job_id

    # -- job arrays (runBulkJobs) ----------------------------------------------------------------
    def array_key(self, job: Job) -> Hashable | None:
        """Jobs with the same native specification, category and hold share arrays (not the name:
        an array has one), on a family whose tasks know their index (:attr:`Family.task_index`)."""
        if self.family.task_index is None:
            return None
        native, category, _job = self.native_specification_string(job)
        return native, category, job.hold

    def max_array_size(self) -> int:
        """The family's limit of tasks per array (SGE: ``max_aj_tasks``), asked once."""
        if self._max_array_size is None:
            self._max_array_size = self.family.max_array_size()
        return self._max_array_size

    def array_chunks(self, jobs: Sequence[Job]) -> list[int]:
        """Arrays whose script stays under :data:`~.scripts.MAX_ARRAY_SCRIPT_BYTES` (every task reads
        and parses the whole script)."""
        return self.scripts.chunks([self.native_specification_string(job)[2] for job in jobs])

    def submit_array(self, jobs: Sequence[Job]) -> list[str]:
        """One ``runBulkJobs`` of ``/bin/sh <array script>``, whose task ``first + n`` runs ``jobs[n]``'s
        own script (:func:`soma_schedulers.arrays.array_script`); the tasks' ids, in order. The array
        takes the jobs' name when they all have the same (an SGE array has one name)."""
        family = self.family
        if family.task_index is None or self.max_array_size() < 1:
            raise ArraysRefused(f"{family.drms} job arrays are not used through DRMAA here")
        prepared = [self.native_specification_string(job) for job in jobs]
        native, category, _job = prepared[0]
        names = {job.name for job in jobs}
        path = self.scripts.write_array([job for _n, _c, job in prepared], family.task_index, family.first_task)
        try:
            ids = self.submitter.submit(Submission(path, native, category, jobs[0].hold,
                                                   jobs[0].name if len(names) == 1 else None, len(jobs)))
        except BaseException:
            self.scripts.remove(path)
            raise
        self.scripts.add(ids, path, family.first_task)
        return ids

    # -- jobs of other sessions (.attach) -----------------------------------------------------
    def _attached_jobs(self) -> AttachedJobs:
        if self._attached is None:
            self.open_session()
            self._attached = self.family.attached_jobs(self._job_status)
        self._attached.runner = self.runner  # (replaced by tests and fault injection)
        return self._attached

    def _job_status(self, job_id: str) -> str | None:
        session = self.open_session()
        with shared.SESSION.lock:
            return self._status(session, job_id)

    def observe_attached(self, ids: Sequence[str]) -> dict[str, Observation]:
        """``jobStatus`` of each job, and the accounting of those no longer live (:mod:`.attach`)."""
        return self._attached_jobs().lookup(ids)

    def drms_name(self) -> str:
        return self.family.drms

    def forgetting(self) -> str:
        return self.family.forgetting

    # -- polling -------------------------------------------------------------------------------------
    def query_jobs(self, ids: Sequence[str]) -> dict[str, Observation]:
        attached = [i for i in ids if self.is_attached(i)]
        if attached:
            ids = [i for i in ids if i not in set(attached)]
            try:
                observed = self._attached_jobs().observe(attached, self._terminated)
            except CommandError as exc:
                self.mark_undetermined(attached, f"cannot ask the DRMS: {exc}")
                observed = {}
            return {**observed, **(self.query_jobs(ids) if ids else {})}
        session = self.open_session()
        family = self.family
        result: dict[str, Observation] = {}
        down: tuple[list[str], str] | None = None  # jobs not asked, and why: the DRMS stopped answering
        with shared.SESSION.lock:
            for n, job_id in enumerate(ids):
                if family.awaits(job_id) or job_id in self._reaped:
                    continue  # reaped already
                state: str | None = None
                try:
                    state = self._status(session, job_id)
                    obs = None if state in LIVE else self._reap(session, job_id)
                except CommandError as exc:
                    now = time.monotonic()
                    for other in ids[n:]:  # a session-wide failure: the others' clocks start now too
                        self._wait_failing.setdefault(other, now)
                    if state is not None and family.ended_without_wait(job_id, self._wait_failing[job_id]):
                        # libdrmaa keeps failing to say how the job ended (SGE: its event client is
                        # gone) and the DRMS no longer has it: an end without its facts, which the
                        # family's accounting completes.
                        del self._wait_failing[job_id]
                        self._reaped[job_id] = Observation(
                            C.DONE, ended=True, aborted=f"DRMAA cannot tell how the job ended: {exc}")
                        continue
                    down = ([i for i in ids[n:] if not family.awaits(i) and i not in self._reaped],
                            f"cannot ask the DRMS: {exc}")
                    break
                self._wait_failing.pop(job_id, None)
                if state in LIVE:
                    result[job_id] = Observation(str(state))
                elif obs is not None:
                    # done, failed, undetermined (SGE, briefly, after a kill) or unknown, and reaped
                    self._reaped[job_id] = obs
                elif state is not None:
                    result[job_id] = Observation(self.last_status(job_id) or C.RUNNING)
        if down is not None:
            self.mark_undetermined(*down)
        result.update(family.complete_ends(ids, self._reaped))
        result.update((i, self._reaped[i]) for i in ids if i in self._reaped)  # popped by on_end
        return result

    def _status(self, session: Any, job_id: str) -> str | None:
        """``jobStatus`` (retried); None when DRMAA no longer knows the job (reaped, or unknown)."""
        errors = self._drmaa.errors
        try:
            return str(self._retrying(lambda: session.jobStatus(job_id)))
        except errors.InvalidJobException:
            return None  # wait() tells
        except errors.DrmaaException as exc:
            raise CommandError(["drmaa.jobStatus", job_id], None, one_line(exc)) from None

    def _reap(self, session: Any, job_id: str) -> Observation | None:
        """``wait(id, TIMEOUT_NO_WAIT)`` as an ended Observation; None when not ended (or unknown)."""
        d = self._drmaa
        errors = d.errors
        try:
            info = self._retrying(lambda: session.wait(job_id, d.Session.TIMEOUT_NO_WAIT))
        except (errors.ExitTimeoutException, errors.InvalidJobException):
            return None
        except errors.DrmaaException as exc:
            raise CommandError(["drmaa.wait", job_id], None, one_line(exc)) from None
        except Exception as exc:
            # DRMAA_ERRNO_NO_RUSAGE ("code 24", a bare Exception in the drmaa package): the
            # job ended without running (SGE: deleted while queued or held).
            if not str(exc).startswith("code 24:"):
                raise
            return Observation(C.DONE, ended=True, cancelled=True, started=False)
        return self.observe_end(job_id, info)

    def observe_end(self, job_id: str, info: Any) -> Observation:
        """A DRMAA ``JobInfo`` as an ended Observation (the contract's table is applied by the base)."""
        return end_observation(info, job_id in self._terminated, lambda: self.launch_error(job_id))

    def launch_error(self, job_id: str) -> str | None:
        """Why the job's script could not start its command, None when it could."""
        return self.scripts.launch_error(job_id)

    def on_end(self, job_id: str) -> None:
        """The job's end is recorded: drop what is kept about it, and its script."""
        if self._attached is not None:
            self._attached.forget(job_id)
        self._reaped.pop(job_id, None)
        self._terminated.discard(job_id)
        self.scripts.release(job_id)

    # -- cancel -----------------------------------------------------------------------------------------
    def cancel_job(self, job_id: str) -> None:
        d = self._drmaa
        session = self.open_session()
        tried: list[int] = []

        def terminate() -> None:
            tried.append(1)
            session.control(job_id, d.JobControlAction.TERMINATE)

        with shared.SESSION.lock:
            try:
                self._retrying(terminate)
            except d.errors.InvalidJobException:
                if len(tried) > 1:  # a first attempt may have killed it before its answer was lost
                    self._terminated.add(job_id)
                return  # it ended already: its own end is reported
            except d.errors.DrmaaException as exc:
                raise CommandError(["drmaa.control", job_id], None, one_line(exc)) from None
            self._terminated.add(job_id)

    def clean(self) -> None:
        self._close_session()
        if self._family is not None:
            self._family.clear()
        self._wait_failing.clear()
        self._reaped.clear()
        self.scripts.close(self.logger)
        self.runner.close()
        super().clean()

    def __repr__(self) -> str:
        return f"<DrmaaScheduler {self.implementation or 'DRMAA'} scripts in {Path(self.tmp_root)}>"
