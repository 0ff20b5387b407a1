"""Jobs of other DRMAA sessions, for :meth:`DrmaaScheduler.attach
<soma_schedulers.batch.CommandLineScheduler.attach>`: :class:`SgeAttached` and
:class:`SlurmAttached`, which the families (:mod:`.sge`, :mod:`.slurm`) name.

``jobStatus`` answers for any live job of the DRMS (SGE 8.1.9 and slurm-drmaa 1.1.6), but ``wait``
only for the jobs of its own session (SGE: ``InvalidJobException`` for the others), and a job that
ended is unknown to ``jobStatus`` once the DRMS dropped it. So an attached job's status comes from
``jobStatus`` and its end from the DRMS's accounting:

* SGE: ``qacct -j ID`` (one per ended job, every :data:`ASK_EVERY` seconds until it has the
  record). SGE records no deleter, and records a running job deleted with ``qdel`` exactly as one
  that died of SIGKILL on its own (``failed 100 : assumedly after job``, ``exit_status 137``, measured
  on 8.1.9 with ``qdel`` and with ``kill -9 $$``): an attached job that ended so counts as deleted.
  A job deleted before it ran gets no accounting record: qmaster lists it among its finished jobs
  (``qstat -s z``, the last ``finished_jobs`` ones, 100 by default) and then forgets it. An ended
  job still without a record :data:`UNRECORDED_GRACE` seconds later (accounting is written every
  ``flush_time``, 15 s by default) never ran, unless it was last seen running (then ``aborted``).
* Slurm (slurm-drmaa): one ``sacct`` with the owner's ``UID`` and ``State`` (``CANCELLED by <uid>``)
  for every attached job ``jobStatus`` no longer shows live; a job whose record is not there yet
  keeps its last status for at most :data:`UNRECORDED_GRACE` seconds; without accounting,
  ``jobStatus``'s ``done`` is exit 0 and ``failed`` an end nothing can explain (``aborted``).
  slurm-drmaa 1.1.6 answers ``failed`` for an id Slurm never had (and ``wait`` gives it an exit
  status 255), so attach asks ``sacct``, then ``squeue``, whether Slurm knows the job.
"""

from __future__ import annotations

import logging
import re
import signal
import time
from collections.abc import Callable, Container, Mapping, Sequence

from ... import constants as C
from ...errors import CommandError, CommandNotFoundError
from ...polled import Observation
from ...runner import CommandRunner
from ...usage import format_usage, memory_to_kb, parse_hms
from ..slurm_accounting import ABORTED, SacctJob, complete_lines, query_sacct
from .common import LIVE

__all__ = ["ASK_EVERY", "UNRECORDED_GRACE", "AttachedJobs", "SgeAttached", "SlurmAttached", "end_record",
           "is_record_of", "parse_qacct", "qacct_argv", "sge_end", "slurm_end"]

#: Seconds between two accounting asks about the same attached job (SGE: ``qacct``, one per job).
ASK_EVERY = 2.0
#: Seconds an ended attached job may lack its accounting record before its end is decided without.
UNRECORDED_GRACE = 30.0
#: The sacct fields of an attached job (its owner's ``UID`` too).
SACCT_FIELDS = ("JobIDRaw", "State", "ExitCode", "Start", "ElapsedRaw", "TotalCPU", "MaxRSS", "NodeList", "UID")
#: qacct without the job's record: none yet, or no accounting file yet (no job ended since SGE started)
_NO_RECORD = re.compile(r"not found|accounting: No such file or directory")
_ZOMBIE = re.compile(r"^\s*(\d+)\s", re.MULTILINE)
_SIGKILL_EXIT = 128 + int(signal.SIGKILL)
#: qacct's ``failed`` code of the record SGE writes when it requeues a job (not its end)
_RESCHEDULED = "25"


def qacct_argv(job_id: str) -> list[str]:
    """``qacct -j ID``, for an array task (``12.3``: SGE's DRMAA task id) ``qacct -j 12 -t 3``."""
    job, _, task = job_id.partition(".")
    return ["qacct", "-j", job, *(["-t", task] if task else [])]


def is_record_of(record: Mapping[str, str], job_id: str) -> bool:
    """Whether a :func:`parse_qacct` record is job ``job_id``'s (an array task's: its task's)."""
    job, _, task = job_id.partition(".")
    return record.get("jobnumber") == job and (not task or record.get("taskid") == task)


def end_record(text: str, job_id: str) -> dict[str, str] | None:
    """The end record of job ``job_id`` in ``qacct -j ID`` output: its last record, None when that
    is not the job's or is a rescheduling record (``failed 25 : rescheduling``, written when
    ``qmod -rj`` or a lost host requeues a job: the rerun's record follows, ``flush_time`` after
    its end)."""
    record = parse_qacct(text)
    if not is_record_of(record, job_id) or record.get("failed", "").split(":")[0].strip() == _RESCHEDULED:
        return None
    return record


def parse_qacct(text: str) -> dict[str, str]:
    """The last record of ``qacct -j ID`` output as ``{field: value}`` (a rerun job has several)."""
    records: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if line.startswith("====="):
            records.append({})
            continue
        key, _, value = line.partition(" ")
        if key:
            records[-1][key] = value.strip()
    return next((r for r in reversed(records) if r), {})


def _seconds(text: str) -> float | None:
    return parse_hms(text.strip().removesuffix("s")) if text else None


def sge_end(record: Mapping[str, str]) -> Observation:
    """An SGE accounting record (:func:`parse_qacct`) as an ended Observation.

    ``failed 0``: the job's exit code (129-192: death by signal ``code - 128``, the shell's
    convention); ``failed 100`` (ended by a signal) with 137: deleted (``qdel`` kills with SIGKILL;
    SGE records no more); ``failed 100`` with another ``128 + s``: died of signal s; any other
    ``failed``: SGE ended the job (a limit, a start failure), ``aborted`` with its reason.
    """
    failed = record.get("failed", "").split(":")[0].strip()
    code_text = (record.get("exit_status") or "").split()[:1]
    code = int(code_text[0]) if code_text and code_text[0].isdigit() else None
    started = record.get("start_time", "-/-") not in ("", "-/-")
    # (no mem: qacct 8.1.9 prints ru_maxrss, which is in kB, as bytes: "4.133KB" for 4133 kB)
    usage = format_usage(
        cput=_seconds(record.get("cpu", "")), walltime=_seconds(record.get("ru_wallclock", "")),
        vmem_kb=memory_to_kb(record["maxvmem"]) if record.get("maxvmem") else None,
    ) if started else b""
    obs = Observation(C.DONE, ended=True, started=started, usage=usage or None, owner=record.get("owner") or None)
    signalled = code is not None and 128 < code <= 128 + 64
    if failed == "0" and code is not None:
        obs.exit_code, obs.term_sig = (None, code - 128) if signalled else (code, None)
    elif failed == "100" and code == _SIGKILL_EXIT:
        obs.cancelled = True
    elif failed == "100" and signalled and code is not None:
        obs.term_sig = code - 128
    else:
        obs.exit_code = code
        obs.aborted = f"SGE accounting: failed {record.get('failed', '?')}"
    return obs


def slurm_end(job: SacctJob) -> Observation | None:
    """A job's ``sacct`` record (fields :data:`SACCT_FIELDS`) as an ended Observation; None while live."""
    if not job.ended:
        return None
    code, sig = job.exit()
    return Observation(C.DONE, ended=True, exit_code=code, term_sig=sig, cancelled=job.state == "CANCELLED",
                       aborted=f"Slurm ended the job: {job.state}" if job.state in ABORTED else None,
                       started=job.started(), usage=job.usage(), owner=job.owner(),
                       cancelled_by=job.cancelled_by)


class AttachedJobs:
    """The attached jobs of one DrmaaScheduler: how to observe them (see the module docstring).
    This base knows their live states only (``jobStatus``); the subclasses their ends.

    ``status(id)`` is the scheduler's ``jobStatus`` (None when DRMAA does not know the job; raises
    :class:`CommandError` when the DRMS cannot be asked); ``runner`` runs ``qacct``/``qstat``/``sacct``.
    """

    def __init__(self, runner: CommandRunner, status: Callable[[str], str | None],
                 logger: logging.Logger | None = None) -> None:
        self.runner = runner
        self.status = status
        self.logger = logger
        self._last: dict[str, str] = {}  # id -> last live status seen
        self._gone: dict[str, float] = {}  # id -> when it was first seen no longer live
        self._asked: dict[str, float] = {}  # id -> last accounting ask (SGE)
        self.accounting: bool | None = None

    def lookup(self, ids: Sequence[str]) -> dict[str, Observation]:
        """For ``attach``: what the DRMS knows of ``ids`` (those it does not know left out)."""
        return self._observe(ids, (), attaching=True)

    def observe(self, ids: Sequence[str], terminated: Container[str]) -> dict[str, Observation]:
        """For a poll: an Observation for each of ``ids`` (an end, or the last status while its
        record is awaited); left out: a Slurm job the DRMS forgot. ``terminated``: jobs this
        scheduler killed."""
        return self._observe(ids, terminated, attaching=False)

    def forget(self, job_id: str) -> None:
        """Drop what is kept about ``job_id`` (its end is recorded)."""
        self._last.pop(job_id, None)
        self._gone.pop(job_id, None)
        self._asked.pop(job_id, None)

    def _observe(self, ids: Sequence[str], terminated: Container[str], attaching: bool) -> dict[str, Observation]:
        result: dict[str, Observation] = {}
        states: dict[str, str | None] = {}
        for job_id in ids:
            state = self.status(job_id)
            states[job_id] = state
            if state in LIVE:
                self._last[job_id] = str(state)
                self._gone.pop(job_id, None)
                result[job_id] = Observation(str(state))
        self.ended(ids, states, terminated, result, attaching)
        return result

    def ended(self, ids: Sequence[str], states: Mapping[str, str | None], terminated: Container[str],
              result: dict[str, Observation], attaching: bool) -> None:
        """Put in ``result`` the Observations of the jobs of ``ids`` not there (not live): their
        ends, or their last status while it is awaited. ``states``: what ``jobStatus`` said of
        each (None: unknown to DRMAA). This base knows no end: such jobs are left out."""

    def _waited(self, job_id: str) -> bool:
        """Whether the job's record has been awaited long enough (the clock starts now)."""
        return time.monotonic() - self._gone.setdefault(job_id, time.monotonic()) >= UNRECORDED_GRACE

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self._last)} seen live>"


class SgeAttached(AttachedJobs):
    """SGE's attached jobs: ends from ``qacct -j ID`` (see the module docstring)."""

    def ended(self, ids: Sequence[str], states: Mapping[str, str | None], terminated: Container[str],
              result: dict[str, Observation], attaching: bool) -> None:
        ids = [i for i in ids if i not in result]
        zombies: set[str] | None = None
        for job_id in ids:
            record = self._qacct(job_id, force=attaching)
            if record is not None:
                result[job_id] = sge_end(record)
                continue
            if attaching:
                if zombies is None:
                    zombies = self._zombies()
                if not self.is_zombie(job_id, zombies) and states[job_id] is None:
                    continue  # unknown: neither live, nor finished, nor accounted
            last = self._last.get(job_id)
            if job_id in terminated and last in C.WAITING_STATES:
                result[job_id] = Observation(C.DONE, ended=True, cancelled=True, started=False)
            elif not self._waited(job_id):
                result[job_id] = Observation(last or C.UNDETERMINED)
            elif last is None or last in C.WAITING_STATES:
                # deleted before it ran: SGE writes no accounting record for such a job
                result[job_id] = Observation(C.DONE, ended=True, cancelled=True, started=False)
            else:
                result[job_id] = Observation(C.DONE, ended=True, aborted=(
                    f"SGE has no accounting record of the job {UNRECORDED_GRACE:g} s after its end"))

    def _qacct(self, job_id: str, force: bool) -> dict[str, str] | None:
        now = time.monotonic()
        if self.accounting is False or (not force and now - self._asked.get(job_id, -ASK_EVERY) < ASK_EVERY):
            return None
        self._asked[job_id] = now
        try:
            result = self.runner.run(qacct_argv(job_id), check=False)
        except CommandNotFoundError:
            self.accounting = False
            return None
        if result.returncode == 0:
            return end_record(result.stdout, job_id)
        if not _NO_RECORD.search(result.stderr + result.stdout):
            raise CommandError(result.argv, result.returncode, result.stderr, result.stdout)
        return None

    def _zombies(self) -> set[str]:
        """The jobs qmaster lists as finished (``qstat -s z``): the last ``finished_jobs`` ones."""
        out = self.runner.run(["qstat", "-s", "z", "-u", "*"]).stdout
        return set(_ZOMBIE.findall(out))

    @staticmethod
    def is_zombie(job_id: str, zombies: set[str]) -> bool:
        """Whether ``job_id`` (an array task: its array) is among the finished jobs ``zombies``."""
        return job_id.partition(".")[0] in zombies

class SlurmAttached(AttachedJobs):
    """Slurm's attached jobs (slurm-drmaa): ends and owners from ``sacct`` (see the module docstring)."""

    def ended(self, ids: Sequence[str], states: Mapping[str, str | None], terminated: Container[str],
              result: dict[str, Observation], attaching: bool) -> None:
        asked = list(ids) if attaching else [i for i in ids if i not in result]  # attach: owners too
        if not asked:
            return
        records = self._sacct(asked)
        # slurm-drmaa 1.1.6 says "failed" of any id, one Slurm never had too: squeue and sacct tell
        owners = self._squeue_owners([i for i in asked if i not in records]) if attaching else {}
        for job_id in asked:
            fields = records.get(job_id)
            end = slurm_end(fields) if fields is not None else None
            owner = (fields.owner() if fields is not None else None) or owners.get(job_id)
            if job_id in result:  # live: the owner, from its record
                result[job_id].owner = owner
                continue
            if end is not None:
                result[job_id] = end
                continue
            state = states[job_id]
            if fields is None and (job_id not in owners if attaching else state is None and self._waited(job_id)):
                continue  # Slurm does not know it (any more)
            if self.accounting is False or self._waited(job_id):
                if state == C.DONE:
                    result[job_id] = Observation(C.DONE, ended=True, exit_code=0, started=True)
                    continue
                if state == C.FAILED:
                    result[job_id] = Observation(C.DONE, ended=True, aborted=(
                        "slurm-drmaa says the job failed and Slurm has no accounting record of it"))
                    continue
            # its end is not recorded yet: its last status meanwhile
            result[job_id] = Observation(self._last.get(job_id, C.UNDETERMINED), owner=owner)

    def _squeue_owners(self, ids: list[str]) -> dict[str, str]:
        """The owners' uids of the jobs of ``ids`` slurmctld knows (one ``squeue``)."""
        if not ids:
            return {}
        try:
            out = self.runner.run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%U"]).stdout
        except CommandError as exc:
            if "Invalid job id" in exc.stderr:
                return {}  # none of them
            raise
        return dict(line.split("|", 1) for line in complete_lines(out) if "|" in line)

    def _sacct(self, ids: list[str]) -> dict[str, SacctJob]:
        try:
            # an array task's record: JobID 12_3 (its JobIDRaw is its own)
            jobs = query_sacct(self.runner, ids, ("JobID", *SACCT_FIELDS[1:]) if any("_" in i for i in ids)
                               else SACCT_FIELDS)
        except CommandNotFoundError:
            jobs = None
        self.accounting = jobs is not None
        return jobs or {}
