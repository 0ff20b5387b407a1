"""Slurm through its command-line tools (type ``slurm``).

Submission: ``sbatch --parsable`` with the job script on stdin (nothing is
written to disk). Polling: one ``squeue`` for every unfinished job, plus one
``sacct`` for those that ended or left the controller's memory; without
accounting, one ``squeue -O exit_code`` instead. Cancelling: ``scancel``.
A job script that cannot start its command records the reason in the job's
Comment (``scontrol update``) and exits 127, so launch errors are reported as
``aborted`` rather than as the program's exit code.

Attach (jobs of other processes): the poll's ``squeue`` and ``sacct``, asking also for the owner's
uid (``%U``, ``UID``). ``sacct``'s ``State`` says who cancelled a job (``CANCELLED by <uid>``): its
owner's cancellation is a kill by the user. Without accounting only ``squeue`` knows the jobs, until
``MinJobAge`` seconds after their end, and nothing says who cancelled one.

One id, several jobs: a controller that lost its state gives old ids again, while slurmdbd keeps
the old jobs' records. Each submission's job carries a token in its Comment (squeue shows it;
sacct too with ``AccountingStoreFlags=job_comment``): a squeue line of another token is another
job (the one we follow is then gone), and of an id's accounting records (``sacct -D``) the poll
takes the newest one of our job (:func:`~.slurm_accounting.pick_record`: its token, submitted no
sooner than squeue showed our job, before the other job squeue showed). The newest is also the
last run of a requeued job, whose earlier runs have records (``REQUEUED``, ``PREEMPTED``) of their own.
"""

from __future__ import annotations

import re
import shlex
import time
import uuid
from collections.abc import Hashable, Mapping, Sequence
from typing import ClassVar

from .. import constants as C
from ..arrays import array_script, chunk_sizes
from ..batch import CommandLineScheduler, Observation
from ..config import SchedulerConfig
from ..errors import ArraysRefused, CommandError, SubmissionError
from ..job import Job
from ..scheduler import CAPABILITIES, OPTIONAL_CAPABILITIES
from ..scripts import LAUNCH_ERROR_EXIT, build_script
from ..usage import format_usage, parse_hms
from .slurm_accounting import (
    ABORTED,
    ENDED,
    TOKEN_MARK,
    SacctJob,
    complete_lines,
    parse_exit_code,
    pick_record,
    query_sacct_records,
    run_sacct,
    split_sacct,
    split_state,
)

# The sacct helpers live in slurm_accounting; they stay importable from here.
__all__ = ["SlurmScheduler", "complete_lines", "parse_exit_code", "run_sacct", "split_sacct", "split_state"]

LAUNCH_MARK = "soma_launch_error"
_JOB_ID = re.compile(r"\d+(_\d+)?")
#: Slurm's default MaxArraySize (task indices 0 to 1000).
DEFAULT_MAX_ARRAY_SIZE = 1001
#: The largest array script we send: Slurm's default ``max_script_size`` is 4 MiB.
MAX_SCRIPT_BYTES = 3_500_000

_ENDED = ENDED
_ABORTED = ABORTED
_LIVE = {
    "PENDING": C.QUEUED_ACTIVE,
    "CONFIGURING": C.RUNNING,
    "RUNNING": C.RUNNING,
    "COMPLETING": C.RUNNING,
    "SIGNALING": C.RUNNING,
    "STAGE_OUT": C.RUNNING,
    "RESIZING": C.RUNNING,
    "SUSPENDED": C.SYSTEM_SUSPENDED,
    "STOPPED": C.USER_SUSPENDED,
    "REQUEUED": C.QUEUED_ACTIVE,
    "REQUEUE_FED": C.QUEUED_ACTIVE,
    "REQUEUE_HOLD": C.SYSTEM_ON_HOLD,
    "RESV_DEL_HOLD": C.SYSTEM_ON_HOLD,
}
_NAME_BAD = re.compile(r"[\x00-\x1f\x7f]")


def _tasks_apart(ids: Sequence[str]) -> list[str]:
    """``-r`` when ``ids`` hold array tasks: squeue then lists an array's pending tasks one per line
    (``12_4``), not as one range (``12_[4-9]``)."""
    return ["-r"] if any("_" in i for i in ids) else []


def decode_wait_status(raw: int) -> tuple[int | None, int | None]:
    """A raw wait status (``squeue -O exit_code``) as ``(exit_code, term_sig)``."""
    if raw & 0x7F:
        return None, raw & 0x7F
    return (raw >> 8) & 0xFF, None


class SlurmScheduler(CommandLineScheduler):
    """Submit and follow jobs with ``sbatch``, ``squeue``, ``sacct`` and ``scancel``."""

    scheduler_type = "slurm"
    capabilities = CAPABILITIES | OPTIONAL_CAPABILITIES
    probe_command: ClassVar[str] = "squeue"

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(config)
        self._accounting: bool | None = None  # unknown until sacct is first asked
        self._comments: dict[str, str] = {}
        self._ended_seen: dict[str, float] = {}
        self._steps_running: dict[str, float] = {}  # job -> since when its ended record is incomplete
        self.accounting_grace = float(self.config.options.get("accounting_grace", 10.0))
        self._max_array_size: int | None = None
        self._cancelled_waiting: set[str] = set()  # array tasks cancelled while pending: they vanish
        self._tokens: dict[str, str] = {}  # job -> the token in its Comment
        self._submitted: dict[str, str] = {}  # job -> its Submit time, as squeue first showed it
        self._reused: dict[str, str] = {}  # job -> Submit time of another job squeue showed under its id

    # -- submission -------------------------------------------------------------------------
    def sbatch_argv(self, job: Job) -> list[str]:
        """The ``sbatch`` command line for ``job`` (the script itself goes on stdin)."""
        argv = ["sbatch", "--parsable", "--output=/dev/null", "--error=/dev/null"]
        if job.name:
            argv.append("--job-name=" + _NAME_BAD.sub("_", job.name))
        if job.queue:
            argv.append("--partition=" + job.queue)
        if job.hold:
            argv.append("--hold")
        info = job.parallel_job_info
        if info:
            nodes = info.get("nodes_number", 1)
            cpus = info.get("cpu_per_node", 1)
            argv.append(f"--nodes={nodes}")
            if str(info.get("config_name", "")).lower() == "openmp":
                argv += ["--ntasks-per-node=1", f"--cpus-per-task={cpus}"]
            else:
                argv.append(f"--ntasks-per-node={cpus}")
        return argv

    def directives(self, job: Job) -> list[str]:
        """The ``#SBATCH`` lines of ``job``'s native specification."""
        return [f"#SBATCH {item}" for item in self.native_specification_for(job)]

    def job_script(self, job: Job, directives: bool = True) -> str:
        """The private job script: ``#SBATCH`` lines from the native specification first
        (``directives=False``: none, for a task of an array, whose script carries them)."""
        # $SLURM_JOB_ID: an array task's own job id, whose Comment squeue shows for the task
        report = (
            'scontrol update JobId="$SLURM_JOB_ID" '
            f'Comment="{LAUNCH_MARK}: $soma_reason" >/dev/null 2>&1'
        )
        return build_script(job, self.directives(job) if directives else [], report=report)

    def submit_one(self, job: Job) -> str:
        return self._sbatch(self.sbatch_argv(job), self.job_script(job), "the job")[0]

    def _sbatch(self, argv: list[str], script: str, what: str, tasks: int = 0) -> list[str]:
        """Run ``argv`` (an sbatch) with ``script`` on stdin; the job's id (``tasks``: the ids of
        an array's first ``tasks`` tasks), each then known by the submission's token."""
        # A token in the job's Comment finds the job again when sbatch's answer is lost
        # (timeout, dropped connection, cut output): a submission is never retried blindly.
        token = f"{TOKEN_MARK}{uuid.uuid4().hex}"

        def job_id_of(out: str) -> str | None:
            job_id = out.strip().split(";")[0]
            return job_id if _JOB_ID.fullmatch(job_id) else None

        def refused(exc: CommandError) -> SubmissionError:
            return SubmissionError(f"sbatch refused {what}: {exc.stderr.strip() or exc}")

        # surrogateescape: a str made from non-UTF-8 bytes (os.fsdecode) gives those bytes back
        job_id = self.submit_with_token([*argv, f"--comment={token}"], script.encode("utf-8", "surrogateescape"),
                                        token, job_id_of, refused)
        ids = [f"{job_id}_{n}" for n in range(tasks)] if tasks else [job_id]
        self._tokens.update(dict.fromkeys(ids, token))
        return ids

    def job_with_token(self, token: str) -> str | None:
        """The id of this user's job (or array: its own id) whose Comment is ``token`` (one ``squeue``)."""
        out = self.runner.run(["squeue", "-h", "--me", "-t", "all", "-o", "%i|%k"]).stdout
        if out and not out.endswith("\n"):
            raise ValueError("squeue's listing was cut short")  # the job may be in the missing part
        for line in complete_lines(out):
            job_id, _, comment = line.partition("|")
            base = job_id.partition("_")[0]  # an array's tasks: 12_3, 12_[4-9]
            if comment == token and _JOB_ID.fullmatch(base):
                return base
        return None

    # -- job arrays -------------------------------------------------------------------------------
    def array_key(self, job: Job) -> Hashable | None:
        """Jobs with the same sbatch options but the name, and the same directives, share arrays."""
        argv = [a for a in self.sbatch_argv(job) if not a.startswith("--job-name=")]
        return (tuple(argv), tuple(self.directives(job)))

    def max_array_size(self) -> int:
        """``MaxArraySize`` of ``scontrol show config`` (asked once; its default, 1001, when the
        answer cannot be read): the tasks of one array are numbered 0 to MaxArraySize - 1."""
        if self._max_array_size is None:
            try:
                out = self.runner.run(["scontrol", "show", "config"]).stdout
            except CommandError as exc:
                if self.logger:
                    self.logger.warning("cannot read MaxArraySize (%s): assuming Slurm's default, 1001", exc)
                return DEFAULT_MAX_ARRAY_SIZE
            found = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
            self._max_array_size = int(found.group(1)) if found else DEFAULT_MAX_ARRAY_SIZE
        if self._max_array_size < 1:
            raise ArraysRefused("Slurm's MaxArraySize is 0: job arrays are disabled on this cluster")
        return self._max_array_size

    def array_chunks(self, jobs: Sequence[Job]) -> list[int]:
        """Arrays whose scripts stay under :data:`MAX_SCRIPT_BYTES` (Slurm refuses larger ones)."""
        return chunk_sizes([len(self.job_script(job, directives=False).encode("utf-8", "surrogateescape")) + 16
                            for job in jobs], MAX_SCRIPT_BYTES)

    def submit_array(self, jobs: Sequence[Job]) -> list[str]:
        """One ``sbatch --array=0-N`` whose script runs task n's own job script (see
        :mod:`soma_schedulers.arrays`). The array takes the jobs' name when they all have the
        same, else none (Slurm has one name for every task of an array)."""
        self.max_array_size()  # ArraysRefused when the cluster takes none
        names = {job.name for job in jobs}
        argv = [a for a in self.sbatch_argv(jobs[0]) if not a.startswith("--job-name=")]
        if len(names) == 1 and jobs[0].name:
            argv.append("--job-name=" + _NAME_BAD.sub("_", jobs[0].name))
        argv.append(f"--array=0-{len(jobs) - 1}")
        script = array_script([self.job_script(job, directives=False) for job in jobs], "$SLURM_ARRAY_TASK_ID",
                              directives=self.directives(jobs[0]))
        return self._sbatch(argv, script, f"the array of {len(jobs)} jobs", tasks=len(jobs))

    # -- polling --------------------------------------------------------------------------------
    def query_jobs(self, ids: Sequence[str]) -> dict[str, Observation]:
        return self._observe(ids, None)

    def observe_attached(self, ids: Sequence[str]) -> dict[str, Observation]:
        """The poll's two queries, which also ask for each job's owner (``squeue %U``, ``sacct
        UID``): every job either knows. One whose end accounting has not completely recorded
        yet (its record still has a live step) is given as undetermined, not left out."""
        owners: dict[str, str] = {}
        result = self._observe(ids, owners)
        for job_id in ids:
            if job_id in owners:
                result.setdefault(job_id, Observation(C.UNDETERMINED)).owner = owners[job_id]
        return result

    def forgetting(self) -> str:
        if self._accounting is False:
            return ("without accounting, Slurm forgets a job MinJobAge seconds after its end: 300 by "
                    "default")
        return "sacct has no such job either"

    def _observe(self, ids: Sequence[str], owners: dict[str, str] | None) -> dict[str, Observation]:
        """One ``squeue`` for ``ids``, one ``sacct`` for those it does not show live. ``owners``
        (attach): also ask for the owners' uids and put them there."""
        result: dict[str, Observation] = {}
        ended: dict[str, str] = {}  # id -> squeue state, for jobs squeue shows as ended
        out = self._squeue(ids, owners is not None)
        for line in complete_lines(out):
            parts = line.split("|", 6 if owners is not None else 5)
            if len(parts) < (7 if owners is not None else 6):
                continue
            job_id, submit, state, reason, _start, *owner, comment = parts
            state = state.split()[0] if state else ""
            if job_id not in ids or not self._ours(job_id, comment, submit):
                continue
            if owners is not None:
                owners[job_id] = owner[0]
            # (Reason "JobLaunchFailure" is no proof: 22.05 also gives it to a job whose
            # batch shell dies of a signal at once.)
            if comment.startswith(LAUNCH_MARK):
                self._comments[job_id] = comment
            if state in _ENDED:
                ended[job_id] = state
                self._ended_seen.setdefault(job_id, time.monotonic())
            elif state == "PENDING":
                if reason == "JobHeldUser":
                    result[job_id] = Observation(C.USER_ON_HOLD)
                elif reason == "JobHeldAdmin":
                    result[job_id] = Observation(C.SYSTEM_ON_HOLD)
                else:
                    result[job_id] = Observation(C.QUEUED_ACTIVE)
            else:
                result[job_id] = Observation(_LIVE.get(state, C.UNDETERMINED))
        finished = [i for i in ids if i not in result]
        if finished:
            result.update(self._finished(finished, ended, owners))
        return result

    def _ours(self, job_id: str, comment: str, submit: str) -> bool:
        """Whether a squeue line of ``job_id`` is the job we follow: not when its Comment holds
        another submission's token (the controller gave the id again); remember then when that
        other job was submitted. Ours: remember its token (an attached job's) and Submit time."""
        token = self._tokens.get(job_id)
        if comment.startswith(TOKEN_MARK):
            if token is not None and comment != token:
                if job_id not in self._reused and self.logger:
                    self.logger.warning("job %s: Slurm gave its id to another job (submitted %s)", job_id, submit)
                self._reused.setdefault(job_id, submit)
                return False
            self._tokens[job_id] = comment
        if submit and job_id not in self._reused:
            self._submitted.setdefault(job_id, submit)
        return True

    def _squeue(self, ids: Sequence[str], owners: bool = False) -> str:
        # the Comment last: it may hold "|"
        fields = "%i|%V|%T|%r|%S|%U|%k" if owners else "%i|%V|%T|%r|%S|%k"
        argv = ["squeue", "-h", *_tasks_apart(ids), "-t", "all", "-j", ",".join(ids), "-o", fields]
        try:
            return self.runner.run(argv).stdout
        except CommandError as exc:
            # squeue fails when none of the ids is known any more: not an error for us.
            if "Invalid job id" in exc.stderr:
                return ""
            raise

    def _finished(self, ids: list[str], ended: dict[str, str],
                  owners: dict[str, str] | None = None) -> dict[str, Observation]:
        obs: dict[str, Observation] = {}
        if self._accounting is not False:
            obs = self._sacct(ids, owners, ended)
        # Jobs squeue shows as ended but accounting has not recorded yet: wait a little
        # (exit info must be complete the first time it is given), then use squeue's.
        late = [i for i in ids if i not in obs and i in ended]
        if late and self._accounting:
            now = time.monotonic()
            late = [i for i in late if now - self._ended_seen.get(i, now) >= self.accounting_grace]
            for i in ids:
                if i in ended and i not in obs and i not in late:
                    obs[i] = Observation(C.RUNNING)
        if late:
            obs.update(self._squeue_exit_codes(late, ended))
        for i in ids:  # an array task cancelled while pending vanishes from squeue and sacct
            if i not in obs and i not in ended and i in self._cancelled_waiting:
                obs[i] = Observation(C.DONE, ended=True, cancelled=True, started=False)
        for i in obs:
            if obs[i].ended:
                self._comments.pop(i, None)
                self._ended_seen.pop(i, None)
        return obs

    def _observation(self, job_id: str, state: str, code: int | None, sig: int | None,
                     started: bool | None, usage: bytes | None, cancelled_by: str | None = None) -> Observation:
        comment = self._comments.get(job_id, "")
        launch_error = None
        if comment.startswith(LAUNCH_MARK) and code == LAUNCH_ERROR_EXIT:
            launch_error = comment[len(LAUNCH_MARK) + 1:].strip() or "the command could not be started"
        return Observation(
            C.DONE, ended=True, exit_code=code, term_sig=sig,
            cancelled=state == "CANCELLED",
            aborted=f"Slurm ended the job: {state}" if state in _ABORTED else None,
            launch_error=launch_error, started=started, usage=usage, cancelled_by=cancelled_by,
        )

    #: The sacct fields of the poll (``UID`` too for attach, before the Comment, which may hold "|").
    SACCT_FIELDS = ("JobIDRaw", "Submit", "State", "ExitCode", "Start", "ElapsedRaw", "TotalCPU", "MaxRSS", "NCPUS",
                    "NodeList", "Reason", "Comment")

    def _sacct(self, ids: list[str], owners: dict[str, str] | None = None,
               ended: Mapping[str, str] | None = None) -> dict[str, Observation]:
        fields = self.SACCT_FIELDS if owners is None else (*self.SACCT_FIELDS[:-1], "UID", "Comment")
        if any("_" in i for i in ids):
            fields = ("JobID", *fields[1:])  # an array task's record: JobID 12_3 (its JobIDRaw is its own)
        # -D: every record of each id (runs of a requeued job, jobs given the id again); ours is picked
        records = query_sacct_records(self.runner, ids, fields, ["-D", "-j", ",".join(ids)])
        if records is None:
            self._accounting = False
            return {}
        self._accounting = True
        result: dict[str, Observation] = {}
        for job_id in ids:
            job = pick_record(records.get(job_id, []), self._tokens.get(job_id), self._submitted.get(job_id, ""),
                              self._reused.get(job_id, ""))
            if job is None:
                continue
            if owners is not None and job.owner() is not None:
                owners[job_id] = str(job.owner())
            if not job.ended or self._incomplete(job_id, job, job_id in (ended or {})):
                continue
            if job["Comment"].startswith(LAUNCH_MARK):
                self._comments[job_id] = job["Comment"]
            code, sig = job.exit()
            result[job_id] = self._observation(job_id, job.state, code, sig, job.started(), job.usage(ncpus=True),
                                               job.cancelled_by)
        return result

    def _incomplete(self, job_id: str, job: SacctJob, squeue_lists_it: bool) -> bool:
        """Whether the job's accounting record is not complete yet (:meth:`SacctJob.half_written`:
        seen under load on Slurm 22.05, a CI run 2026-11-24 and 4 clients on slurm-cluster
        2026-11-29). Such a record waits ``accounting_grace`` seconds; after that squeue's exit
        code is used while squeue still lists the job (``_finished``), else the record is
        believed as it stands."""
        if not job.half_written():
            self._steps_running.pop(job_id, None)
            return False
        now = time.monotonic()
        if squeue_lists_it or now - self._steps_running.setdefault(job_id, now) < self.accounting_grace:
            return True
        del self._steps_running[job_id]
        return False

    def _squeue_exit_codes(self, ids: list[str], ended: dict[str, str]) -> dict[str, Observation]:
        """Exit codes from squeue (raw wait status) when accounting cannot tell."""
        tasks = _tasks_apart(ids)
        # -O JobID gives an array task's own job id (68), not 17_48: ask ArrayJobID and ArrayTaskID
        name = "ArrayJobID:20,ArrayTaskID:20" if tasks else "JobID:30"
        argv = ["squeue", "-h", *tasks, "-t", "all", "-j", ",".join(ids), "-O",
                f"{name},exit_code:16,TimeUsed:24,NodeList:200"]
        try:
            out = self.runner.run(argv).stdout
        except CommandError as exc:
            if "Invalid job id" in exc.stderr:
                return {}
            raise
        result: dict[str, Observation] = {}
        for line in complete_lines(out):
            f = line.split()
            if tasks and len(f) > 1:  # ArrayJobID ArrayTaskID (N/A for a job that is no array)
                f[:2] = [f"{f[0]}_{f[1]}" if f[1].isdigit() else f[0]]
            if len(f) < 2 or f[0] not in ended or not f[1].lstrip("-").isdigit():
                continue
            code, sig = decode_wait_status(int(f[1]))
            started = len(f) > 3  # a job that never ran has no node list
            wall = parse_hms(f[2]) if len(f) > 2 else None
            usage = format_usage(walltime=wall) if started and wall is not None else None
            result[f[0]] = self._observation(f[0], ended[f[0]], code, sig, started, usage)
        return result

    # -- cancel ---------------------------------------------------------------------------------------
    def cancel_job(self, job_id: str) -> None:
        if "_" in job_id and self.last_status(job_id) in C.WAITING_STATES:
            self._cancelled_waiting.add(job_id)  # a pending task cancelled alone leaves no record
        self.runner.run(["scancel", job_id])

    def on_end(self, job_id: str) -> None:
        self._cancelled_waiting.discard(job_id)
        for per_job in (self._tokens, self._submitted, self._reused):
            per_job.pop(job_id, None)

    def __repr__(self) -> str:
        prefix = shlex.join(self.runner.prefix) if self.runner.prefix else "local"
        return f"<SlurmScheduler via {prefix}>"
