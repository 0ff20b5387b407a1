"""What every command-line backend (Slurm, PBS, Torque, ...) shares.

A subclass says how to submit one job, how to ask the DRMS about a set of
jobs in one call, and how to cancel one. This class keeps the job table,
the status cache (so a poll cycle costs one DRMS query however many jobs
are asked about, from however many threads), the end-state rules of the
contract (kills, launch errors, DRMS aborts), and the policy for a DRMS
that cannot be asked: ``undetermined`` for at most ``undetermined_timeout``
seconds, then ``failed``/``aborted`` with the reason kept.
Subclasses reach this state through public hooks: ``on_end``, ``last_status``,
``has_unfinished``, ``mark_undetermined``, ``fresh_records`` (DRMAA, PBS).
"""

from __future__ import annotations

import abc
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from . import constants as C
from .config import BridgeConfig, SchedulerConfig
from .errors import (
    BridgeError,
    CommandError,
    CommandNotFoundError,
    CommandTimeoutError,
    JobSpecError,
    SchedulerClosedError,
    SubmissionError,
    UnknownJobError,
)
from .job import Job
from .runner import CommandRunner, container_markers
from .scheduler import ExitInfo, Scheduler

__all__ = ["CommandLineScheduler", "Observation", "same_user"]


@dataclass
class Observation:
    """What one DRMS query says about one job.

    ``status`` is a contract status while the job lives. For an ended job
    (``ended=True``): ``exit_code``/``term_sig`` as the DRMS reports them,
    ``cancelled`` when it was deleted/cancelled, ``aborted`` with the DRMS's
    reason when the DRMS ended it (time or memory limit, node failure),
    ``launch_error`` when the job script could not start the command,
    ``started`` whether it ever ran (None: unknown), and ``usage`` bytes.

    For jobs followed with :meth:`~CommandLineScheduler.attach`: ``owner``, the job's owner as
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


class _Rec:
    """One job of the table: its status, end, kill and undetermined clock (see CommandLineScheduler)."""

    __slots__ = ("attached", "error", "exit_info", "hold", "id", "kill_state", "owner", "signal_end", "status",
                 "undetermined_since")

    def __init__(self, job_id: str, hold: bool, signal_end: bool) -> None:
        self.id = job_id
        self.hold = hold
        self.status: str = C.USER_ON_HOLD if hold else C.QUEUED_ACTIVE
        self.exit_info: ExitInfo | None = None
        self.kill_state: str | None = None  # "waiting" or "running" when kill_job was called
        self.undetermined_since: float | None = None
        self.error: str | None = None
        self.signal_end = signal_end
        self.attached = False  # followed with attach(): not submitted by this instance
        self.owner: str | None = None  # the job's owner, as the DRMS names it (attached jobs)


class CommandLineScheduler(Scheduler):
    """Base of the backends driven through DRMS command-line tools."""

    #: A client command that must exist where commands run (bridge detection).
    probe_command: ClassVar[str] = ""
    #: The DRMS keeps the jobs: :meth:`attach` follows those of other processes.
    attachable: ClassVar[bool] = True

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__()
        self.config = config or SchedulerConfig()
        self.runner = CommandRunner(
            self.config.bridge,
            timeout=self.config.command_timeout,
            retries=self.config.command_retries,
            probe_command=self.probe_command or None,
        )
        self.parallel_job_submission_info = dict(self.config.parallel_job_config)
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._records: dict[str, _Rec] = {}
        self._polled_at = float("-inf")
        self._closed = False

    # -- what a backend implements ------------------------------------------------------
    @abc.abstractmethod
    def _submit_one(self, job: Job) -> str:
        """Submit one job and return its DRMS id (raise DRMError with the DRMS's message)."""

    @abc.abstractmethod
    def _query(self, ids: Sequence[str]) -> dict[str, Observation]:
        """Ask the DRMS about ``ids`` in O(1) calls; leave out jobs it does not know."""

    @abc.abstractmethod
    def _cancel(self, job_id: str) -> None:
        """Ask the DRMS to delete the job (queued or running)."""

    def _job_with_token(self, token: str) -> str | None:
        """The id of the job carrying ``token``, None when no job does (one DRMS listing).

        Raise :class:`CommandError` or :class:`ValueError` (output incomplete) to be asked
        again. A backend whose submissions carry no token keeps this default.
        """
        return None

    # -- helpers for backends ---------------------------------------------------------------
    def submit_with_token(self, argv: Sequence[str], script: bytes, token: str,
                          job_id_of: Callable[[str], str | None],
                          refused: Callable[[CommandError], SubmissionError]) -> str:
        """Run the submission command ``argv`` (``script`` on stdin), whose job carries ``token``.

        Never retried blindly: when the answer is lost (timeout, dropped bridge) or is no
        complete line with an id (``job_id_of`` gives None), the job is looked for by its
        token (:meth:`_job_with_token`), so a job that was made is never left untracked.
        ``refused`` turns the command's own error (the DRMS said no) into the error raised.
        """
        try:
            result = self.runner.run(argv, input=script, retry=False)
        except CommandNotFoundError as exc:
            raise SubmissionError(f"cannot submit: {exc}") from None
        except (BridgeError, CommandTimeoutError) as exc:
            found = self.find_submitted(token)
            if found is None:
                raise SubmissionError(f"cannot submit: {exc} (and no job carries its token)") from None
            if self.logger:
                self.logger.warning("%s's answer was lost (%s); found job %s by its token", argv[0], exc, found)
            return found
        except CommandError as exc:
            raise refused(exc) from None
        job_id = job_id_of(result.stdout) if result.stdout.endswith("\n") else None
        if job_id is None:
            job_id = self.find_submitted(token)  # an answer cut short is no answer
            if job_id is None:
                raise SubmissionError(f"{argv[0]} gave no job id: {result.stdout.strip()!r} "
                                      f"{result.stderr.strip()!r}")
        return job_id

    def find_submitted(self, token: str, attempts: int = 5) -> str | None:
        """The id of the job carrying ``token``, asked up to ``attempts`` times with backoff
        while the DRMS fails or its listing is incomplete (a job that exists but is not found
        would run untracked)."""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.runner.backoff * attempt)
            try:
                return self._job_with_token(token)
            except (CommandError, ValueError) as exc:
                if self.logger:
                    self.logger.warning("looking for a lost submission: %s", exc)
        return None

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
        def submit(job: Job) -> str:
            job_id = self._submit_one(job)
            with self._lock:
                self._records[job_id] = _Rec(job_id, job.hold, signal_end and job.signal_end)
            return job_id

        return self.submit_each(jobs, submit)

    def track_job(self, job_id: str, signal_end: bool = True) -> None:
        """Follow ``job_id`` without asking the DRMS whether it exists (a job that it does not know
        ends ``failed``/``aborted`` after ``undetermined_timeout``). :meth:`attach` asks first."""
        with self._lock:
            if job_id not in self._records:
                self._records[job_id] = _Rec(job_id, False, signal_end)
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
        with self._lock:
            new = [i for i in ids if i not in self._records]
        if not new:
            return
        with self._poll_lock:  # not beside a poll: both update the backend's per-job state
            found = self.observe_attached(new)
        unknown = [i for i in new if i not in found]
        if unknown:
            raise UnknownJobError(unknown[0], self.unknown_jobs_message(unknown))
        ended = False
        with self._lock:
            for job_id in new:
                if job_id in self._records:  # submitted or attached meanwhile (another thread)
                    continue
                obs = found[job_id]
                rec = _Rec(job_id, False, True)
                rec.attached, rec.owner = True, obs.owner
                if obs.ended:
                    self._finish(rec, obs)
                    ended = True
                else:
                    rec.status = obs.status
                self._records[job_id] = rec
        if ended:
            self.jobs_finished_event.set()

    def observe_attached(self, ids: Sequence[str]) -> dict[str, Observation]:
        """What the DRMS says of ``ids``, which :meth:`attach` is about to follow: an Observation for
        every job it knows (live, or ended and kept in its records), with the job's ``owner`` where
        the DRMS names it; the others left out. Raise :class:`CommandError` when it cannot be asked.

        This default is the poll's :meth:`_query`; a backend whose poll leaves out jobs it does
        know (an ended job whose record is not complete yet) gives those as not ended here.
        """
        return self._query(ids)

    def unknown_jobs_message(self, ids: Sequence[str]) -> str:
        """The message of the :class:`UnknownJobError` that :meth:`attach` raises for ``ids``: the
        DRMS does not know them, and :meth:`forgetting` when it forgets ended jobs."""
        drms = self.drms_name()
        jobs = f"job {ids[0]}" if len(ids) == 1 else "jobs " + ", ".join(ids)
        note = self.forgetting()
        return (f"{drms} does not know {jobs}: it never had {'it' if len(ids) == 1 else 'them'}, or no "
                f"longer knows {'it' if len(ids) == 1 else 'them'}" + (f" ({note})" if note else ""))

    def drms_name(self) -> str:
        """The DRMS's name, for messages (default: the class name without ``Scheduler``)."""
        return type(self).__name__.removesuffix("Scheduler") or "the DRMS"

    def forgetting(self) -> str:
        """When this DRMS forgets an ended job (said when :meth:`attach` finds no such job), or ""."""
        return ""

    def is_attached(self, job_id: str) -> bool:
        """Whether ``job_id`` was followed with :meth:`attach` (not submitted by this instance)."""
        with self._lock:
            rec = self._records.get(job_id)
            return rec is not None and rec.attached

    # -- polling ---------------------------------------------------------------------------------------
    def _record(self, job_id: str) -> _Rec:
        rec = self._records.get(job_id) if isinstance(job_id, str) else None
        if rec is None:
            raise UnknownJobError(job_id)
        return rec

    def poll(self, force: bool = False) -> None:
        """Refresh every unfinished job with one DRMS query (cached ``status_cache_seconds``)."""
        with self._poll_lock:
            now = time.monotonic()
            if not force and now - self._polled_at < self.config.status_cache_seconds:
                return
            with self._lock:
                active = [r.id for r in self._records.values() if r.exit_info is None]
            if not active:
                self._polled_at = now
                return
            try:
                observations = self._query(active)
            except CommandError as exc:
                self.mark_undetermined(active, f"cannot ask the DRMS: {exc}")
                self._polled_at = time.monotonic()
                return
            self._polled_at = time.monotonic()
            ended_any = False
            missing = []
            with self._lock:
                for job_id in active:
                    rec = self._records[job_id]
                    obs = observations.get(job_id)
                    if obs is None:
                        missing.append(job_id)
                        continue
                    rec.undetermined_since = None
                    if obs.ended:
                        self._finish(rec, obs)
                        ended_any = ended_any or rec.signal_end
                    else:
                        rec.status = obs.status
            if missing:
                self.mark_undetermined(missing, "the DRMS no longer knows the job")
            if ended_any:
                self.jobs_finished_event.set()

    def mark_undetermined(self, ids: Sequence[str], reason: str) -> None:
        """The DRMS cannot say how ``ids`` are (``reason``): ``undetermined``, then ``failed``/``aborted``
        after ``undetermined_timeout`` seconds (for a query that finds the DRMS down part-way)."""
        now = time.monotonic()
        ended = False
        with self._lock:
            for job_id in ids:
                rec = self._records[job_id]
                if rec.exit_info is not None:
                    continue
                if rec.undetermined_since is None:
                    rec.undetermined_since = now
                    if self.logger:
                        self.logger.warning("job %s: %s", job_id, reason)
                rec.status = C.UNDETERMINED
                if now - rec.undetermined_since >= self.config.undetermined_timeout:
                    rec.status = C.FAILED
                    rec.error = f"{reason} (for {self.config.undetermined_timeout:g} s)"
                    rec.exit_info = ExitInfo(C.EXIT_ABORTED, None, None, None)
                    ended = ended or rec.signal_end
        if ended:
            self.jobs_finished_event.set()

    def _finish(self, rec: _Rec, obs: Observation) -> None:
        """Apply the contract's end-state table to an ended job."""
        killed = rec.kill_state is not None and (obs.cancelled or obs.term_sig is not None or obs.started is False)
        if killed or (rec.attached and obs.cancelled and self._by_owner(rec, obs)):
            # what it was doing when cancelled: kill_job's record, else (an attached job) its last status
            was = rec.kill_state or ("waiting" if rec.status in C.WAITING_STATES else "running")
            never_ran = obs.started is False or (obs.started is None and was == "waiting")
            if never_ran:
                rec.status, rec.exit_info = C.FAILED, ExitInfo(C.EXIT_NOTRUN, None, None, None)
            else:
                rec.status, rec.exit_info = C.FAILED, ExitInfo(C.USER_KILLED, None, obs.term_sig, obs.usage)
        elif obs.launch_error is not None:
            rec.error = obs.launch_error
            rec.status, rec.exit_info = C.FAILED, ExitInfo(C.EXIT_ABORTED, obs.exit_code, None, obs.usage)
        elif obs.aborted is not None or obs.cancelled:
            rec.error = obs.aborted or "cancelled outside this scheduler"
            if obs.aborted is None and rec.attached:
                rec.error = f"cancelled by user {obs.cancelled_by}, not by the job's owner (user {obs.owner or rec.owner})"
            rec.status = C.FAILED
            rec.exit_info = ExitInfo(C.EXIT_ABORTED, obs.exit_code, obs.term_sig, obs.usage)
        elif obs.term_sig is not None:
            rec.status, rec.exit_info = C.DONE, ExitInfo(C.FINISHED_TERM_SIG, None, obs.term_sig, obs.usage)
        else:
            rec.status = C.DONE
            rec.exit_info = ExitInfo(C.FINISHED_REGULARLY, obs.exit_code, None, obs.usage)
        if rec.error and self.logger:
            self.logger.error("job %s: %s", rec.id, rec.error)
        self.on_end(rec.id)

    def on_end(self, job_id: str) -> None:
        """Called (job table locked) once the end of ``job_id`` is recorded: drop per-job state here."""

    def last_status(self, job_id: str) -> str | None:
        """The status last recorded for ``job_id`` (None when not followed)."""
        with self._lock:
            rec = self._records.get(job_id)
            return rec.status if rec is not None else None

    def has_unfinished(self) -> bool:
        """Whether any job this instance follows has no end recorded yet."""
        with self._lock:
            return any(r.exit_info is None for r in self._records.values())

    @staticmethod
    def _by_owner(rec: _Rec, obs: Observation) -> bool:
        """Whether the owner of an attached job cancelled it: the DRMS says who did and it is the
        owner, or it does not say (Torque, SGE, Slurm without accounting, a PBS job deleted before
        it ran): only the owner and the DRMS's managers may delete a job, and the owner is the
        one who does, from another process, when a command line kills what an engine submitted."""
        owner = obs.owner or rec.owner
        return obs.cancelled_by is None or owner is None or same_user(obs.cancelled_by, owner)

    # -- the API ----------------------------------------------------------------------------------------
    def fresh_records(self, scheduler_job_ids: Iterable[str]) -> list[_Rec]:
        """The records of ``ids`` (UnknownJobError first), polled if any job may still change.

        For subclasses that answer from what the poll saw (PBS's extended status): call it to have
        the poll cover the jobs first."""
        with self._lock:
            recs = [self._record(i) for i in scheduler_job_ids]
        if any(r.exit_info is None for r in recs):
            self.poll()
        return recs


    def get_jobs_status(self, scheduler_job_ids: Iterable[str]) -> dict[str, str]:
        recs = self.fresh_records(scheduler_job_ids)
        with self._lock:
            return {r.id: r.status for r in recs}

    def get_job_status(self, scheduler_job_id: str) -> str:
        return self.get_jobs_status([scheduler_job_id])[scheduler_job_id]

    def get_jobs_exit_info(self, scheduler_job_ids: Iterable[str]) -> dict[str, ExitInfo]:
        recs = self.fresh_records(scheduler_job_ids)
        with self._lock:
            return {r.id: r.exit_info or ExitInfo(C.EXIT_UNDETERMINED, None, None, None) for r in recs}

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        return self.get_jobs_exit_info([scheduler_job_id])[scheduler_job_id]

    def get_job_error(self, scheduler_job_id: str) -> str | None:
        """Why the job failed to launch or was aborted (the DRMS's words), or None."""
        with self._lock:
            return self._record(scheduler_job_id).error

    def kill_job(self, scheduler_job_id: str) -> None:
        with self._lock:
            rec = self._record(scheduler_job_id)
            if rec.exit_info is not None:
                return
            if rec.kill_state is None:
                rec.kill_state = "waiting" if rec.status in C.WAITING_STATES else "running"
        try:
            self._cancel(scheduler_job_id)
        except CommandError as exc:
            # The job may have ended meanwhile: the next poll tells; keep the message.
            if self.logger:
                self.logger.warning("cancelling job %s: %s", scheduler_job_id, exc)
        with self._poll_lock:
            self._polled_at = float("-inf")

    @classmethod
    def unavailable_reason(cls, config: Any = None) -> str | None:
        """Why this type cannot run here: its client command (``probe_command``) is not on PATH and
        no bridge reaches one (``OUT_OF_CONTAINER`` ``none``, or ``auto`` outside a container, where the
        automatic bridge is not used). A configured bridge (``prefix``, ``ssh``) is taken as working:
        checking it would run a command on the far side."""
        if not cls.probe_command:
            return None
        bridge = config.bridge if isinstance(config, SchedulerConfig) else BridgeConfig()
        if bridge.mode in ("prefix", "ssh") or shutil.which(cls.probe_command):
            return None
        if bridge.mode == "auto":
            if container_markers():
                return None  # the automatic ssh bridge to the host
            return (f"{cls.probe_command} is not on PATH and no bridge is configured (OUT_OF_CONTAINER = "
                    "prefix with BRIDGE_COMMAND, or ssh with BRIDGE_SSH_HOST)")
        return f"{cls.probe_command} is not on PATH (OUT_OF_CONTAINER = none: no bridge)"

    def clean(self) -> None:
        """Close the bridge and forget every job (the instance is unusable afterwards)."""
        self.runner.close()
        with self._lock:
            self._closed = True
            self._records.clear()

    @classmethod
    def build_scheduler(cls, config: Any) -> CommandLineScheduler:
        if config is not None and not isinstance(config, SchedulerConfig):
            if callable(getattr(config, "get_native_specification", None)):
                config = SchedulerConfig(
                    native_specification=config.get_native_specification(),
                    parallel_job_config=config.get_parallel_job_config() or {},
                )
            else:
                raise JobSpecError(f"cannot build {cls.__name__} from a {type(config).__name__}")
        return cls(config)
