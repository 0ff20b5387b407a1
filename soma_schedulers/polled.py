"""What every backend that polls a DRMS shares (command-line tools, DRMAA).

A subclass says how to submit one job (:meth:`PolledScheduler.submit_one`), how to ask the DRMS
about a set of jobs in one call (:meth:`~PolledScheduler.query_jobs`, an :class:`Observation`
per job), and how to cancel one (:meth:`~PolledScheduler.cancel_job`). This class keeps the job
table, the status cache (so a poll cycle costs one DRMS query however many jobs are asked about,
from however many threads), the end-state rules of the contract (kills, launch errors, DRMS
aborts), and the policy for a DRMS that cannot be asked: ``undetermined`` for at most
``undetermined_timeout`` seconds, then ``failed``/``aborted`` with the reason kept.
Subclasses reach this state through public hooks only: :meth:`~PolledScheduler.on_end`,
:meth:`~TableScheduler.last_status`, :meth:`~TableScheduler.has_unfinished`,
:meth:`~PolledScheduler.mark_undetermined`, :meth:`~TableScheduler.fresh_records`,
:meth:`~PolledScheduler.is_attached`.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import constants as C
from .arrays import plan
from .config import SchedulerConfig
from .errors import ArraysRefused, CommandError, DRMError, JobSpecError, SchedulerClosedError, UnknownJobError
from .exit_info import ExitInfo
from .job import Job, as_job
from .job_table import JobRecord, TableScheduler

__all__ = ["Observation", "PolledRecord", "PolledScheduler", "same_user"]


@dataclass
class Observation:
    """What one DRMS query says about one job.

    ``status`` is a contract status while the job lives. For an ended job
    (``ended=True``): ``exit_code``/``term_sig`` as the DRMS reports them,
    ``cancelled`` when it was deleted/cancelled, ``aborted`` with the DRMS's
    reason when the DRMS ended it (time or memory limit, node failure),
    ``launch_error`` when the job script could not start the command,
    ``started`` whether it ever ran (None: unknown), and ``usage`` bytes.

    For jobs followed with :meth:`~PolledScheduler.attach`: ``owner``, the job's owner as
    the DRMS names it, and ``cancelled_by``, who deleted the job when the DRMS records it (in the
    same form: Slurm a uid, OpenPBS ``user@host``); None when the DRMS does not say.
    """

    status: str = C.UNDETERMINED
    ended: bool = False
    exit_code: int | None = None
    term_sig: int | None = None
    cancelled: bool = False
    aborted: str | None = None
    launch_error: str | None = None
    started: bool | None = None
    usage: bytes | None = None
    owner: str | None = None
    cancelled_by: str | None = None


def same_user(a: str, b: str) -> bool:
    """Whether two DRMS user names are the same user: ``alice@host1`` and ``alice@host2`` are
    (PBS names a user with the host the request came from), ``1000`` and ``1000`` too."""
    return a.partition("@")[0] == b.partition("@")[0]


class PolledRecord(JobRecord):
    """One polled job: its kill request, undetermined clock, and whether it was attached."""

    __slots__ = ("attached", "hold", "kill_state", "owner", "undetermined_since")

    def __init__(self, job_id: str, hold: bool, signal_end: bool) -> None:
        super().__init__(job_id, C.USER_ON_HOLD if hold else C.QUEUED_ACTIVE, signal_end)
        self.hold = hold
        self.kill_state: str | None = None  # "waiting" or "running" when kill_job was called
        self.undetermined_since: float | None = None
        self.attached = False  # followed with attach(): not submitted by this instance
        self.owner: str | None = None  # the job's owner, as the DRMS names it (attached jobs)


class PolledScheduler(TableScheduler[PolledRecord]):
    """Base of the backends that learn their jobs' states by asking the DRMS (see the module)."""

    #: The DRMS keeps the jobs: :meth:`attach` follows those of other processes.
    attachable = True

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(threading.RLock())
        self.config = config or SchedulerConfig()
        self.parallel_job_submission_info = dict(self.config.parallel_job_config)
        self._poll_lock = threading.Lock()
        self._polled_at = float("-inf")
        self._closed = False
        self._arrays_refused: str | None = None

    # -- what a backend implements ------------------------------------------------------
    @abc.abstractmethod
    def submit_one(self, job: Job) -> str:
        """Submit one job and return its DRMS id (raise DRMError with the DRMS's message)."""

    @abc.abstractmethod
    def query_jobs(self, ids: Sequence[str]) -> dict[str, Observation]:
        """Ask the DRMS about ``ids`` in O(1) calls; leave out jobs it does not know."""

    @abc.abstractmethod
    def cancel_job(self, job_id: str) -> None:
        """Ask the DRMS to delete the job (queued or running)."""

    def native_specification_for(self, job: Job) -> list[str]:
        """The job's native specification, else the configured one (as a list)."""
        spec = job.native_spec_list
        if spec:
            return spec
        configured = self.config.native_specification
        if not configured:
            return []
        return [configured] if isinstance(configured, str) else list(configured)

    # -- submission ------------------------------------------------------------------------------
    def job_submission(self, jobs: Sequence[Any], signal_end: bool = True) -> list[str | None]:
        """Submit ``jobs``: those that share their DRMS-level settings in job arrays when the backend
        has them (:meth:`array_key`) and ``ARRAYS`` is ``auto``, the others one by one."""
        ids: list[str | None] = [None] * len(jobs)
        errors: list[str | None] = [None] * len(jobs)
        valid: list[tuple[int, Job]] = []
        for n, obj in enumerate(jobs):
            try:
                job = as_job(obj)
            except DRMError as exc:
                errors[n] = str(exc)
                continue
            if job.is_engine_execution:
                ids[n] = self.submit_engine_job(job.signal_end and signal_end)
            else:
                valid.append((n, job))
        arrays_on = self.config.arrays == "auto" and self._arrays_refused is None
        try:
            planned = plan(valid, self.array_key if arrays_on else lambda _job: None,
                           self.config.array_min_size, self.max_array_size if arrays_on else lambda: 0)
        except ArraysRefused as exc:  # the DRMS's limit says no arrays here
            self._refuse_arrays(exc)
            planned = plan(valid, lambda _job: None, self.config.array_min_size, lambda: 0)
        singles = list(planned.singles)
        chunks = []
        for group in planned.arrays:
            sizes = self.array_chunks([job for _n, job in group])
            starts = [sum(sizes[:k]) for k in range(len(sizes))]
            chunks += [group[start:start + size] for start, size in zip(starts, sizes, strict=True)]
        for group in chunks:
            try:
                got = self.submit_array([job for _n, job in group])
            except ArraysRefused as exc:
                self._refuse_arrays(exc)
                singles += group
                continue
            except DRMError as exc:
                for n, _job in group:
                    errors[n] = str(exc)
                continue
            for (n, job), job_id in zip(group, got, strict=True):
                ids[n] = self._track_new(job_id, job, signal_end)
        for n, job in sorted(singles, key=lambda item: item[0]):
            try:
                ids[n] = self._track_new(self.submit_one(job), job, signal_end)
            except DRMError as exc:
                errors[n] = str(exc)
        self.set_submission_errors(errors)
        return ids

    def _refuse_arrays(self, exc: ArraysRefused) -> None:
        self._arrays_refused = str(exc)
        if self.logger:
            self.logger.warning("job arrays are not used from now on: %s", exc)

    def _track_new(self, job_id: str, job: Job, signal_end: bool) -> str:
        self.job_table.add(PolledRecord(job_id, job.hold, signal_end and job.signal_end))
        return job_id

    # -- job arrays (a backend that has them overrides these) ------------------------------------
    def array_key(self, job: Job) -> Hashable | None:
        """What jobs must share to go in one array of this DRMS (queue, native specification,
        parallel settings, hold...), None for a job that never goes in one. Default: no arrays."""
        return None

    def max_array_size(self) -> int:
        """How many tasks one array may hold here (the DRMS's limit; 0: arrays not used). Raise
        :class:`ArraysRefused` when the DRMS's configuration says it takes none (logged once)."""
        return 0

    def array_chunks(self, jobs: Sequence[Job]) -> list[int]:
        """How to cut one group of ``jobs`` into arrays (their sizes, in order), for a limit that
        depends on the jobs themselves (Slurm: the script's size). Default: one array."""
        return [len(jobs)]

    def submit_array(self, jobs: Sequence[Job]) -> list[str]:
        """Submit ``jobs`` (same :meth:`array_key`) as one array; the tasks' ids, in order. Raise
        :class:`ArraysRefused` when the DRMS takes no arrays here (the jobs then go one by one, and so
        do later ones), another :class:`DRMError` to fail exactly these jobs with its message."""
        raise ArraysRefused(f"{type(self).__name__} has no job arrays")

    @property
    def has_arrays(self) -> bool:
        """Whether this backend submits job arrays (it overrides :meth:`submit_array`)."""
        return type(self).submit_array is not PolledScheduler.submit_array

    @property
    def arrays_refused(self) -> str | None:
        """Why this instance stopped using arrays (the DRMS refused one), None while it uses them."""
        return self._arrays_refused

    def track_job(self, job_id: str, signal_end: bool = True) -> None:
        """Follow ``job_id`` without asking the DRMS whether it exists (a job that it does not know
        ends ``failed``/``aborted`` after ``undetermined_timeout``). :meth:`attach` asks first."""
        with self.job_table.lock:
            if job_id not in self.job_table:
                self.job_table.add(PolledRecord(job_id, False, signal_end))
        self.expire_cache()

    def expire_cache(self) -> None:
        """Make the next status call ask the DRMS (after a kill, a new job to follow)."""
        with self._poll_lock:
            self._polled_at = float("-inf")

    # -- jobs of other processes -------------------------------------------------------------
    def attach(self, scheduler_job_ids: Iterable[str]) -> None:
        """Follow jobs submitted elsewhere (see :meth:`Scheduler.attach`).

        One :meth:`observe_attached` for the ids this instance does not know yet (one DRMS
        query, plus the accounting or history for the jobs no longer live): every one must be
        known to the DRMS, or :class:`UnknownJobError` names those it does not know and none is
        attached. A job that ended already gets its end state at once. An attached job that its
        owner cancels (here or in another process) ends as :meth:`kill_job` ends it:
        ``killed_by_user`` if it had started, else ``aborted_before_running``; a cancellation by
        someone else is ``aborted`` (docs/contract.md, "Jobs of other processes").
        """
        if isinstance(scheduler_job_ids, str):
            scheduler_job_ids = [scheduler_job_ids]  # one id, not its characters
        ids = list(dict.fromkeys(scheduler_job_ids))
        for job_id in ids:
            if not isinstance(job_id, str) or not job_id.strip():
                raise UnknownJobError(job_id, f"unknown job id {job_id!r}: a job id is a non-empty str")
        if self._closed:
            raise SchedulerClosedError(f"{type(self).__name__} was cleaned: it attaches no job")
        new = [i for i in ids if i not in self.job_table]
        if not new:
            return
        with self._poll_lock:  # not beside a poll: both update the backend's per-job state
            found = self.observe_attached(new)
        unknown = [i for i in new if i not in found]
        if unknown:
            raise UnknownJobError(unknown[0], self.unknown_jobs_message(unknown))
        ended = []
        with self.job_table.lock:
            for job_id in new:
                if job_id in self.job_table:  # submitted or attached meanwhile (another thread)
                    continue
                obs = found[job_id]
                rec = PolledRecord(job_id, False, True)
                rec.attached, rec.owner = True, obs.owner
                if obs.ended:
                    self.record_end(rec, obs)
                    ended.append(rec)
                else:
                    rec.status = obs.status
                self.job_table.add(rec)
        self.signal_ended(ended)

    def observe_attached(self, ids: Sequence[str]) -> dict[str, Observation]:
        """What the DRMS says of ``ids``, which :meth:`attach` is about to follow: an Observation for
        every job it knows (live, or ended and kept in its records), with the job's ``owner`` where
        the DRMS names it; the others left out. Raise :class:`CommandError` when it cannot be asked.

        This default is the poll's :meth:`query_jobs`; a backend whose poll leaves out jobs it does
        know (an ended job whose record is not complete yet) gives those as not ended here.
        """
        return self.query_jobs(ids)

    def unknown_jobs_message(self, ids: Sequence[str]) -> str:
        """The message of the :class:`UnknownJobError` that :meth:`attach` raises for ``ids``: the
        DRMS does not know them, and :meth:`forgetting` when it forgets ended jobs."""
        drms = self.drms_name()
        jobs = f"job {ids[0]}" if len(ids) == 1 else "jobs " + ", ".join(ids)
        them = "it" if len(ids) == 1 else "them"
        note = self.forgetting()
        return f"{drms} does not know {jobs}: it never had {them}, or no longer knows {them}" + (
            f" ({note})" if note else "")

    def drms_name(self) -> str:
        """The DRMS's name, for messages (default: the class name without ``Scheduler``)."""
        return type(self).__name__.removesuffix("Scheduler") or "the DRMS"

    def forgetting(self) -> str:
        """When this DRMS forgets an ended job (said when :meth:`attach` finds no such job), or ""."""
        return ""

    def is_attached(self, job_id: str) -> bool:
        """Whether ``job_id`` was followed with :meth:`attach` (not submitted by this instance)."""
        rec = self.job_table.find(job_id)
        return rec is not None and rec.attached

    # -- polling ---------------------------------------------------------------------------------------
    def refresh(self, records: list[PolledRecord]) -> None:
        """The records are read: :meth:`poll` (cached ``status_cache_seconds``)."""
        self.poll()

    def poll(self, force: bool = False) -> None:
        """Refresh every unfinished job with one DRMS query (cached ``status_cache_seconds``)."""
        with self._poll_lock:
            now = time.monotonic()
            if not force and now - self._polled_at < self.config.status_cache_seconds:
                return
            active = [r.id for r in self.job_table.unfinished()]
            if not active:
                self._polled_at = now
                return
            try:
                observations = self.query_jobs(active)
            except CommandError as exc:
                self.mark_undetermined(active, f"cannot ask the DRMS: {exc}")
                self._polled_at = time.monotonic()
                return
            self._polled_at = time.monotonic()
            ended = []
            missing = []
            with self.job_table.lock:
                for rec in self.job_table.get_all(active):
                    obs = observations.get(rec.id)
                    if obs is None:
                        missing.append(rec.id)
                        continue
                    rec.undetermined_since = None
                    if obs.ended:
                        self.record_end(rec, obs)
                        ended.append(rec)
                    else:
                        rec.status = obs.status
            if missing:
                self.mark_undetermined(missing, "the DRMS no longer knows the job")
            self.signal_ended(ended)

    def mark_undetermined(self, ids: Sequence[str], reason: str) -> None:
        """The DRMS cannot say how ``ids`` are (``reason``): ``undetermined``, then ``failed``/``aborted``
        after ``undetermined_timeout`` seconds (for a query that finds the DRMS down part-way)."""
        now = time.monotonic()
        ended = []
        timeout = self.config.undetermined_timeout
        with self.job_table.lock:
            for rec in self.job_table.get_all(ids):
                if rec.exit_info is not None:
                    continue
                if rec.undetermined_since is None:
                    rec.undetermined_since = now
                    if self.logger:
                        self.logger.warning("job %s: %s", rec.id, reason)
                rec.status = C.UNDETERMINED
                if now - rec.undetermined_since >= timeout:
                    rec.end(C.FAILED, ExitInfo.aborted(), f"{reason} (for {timeout:g} s)")
                    ended.append(rec)
        self.signal_ended(ended)

    def record_end(self, rec: PolledRecord, obs: Observation) -> None:
        """Apply the contract's end-state table to an ended job (table locked), then :meth:`on_end`."""
        killed = rec.kill_state is not None and (obs.cancelled or obs.term_sig is not None or obs.started is False)
        if killed or (rec.attached and obs.cancelled and self._by_owner(rec, obs)):
            # what it was doing when cancelled: kill_job's record, else (an attached job) its last status
            was = rec.kill_state or ("waiting" if rec.status in C.WAITING_STATES else "running")
            never_ran = obs.started is False or (obs.started is None and was == "waiting")
            rec.end(C.FAILED, ExitInfo.not_run() if never_ran else ExitInfo.killed(obs.term_sig, obs.usage))
        elif obs.launch_error is not None:
            rec.end(C.FAILED, ExitInfo.aborted(obs.exit_code, None, obs.usage), obs.launch_error)
        elif obs.aborted is not None or obs.cancelled:
            error = obs.aborted or "cancelled outside this scheduler"
            if obs.aborted is None and rec.attached:
                error = f"cancelled by user {obs.cancelled_by}, not by the job's owner (user {obs.owner or rec.owner})"
            rec.end(C.FAILED, ExitInfo.aborted(obs.exit_code, obs.term_sig, obs.usage), error)
        elif obs.term_sig is not None:
            rec.end(C.DONE, ExitInfo.signalled(obs.term_sig, obs.usage))
        else:
            rec.end(C.DONE, ExitInfo.finished(obs.exit_code, obs.usage))
        if rec.error and self.logger:
            self.logger.error("job %s: %s", rec.id, rec.error)
        self.on_end(rec.id)

    def on_end(self, job_id: str) -> None:
        """Called (job table locked) once the end of ``job_id`` is recorded: drop per-job state here."""

    @staticmethod
    def _by_owner(rec: PolledRecord, obs: Observation) -> bool:
        """Whether the owner of an attached job cancelled it: the DRMS says who did and it is the
        owner, or it does not say (Torque, SGE, Slurm without accounting, a PBS job deleted before
        it ran): only the owner and the DRMS's managers may delete a job, and the owner is the
        one who does, from another process, when a command line kills what an engine submitted."""
        owner = obs.owner or rec.owner
        return obs.cancelled_by is None or owner is None or same_user(obs.cancelled_by, owner)

    # -- kill and life cycle ---------------------------------------------------------------------------
    def kill_job(self, scheduler_job_id: str) -> None:
        with self.job_table.lock:
            rec = self.job_table.get(scheduler_job_id)
            if rec.exit_info is not None:
                return
            if rec.kill_state is None:
                rec.kill_state = "waiting" if rec.status in C.WAITING_STATES else "running"
        try:
            self.cancel_job(scheduler_job_id)
        except CommandError as exc:
            # The job may have ended meanwhile: the next poll tells; keep the message.
            if self.logger:
                self.logger.warning("cancelling job %s: %s", scheduler_job_id, exc)
        self.expire_cache()

    def clean(self) -> None:
        """Forget every job (the instance is unusable afterwards)."""
        with self.job_table.lock:
            self._closed = True
            self.job_table.clear()

    @classmethod
    def build_scheduler(cls, config: Any) -> PolledScheduler:
        """An instance from a :class:`SchedulerConfig`, or from an object with Soma-Workflow's
        ``get_native_specification``/``get_parallel_job_config`` (its resource configuration)."""
        if config is not None and not isinstance(config, SchedulerConfig):
            if callable(getattr(config, "get_native_specification", None)):
                config = SchedulerConfig(
                    native_specification=config.get_native_specification(),
                    parallel_job_config=config.get_parallel_job_config() or {},
                )
            else:
                raise JobSpecError(f"cannot build {cls.__name__} from a {type(config).__name__}")
        return cls(config)
