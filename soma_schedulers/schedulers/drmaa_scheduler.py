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
the scripts of jobs not seen to end (they outlive the scheduler, see ``drmaa_attach``).
A script that cannot start its command writes the reason to
``<script>.launch`` and exits 127: the job ends ``failed``/``aborted``.

Polling: DRMAA has no batched status call, so a poll costs one
``jobStatus`` per unfinished job (``status_cache_seconds`` shared by every
caller and thread), plus one ``wait(id, TIMEOUT_NO_WAIT)`` to reap each job
that ended. DRMAA reaps a job once; its exit info is kept.

slurm-drmaa (1.1.6, seen on Slurm 22.05 and 24.11): it runs the command under
a bash that turns a death by signal N into exit 128+N, reported as exited and
signalled (read as signal N here); it gives no resource usage (zeros), reports
a time limit as SIGTERM, and assumes exit 0 for a job that ran and left
slurmctld before it was polled. So an ended job also gets one ``sacct`` (for
all the jobs that ended in a poll): start, usage and Slurm's end state come from
the accounting record, which the job waits for (as its last live state) at most
:data:`ACCOUNTING_GRACE` seconds; DRMAA's exit code is kept (sacct drops the
high bit of an exit code) unless it is slurm-drmaa's assumed 0. Without
accounting, DRMAA's report is used alone and there is no usage.

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
it, whatever fails in the same poll. A submission is never retried blindly:
on SGE and Slurm the job name carries a unique token (``<name>.soma<hex>``,
name ``job`` by default), and after such a failure the job is looked for by
that name (SGE: ``qstat -j``, then ``qacct -j`` for a job that ended at once;
Slurm: ``squeue --name``, then ``sacct --name``): found, it is tracked;
absent, ``runJob`` is retried (up to ``command_retries`` times); when the DRMS
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

import contextlib
import ctypes.util
import importlib.util
import itertools
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import constants as C
from ..batch import CommandLineScheduler, Observation
from ..config import SchedulerConfig
from ..errors import (
    CommandError,
    CommandNotFoundError,
    ConfigurationError,
    SchedulerUnavailableError,
    SubmissionError,
)
from ..job import Job
from ..scheduler import CAPABILITIES
from ..scripts import LAUNCH_ERROR_EXIT, build_script
from ..usage import format_usage, memory_to_kb, parse_hms
from .drmaa_attach import FORGETTING, AttachedJobs, parse_qacct
from .slurm_scheduler import complete_lines, run_sacct, split_sacct

__all__ = ["DrmaaScheduler", "drmaa_unavailable_reason", "job_name", "parse_qacct", "usage_from_rusage"]

#: Default parent of the private script directories (``options["tmp_dir"]``).
DEFAULT_TMP_DIR = "~/.soma-schedulers/drmaa"
#: Suffix of the file a job script writes when it cannot start its command.
LAUNCH_SUFFIX = ".launch"
#: Shell command run by the job script on a launch error (``$0`` is the script).
LAUNCH_REPORT = f"printf '%s\\n' \"$soma_reason\" >\"$0{LAUNCH_SUFFIX}\" 2>/dev/null"

# The script path is a DRMAA argument, which SGE hands to a shell unquoted.
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./,+=@%:-]+")
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.,+=-]")
_LIVE = {
    C.QUEUED_ACTIVE, C.SYSTEM_ON_HOLD, C.USER_ON_HOLD, C.USER_SYSTEM_ON_HOLD, C.RUNNING,
    C.SYSTEM_SUSPENDED, C.USER_SUSPENDED, C.USER_SYSTEM_SUSPENDED,
}
#: Native-specification templates for ``parallel_job_info``, by DRMAA implementation family.
PARALLEL_TEMPLATES = {
    "sge": "-pe {config_name} {max_node}",
    "slurm": "--nodes={nodes_number} --ntasks-per-node={cpu_per_node}",
    "pbs": "-l nodes={nodes_number}:ppn={cpu_per_node}",
}
_QUEUE_TEMPLATES = {"sge": "-q {queue}", "slurm": "--partition={queue}", "pbs": "-q {queue}"}
_PARALLEL_ENV_KEYS = ("PARALLEL_ENV_MPI_BIN", "PARALLEL_ENV_NODE_FILE")
#: Seconds an ended slurm-drmaa job waits for its Slurm accounting record (it lags 0.2-2.5 s).
ACCOUNTING_GRACE = 10.0
#: DRMAA errors after which a call may or may not have reached the DRMS (class names).
TRANSIENT_ERRORS = ("DrmCommunicationException", "TryLaterException")
#: What a job name carries before the submission's token (SGE, Slurm).
TOKEN_MARK = ".soma"
#: Seconds after ``runJob`` by which SGE has the accounting record of a job that ended at once.
SGE_ACCOUNTING_SETTLE = 3.0
#: Seconds an SGE job that DRMAA calls aborted waits for its accounting record (``qacct``). After
#: an ``sge_qmaster`` restart libdrmaa reports the jobs whose end it missed as aborted, and their
#: ends reach the accounting file 30 to 60 s after qmaster is back.
SGE_ACCOUNTING_GRACE = 180.0
#: Seconds an SGE job that DRMAA calls ended may keep failing ``wait`` before its end is taken
#: from the accounting file instead (libdrmaa's event client can be gone for good: ``qconf -kec``).
SGE_WAIT_FALLBACK = 10.0
#: Seconds between two ``qacct`` asks about the same waiting jobs.
SGE_ACCOUNTING_EVERY = 2.0
#: Attempts at finding a submission whose answer was lost (SGE may be failing right now).
LOOKUP_ATTEMPTS = 5
#: By implementation family: how a lost submission is looked for (the method taking the job's
#: unique name) and deleted by that name. The others cannot be asked: no retry.
_BY_NAME: dict[str, tuple[str, Callable[[str], list[str]]]] = {
    "sge": ("_sge_job_named", lambda name: ["qdel", name]),
    "slurm": ("_slurm_job_named", lambda name: ["scancel", f"--name={name}"]),
}
_SGE_JOB_NUMBER = re.compile(r"^job_number:\s+(\d+)\s*$", re.MULTILINE)
_SGE_ACCT_NUMBER = re.compile(r"^jobnumber\s+(\d+)\s*$", re.MULTILINE)
_SACCT_FIELDS = "JobIDRaw,State,ExitCode,Start,ElapsedRaw,TotalCPU,MaxRSS,NodeList"
_SLURM_ABORTED = {"TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "REVOKED"}
_SLURM_LIVE = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING",
               "SIGNALING", "STAGE_OUT", "STOPPED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def import_drmaa() -> ModuleType:
    """Import the ``drmaa`` package (which loads libdrmaa), or raise SchedulerUnavailableError."""
    try:
        import drmaa
    except ImportError as exc:
        raise SchedulerUnavailableError(
            "the drmaa scheduler needs the 'drmaa' Python package (pip install drmaa) and the DRMS's "
            f"libdrmaa named by DRMAA_LIBRARY_PATH: {_one_line(exc)}"
        ) from None
    except (RuntimeError, OSError) as exc:
        raise SchedulerUnavailableError(
            f"no usable DRMAA library: set DRMAA_LIBRARY_PATH to the DRMS's libdrmaa.so ({_one_line(exc)})"
        ) from None
    module: ModuleType = drmaa
    return module


def drmaa_unavailable_reason(environ: Mapping[str, str] | None = None) -> str | None:
    """What :meth:`DrmaaScheduler.unavailable_reason` says (``environ``: default ``os.environ``)."""
    env = os.environ if environ is None else environ
    if importlib.util.find_spec("drmaa") is None:
        return "the 'drmaa' Python package is not installed (pip install drmaa)"
    path = env.get("DRMAA_LIBRARY_PATH")
    if path:
        if not os.path.isfile(path):
            return f"DRMAA_LIBRARY_PATH names {path}, which is not a file"
        return None
    if ctypes.util.find_library("drmaa") is None:
        return "no libdrmaa: set DRMAA_LIBRARY_PATH to the DRMS's libdrmaa.so"
    return None


def job_name(name: str) -> str:
    """A job name every DRMAA implementation accepts (SGE refuses spaces, ``/:@\\*?``,
    non-ASCII text and a leading digit)."""
    clean = _NAME_BAD.sub("_", name)[:128] or "job"
    return "j" + clean if clean[0].isdigit() else clean


def _number(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def usage_from_rusage(rusage: Mapping[str, str]) -> bytes | None:
    """DRMAA's ``resourceUsage`` dict in the contract's format (None when it says nothing).

    SGE gives ``cpu`` (s), ``ru_wallclock`` (s), ``ru_maxrss`` (kB) and
    ``maxvmem`` (bytes); others give ``cpu``/``cput``, ``walltime``, ``mem``
    and ``vmem`` with units. SGE's ``mem`` (GB s) and ``vmem`` (current) are not
    the peaks the contract asks for, so they are used only without the SGE keys.
    """
    def seconds(*keys: str) -> float | None:
        for key in keys:
            if key in rusage:
                value = parse_hms(str(rusage[key]))
                if value is not None:
                    return value
        return None

    cput = seconds("cpu", "cput")
    wall = seconds("ru_wallclock", "walltime")
    if "ru_maxrss" in rusage:
        mem = int(_number(rusage["ru_maxrss"]) or 0)
    else:
        mem = memory_to_kb(str(rusage.get("mem", ""))) or 0
    if "maxvmem" in rusage:
        vmem = int((_number(rusage["maxvmem"]) or 0) / 1024)
    else:
        vmem = memory_to_kb(str(rusage.get("vmem", ""))) or 0
    text = format_usage(cput=cput, mem_kb=mem or None, vmem_kb=vmem or None, walltime=wall)
    return text or None


def signal_number(name: str) -> int | None:
    """``"SIGTERM"`` (or ``"15"``) as 15; None when unknown."""
    name = name.strip()
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        return None


def implementation_family(implementation: str) -> str:
    """``"sge"``, ``"slurm"`` or ``"pbs"`` from DRMAA's ``drmaaImplementation`` string."""
    text = implementation.lower()
    if "slurm" in text:
        return "slurm"
    if "pbs" in text or "torque" in text:
        return "pbs"
    return "sge"


def family_name(family: str) -> str:
    """The DRMS an implementation family names, for messages."""
    return {"sge": "SGE", "slurm": "Slurm", "pbs": "PBS"}.get(family, family)


def apply_qacct(job_id: str, obs: Observation, record: Mapping[str, str]) -> None:
    """Complete a doubtful SGE end from its accounting record: a job that ran and ended by itself
    (``failed 0``) gets its exit code (129-192: death by signal ``code - 128``, the shell's
    convention); otherwise the end stays aborted, with SGE's reason."""
    failed = record.get("failed", "").split(":")[0].strip()
    code_text = record.get("exit_status", "").split()[0] if record.get("exit_status") else ""
    if failed == "0" and code_text.isdigit():
        code = int(code_text)
        obs.cancelled, obs.aborted, obs.started = False, None, True
        if 128 < code <= 192:
            obs.exit_code, obs.term_sig = None, code - 128
        else:
            obs.exit_code, obs.term_sig = code, None
        return
    if failed:
        obs.aborted = f"SGE accounting: failed {record['failed']}"


class _SharedSession:
    """The process's DRMAA session, shared by every DrmaaScheduler (one lock around it)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.module: ModuleType | None = None
        self.session: Any = None
        self.users: set[int] = set()
        self.contact: str | None = None
        self.implementation = ""

    def acquire(self, user: int, module: ModuleType, contact: str | None) -> Any:
        with self.lock:
            if self.session is None:
                session = module.Session()
                last = contact or self.contact
                try:
                    try:
                        session.initialize(last)
                    except module.errors.DrmaaException:
                        if not last or contact:
                            raise
                        session.initialize(None)  # the previous session cannot be resumed
                except module.errors.DrmaaException as exc:
                    raise SchedulerUnavailableError(f"cannot open a DRMAA session: {_one_line(exc)}") from None
                self.module, self.session = module, session
                with contextlib.suppress(module.errors.DrmaaException):
                    self.contact = str(session.contact) or None
                    self.implementation = str(session.drmaaImplementation)
            self.users.add(user)
            return self.session

    def release(self, user: int) -> None:
        with self.lock:
            self.users.discard(user)
            if self.users or self.session is None or self.module is None:
                return
            with contextlib.suppress(self.module.errors.DrmaaException):
                self.session.exit()
            self.session = None


_SESSION = _SharedSession()


class _LookupFailed(Exception):
    """Whether SGE has a job could not be found out."""


class DrmaaScheduler(CommandLineScheduler):
    """Submit and follow jobs through a DRMAA 1.0 library (see the module docstring)."""

    scheduler_type = "drmaa"
    capabilities = CAPABILITIES
    #: Seconds before retrying a DRMAA call that failed transiently (doubled at each retry).
    call_backoff = 0.05

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(config)
        self._drmaa = import_drmaa()
        options = self.config.options
        root = os.path.abspath(os.path.expanduser(str(options.get("tmp_dir") or DEFAULT_TMP_DIR)))
        if not _SAFE_PATH.fullmatch(root):
            raise ConfigurationError(
                f"the DRMAA job script directory {root!r} must contain no spaces or shell characters "
                "(DRMAA implementations pass it through a shell); set OPTION_TMP_DIR"
            )
        self.tmp_root = root
        self.contact: str | None = str(options["contact"]) if options.get("contact") else None
        self._dir: str | None = None
        self._files: dict[str, str] = {}
        self._terminated: set[str] = set()
        self._seq = itertools.count(1)
        #: slurm-drmaa: reaped ends waiting for their accounting record (until a deadline).
        self._unaccounted: dict[str, tuple[Observation, float]] = {}
        self._accounting: bool | None = None  # sacct / qacct answers (None: not asked yet)
        self._qacct_at = float("-inf")
        self._wait_failing: dict[str, float] = {}  # job -> when its wait() began failing
        #: Ends given by wait() (once) that no record has taken yet.
        self._reaped: dict[str, Observation] = {}
        self._attached: AttachedJobs | None = None  # how attached jobs are observed (drmaa_attach)
        self._session: Any = None
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
        return _SESSION.implementation

    def wake(self) -> None:
        with _SESSION.lock:
            if self._session is None:
                self._session = _SESSION.acquire(id(self), self._drmaa, self.contact)
        self.is_sleeping = False

    def sleep(self) -> None:
        self.is_sleeping = True
        with self._lock:
            busy = any(r.exit_info is None for r in self._records.values())
        if not busy:
            self._close_session()

    def _close_session(self) -> None:
        with _SESSION.lock:
            if self._session is not None:
                self._session = None
                _SESSION.release(id(self))

    def _open(self) -> Any:
        if self._session is None or self.is_sleeping:
            self.wake()
        return self._session

    # -- submission -------------------------------------------------------------------------------
    def _script_dir(self) -> str:
        if self._dir is None:
            os.makedirs(self.tmp_root, mode=0o700, exist_ok=True)
            self._dir = tempfile.mkdtemp(prefix="jobs-", dir=self.tmp_root)
        return self._dir

    def _write_script(self, job: Job) -> str:
        path = os.path.join(self._script_dir(), f"{os.getpid()}-{next(self._seq)}.sh")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        # surrogateescape: argv/env values that are not UTF-8 reach the job as their bytes
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(build_script(job, report=LAUNCH_REPORT))
        return path

    def _parallel(self, job: Job) -> tuple[list[str], str | None, Job]:
        """Native-specification items, job category and job (with the parallel env) for parallel jobs."""
        info = job.parallel_job_info
        if not info:
            return [], None, job
        cfg = self.parallel_job_submission_info or {}
        name = str(info.get("config_name", "native"))
        nodes = int(info.get("nodes_number", 1))
        cpus = int(info.get("cpu_per_node", 1))
        values = {
            "{config_name}": cfg.get(name, name),
            "{nodes_number}": str(nodes),
            "{cpu_per_node}": str(cpus),
            "{max_node}": str(nodes * cpus),
        }

        def fill(template: str) -> str:
            for key, value in values.items():
                template = template.replace(key, value)
            return template

        family = implementation_family(self.implementation)
        spec = fill(cfg.get("drmaa_native_specification") or PARALLEL_TEMPLATES[family])
        category = fill(cfg["drmaa_job_category"]) if cfg.get("drmaa_job_category") else None
        penv = {k: cfg[k] for k in _PARALLEL_ENV_KEYS if cfg.get(k)}
        if penv:
            job = replace(job, env={**penv, **(job.env or {})})
        return [spec], category, job

    def native_specification_string(self, job: Job) -> tuple[str, str | None, Job]:
        """DRMAA's ``nativeSpecification`` for ``job`` (queue, parallel settings, native
        specification), its ``jobCategory`` and the job to write the script for."""
        items: list[str] = []
        if job.queue:
            items.append(_QUEUE_TEMPLATES[implementation_family(self.implementation)].format(queue=job.queue))
        parallel, category, job = self._parallel(job)
        items += parallel
        items += self.native_specification_for(job)
        return " ".join(i for i in items if i.strip()), category, job

    def _transient(self) -> tuple[type[BaseException], ...]:
        errors = self._drmaa.errors
        return tuple(getattr(errors, n) for n in TRANSIENT_ERRORS if isinstance(getattr(errors, n, None), type))

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """``call()``, retried ``command_retries`` times on a transient DRMAA error."""
        transient = self._transient()
        for attempt in range(self.config.command_retries + 1):
            if attempt:
                time.sleep(self.call_backoff * 2 ** (attempt - 1))
            try:
                return call()
            except transient:
                if attempt >= self.config.command_retries:
                    raise
        raise AssertionError("unreachable")

    def _submit_one(self, job: Job) -> str:
        native, category, job = self.native_specification_string(job)
        path = self._write_script(job)
        try:
            job_id = self._run_job(job, path, native, category)
        except BaseException:
            self._remove(path)
            raise
        self._files[job_id] = path
        return job_id

    def _run_job(self, job: Job, path: str, native: str, category: str | None) -> str:
        """``runJob``; on SGE and Slurm, a transient failure is followed by a look-up by name (the
        name carries a token), then a retry if the DRMS has no such job."""
        d = self._drmaa
        last: BaseException | None = None
        family = implementation_family(self.implementation)
        findable = family in _BY_NAME
        name = job_name(job.name) if job.name else None
        if findable:  # the token finds the job again when runJob's answer is lost
            name = f"{(name or 'job')[:100]}{TOKEN_MARK}{uuid.uuid4().hex[:16]}"
        attempts = self.config.command_retries + 1 if findable else 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.call_backoff * 2 ** (attempt - 1))
            session = self._open()
            since = time.monotonic()
            try:
                with _SESSION.lock:
                    return self._run_job_once(session, job, path, native, category, name)
            except self._transient() as exc:
                if not findable or name is None:  # no way to find the job: if the DRMS made it, it runs nothing
                    raise SubmissionError(f"cannot submit: DRMAA: {_one_line(exc)} (if the DRMS made the job, "
                                          "it runs nothing: its script is removed)") from None
                try:
                    found = self._find_submitted(family, name, since)
                except _LookupFailed as why:
                    self._forget_submission(family, name)
                    raise SubmissionError(
                        f"cannot submit: DRMAA: {_one_line(exc)}; whether {family_name(family)} has the job is unknown ({why}): "
                        f"job {name} deleted by name, its script removed") from None
                if found is not None:
                    if self.logger:
                        self.logger.warning("runJob's answer was lost (%s); found job %s by its name %s",
                                            _one_line(exc), found, name)
                    return found
                last = exc
            except d.errors.DrmaaException as exc:
                raise SubmissionError(f"DRMAA refused the job: {_one_line(exc)}") from None
        raise SubmissionError(f"cannot submit: DRMAA: {_one_line(last or RuntimeError())} ({attempts} attempts; "
                              f"{family_name(family)} has no job named {name})")

    def _run_job_once(self, session: Any, job: Job, path: str, native: str, category: str | None,
                      name: str | None) -> str:
        d = self._drmaa
        jt = session.createJobTemplate()
        try:
            jt.remoteCommand = "/bin/sh"
            jt.args = [path]
            jt.outputPath = ":/dev/null"
            jt.errorPath = ":/dev/null"
            if name:
                jt.jobName = name
            if job.hold:
                jt.jobSubmissionState = d.JobSubmissionState.HOLD_STATE
            if native:
                jt.nativeSpecification = native
            if category:
                jt.jobCategory = category
            return str(session.runJob(jt))
        finally:
            with contextlib.suppress(d.errors.DrmaaException):
                session.deleteJobTemplate(jt)

    def _sge_ask(self, argv: list[str], found: re.Pattern[str], absent: str) -> str | None:
        """The job number an SGE command prints, None when it says ``absent``; CommandError otherwise."""
        result = self.runner.run(argv, check=False)
        text = f"{result.stdout}\n{result.stderr}"
        match = found.search(result.stdout) if result.returncode == 0 else None
        if match:
            return match.group(1)
        if absent in text:
            return None
        raise CommandError(argv, result.returncode, result.stderr, result.stdout)

    def _find_submitted(self, family: str, name: str, since: float) -> str | None:
        """The job named ``name`` (a unique token), live or ended, None when the DRMS has none
        (:data:`_BY_NAME`). Raises _LookupFailed when it cannot tell after LOOKUP_ATTEMPTS tries."""
        ask = getattr(self, _BY_NAME[family][0])
        last: Exception | None = None
        for attempt in range(LOOKUP_ATTEMPTS):
            if attempt:
                time.sleep(self.runner.backoff * attempt)
            try:
                return ask(name, since)  # type: ignore[no-any-return]
            except CommandError as exc:
                last = exc
                if self.logger:
                    self.logger.warning("looking for the lost submission %s: %s", name, exc)
        raise _LookupFailed(_one_line(last) if last else "no answer")

    def _sge_job_named(self, name: str, since: float) -> str | None:
        """SGE's job named ``name``: live (``qstat -j``), else ended (``qacct -j``)."""
        live = self._sge_ask(["qstat", "-j", name], _SGE_JOB_NUMBER, "do not exist")
        if live is not None:
            return live
        # Not in qmaster: never submitted, or ended already; an end is in the
        # accounting file about a second later.
        settle = SGE_ACCOUNTING_SETTLE - (time.monotonic() - since)
        if settle > 0 and time.monotonic() - since > 0.5:
            time.sleep(settle)
        return self._sge_ask(["qacct", "-j", name], _SGE_ACCT_NUMBER, "not found")

    def _slurm_job_named(self, name: str, since: float) -> str | None:
        """Slurm's job named ``name``: in the controller (``squeue``, ended ones for MinJobAge), else
        in the accounting (``sacct``; none without accounting storage)."""
        live = complete_lines(self.runner.run(["squeue", "-h", "-t", "all", f"--name={name}", "-o", "%i"]).stdout)
        if live:
            return live[0].strip()
        hours = int((time.monotonic() - since) // 3600) + 1
        out = run_sacct(self.runner, (), "JobIDRaw", select=["-X", f"--name={name}", "-S", f"now-{hours}hours"])
        ended = complete_lines(out or "")
        return ended[-1].strip() if ended else None

    def _sge_gone(self, job_id: str) -> bool:
        """Whether qmaster answers that it no longer has the job (``qstat -j ID``)."""
        try:
            return self._sge_ask(["qstat", "-j", job_id], _SGE_JOB_NUMBER, "do not exist") is None
        except CommandError:
            return False

    def _forget_submission(self, family: str, name: str) -> None:
        """Delete (best effort) the job named ``name``, if it exists: it is not tracked."""
        try:
            self.runner.run(_BY_NAME[family][1](name), check=False)
        except CommandError as exc:
            if self.logger:
                self.logger.warning("cannot delete the untracked job %s: %s", name, exc)

    # -- jobs of other sessions (drmaa_attach) -----------------------------------------------------
    def _attached_jobs(self) -> AttachedJobs:
        if self._attached is None:
            self._open()
            family = implementation_family(self.implementation)
            self._attached = AttachedJobs(family, self.runner, self._job_status, self.logger)
        self._attached.runner = self.runner  # (replaced by tests and fault injection)
        return self._attached

    def _job_status(self, job_id: str) -> str | None:
        session = self._open()
        with _SESSION.lock:
            return self._status(session, job_id)

    def observe_attached(self, ids: Sequence[str]) -> dict[str, Observation]:
        """``jobStatus`` of each job, and the accounting of those no longer live (drmaa_attach)."""
        return self._attached_jobs().lookup(ids)

    def drms_name(self) -> str:
        return family_name(implementation_family(self.implementation))

    def forgetting(self) -> str:
        return FORGETTING.get(implementation_family(self.implementation), "")

    # -- polling -------------------------------------------------------------------------------------
    def _query(self, ids: Sequence[str]) -> dict[str, Observation]:
        attached = [i for i in ids if self.is_attached(i)]
        if attached:
            ids = [i for i in ids if i not in set(attached)]
            try:
                observed = self._attached_jobs().observe(attached, self._terminated)
            except CommandError as exc:
                self._undetermined(attached, f"cannot ask the DRMS: {exc}")
                observed = {}
            return {**observed, **(self._query(ids) if ids else {})}
        session = self._open()
        result: dict[str, Observation] = {}
        family = implementation_family(self.implementation)
        slurm, sge = family == "slurm", family == "sge"
        down: tuple[list[str], str] | None = None  # jobs not asked, and why: the DRMS stopped answering
        with _SESSION.lock:
            for n, job_id in enumerate(ids):
                if job_id in self._unaccounted or job_id in self._reaped:
                    continue  # reaped already
                state: str | None = None
                try:
                    state = self._status(session, job_id)
                    obs = None if state in _LIVE else self._reap(session, job_id)
                except CommandError as exc:
                    now = time.monotonic()
                    for other in ids[n:]:  # a session-wide failure: the others' clocks start now too
                        self._wait_failing.setdefault(other, now)
                    first = self._wait_failing[job_id]
                    if (sge and state is not None and now - first >= SGE_WAIT_FALLBACK
                            and self._sge_gone(job_id)):
                        # libdrmaa keeps failing to say how the job ended (its event client is
                        # gone) and qmaster no longer has it: an end without its facts, which
                        # SGE's accounting completes.
                        del self._wait_failing[job_id]
                        self._reaped[job_id] = Observation(
                            C.DONE, ended=True, aborted=f"DRMAA cannot tell how the job ended: {exc}")
                        continue
                    down = ([i for i in ids[n:] if i not in self._unaccounted and i not in self._reaped],
                            f"cannot ask the DRMS: {exc}")
                    break
                self._wait_failing.pop(job_id, None)
                if state in _LIVE:
                    result[job_id] = Observation(str(state))
                elif obs is not None:
                    # done, failed, undetermined (SGE, briefly, after a kill) or unknown, and reaped
                    self._reaped[job_id] = obs
                elif state is not None:
                    with self._lock:
                        previous = self._records[job_id].status if job_id in self._records else C.RUNNING
                    result[job_id] = Observation(previous)
        if down is not None:
            self._undetermined(*down)
        if slurm:
            result.update(self._slurm_accounting({i: self._reaped.pop(i) for i in ids if i in self._reaped}))
            return result
        if sge:
            doubtful = {i: self._reaped.pop(i) for i in ids if i in self._reaped and self._doubtful(i, self._reaped[i])}
            result.update(self._sge_accounting(doubtful))
        result.update((i, self._reaped[i]) for i in ids if i in self._reaped)  # popped by _finish
        return result

    def _status(self, session: Any, job_id: str) -> str | None:
        """``jobStatus`` (retried); None when DRMAA no longer knows the job (reaped, or unknown)."""
        errors = self._drmaa.errors
        try:
            return str(self._retrying(lambda: session.jobStatus(job_id)))
        except errors.InvalidJobException:
            return None  # wait() tells
        except errors.DrmaaException as exc:
            raise CommandError(["drmaa.jobStatus", job_id], None, _one_line(exc)) from None

    # -- slurm-drmaa: Slurm accounting -------------------------------------------------------
    def _slurm_accounting(self, ended: dict[str, Observation]) -> dict[str, Observation]:
        """Ended slurm-drmaa jobs completed from ``sacct``.

        slurm-drmaa reports no resource usage (zeros), assumes exit 0 for a job that ran and
        left slurmctld's memory before it was polled, and reports a timeout as SIGTERM: the
        accounting record says what happened. A job waits for its record (kept as its last
        live state) at most :data:`ACCOUNTING_GRACE` seconds; without accounting, DRMAA's
        information is used as is.
        """
        for obs in ended.values():
            obs.usage = None  # slurm-drmaa's are zeros
        return self._accounted(ended, ACCOUNTING_GRACE, self._sacct, self._apply_record)

    def _accounted(self, ended: dict[str, Observation], grace: float,
                   fetch: Callable[[list[str]], dict[str, Any]],
                   apply: Callable[[str, Observation, Any], None]) -> dict[str, Observation]:
        """``ended`` and the jobs still waiting, completed from their accounting records.

        ``fetch`` gives the records of the ids it is given (setting ``_accounting`` False when
        there is no accounting); ``apply`` completes an Observation from one. A job without a
        record yet keeps its last live state, at most ``grace`` seconds; then, or without
        accounting, DRMAA's information is used as is.
        """
        deadline = time.monotonic() + grace
        for job_id, obs in ended.items():
            self._unaccounted[job_id] = (obs, deadline)
        if not self._unaccounted:
            return {}
        records = fetch(list(self._unaccounted)) if self._accounting is not False else {}
        now = time.monotonic()
        result: dict[str, Observation] = {}
        for job_id, (obs, until) in list(self._unaccounted.items()):
            record = records.get(job_id)
            if record is None and self._accounting is not False and now < until:
                with self._lock:
                    rec = self._records.get(job_id)
                    result[job_id] = Observation(rec.status if rec is not None else C.RUNNING)
                continue
            del self._unaccounted[job_id]
            if record is not None:
                apply(job_id, obs, record)
            result[job_id] = obs
        return result

    # -- SGE: its accounting file, when DRMAA says a job was aborted -------------------------
    def _doubtful(self, job_id: str, obs: Observation) -> bool:
        """An end DRMAA calls aborted (or without exit code) for a job we did not kill: after an
        ``sge_qmaster`` restart libdrmaa says so of every job whose end it missed."""
        return job_id not in self._terminated and (obs.cancelled or obs.aborted is not None)

    def _sge_accounting(self, doubtful: dict[str, Observation]) -> dict[str, Observation]:
        """Doubtful SGE ends completed from ``qacct -j ID`` (asked every few seconds, at most
        :data:`SGE_ACCOUNTING_GRACE` seconds; the job keeps its last live state meanwhile)."""
        if doubtful and self.logger:
            self.logger.warning("DRMAA says jobs %s were aborted: asking SGE's accounting",
                                " ".join(sorted(doubtful)))
        return self._accounted(doubtful, SGE_ACCOUNTING_GRACE, self._qacct, self._apply_qacct)

    def _apply_qacct(self, job_id: str, obs: Observation, record: Mapping[str, str]) -> None:
        apply_qacct(job_id, obs, record)
        if obs.exit_code == LAUNCH_ERROR_EXIT:
            obs.launch_error = self._launch_error(job_id)

    def _qacct(self, ids: list[str]) -> dict[str, dict[str, str]]:
        """The accounting records of ``ids`` that SGE has written (one ``qacct -j`` each)."""
        now = time.monotonic()
        if now - self._qacct_at < SGE_ACCOUNTING_EVERY:
            return {}
        self._qacct_at = now
        records: dict[str, dict[str, str]] = {}
        for job_id in ids:
            try:
                result = self.runner.run(["qacct", "-j", job_id], check=False)
            except CommandNotFoundError:
                self._accounting = False
                return {}
            except CommandError as exc:
                if self.logger:
                    self.logger.warning("qacct -j %s: %s", job_id, exc)
                continue
            if result.returncode == 0:
                record = parse_qacct(result.stdout)
                if record.get("jobnumber") == job_id:
                    records[job_id] = record
        return records

    def _sacct(self, ids: list[str]) -> dict[str, list[str]]:
        """``sacct`` fields of the ended jobs among ``ids`` (MaxRSS: the largest of the steps)."""
        try:
            out = run_sacct(self.runner, ids, _SACCT_FIELDS)
        except CommandNotFoundError:
            out = None
        self._accounting = out is not None
        if out is None:
            return {}
        records, steps = split_sacct(out, 8)
        jobs = {base: f for base, f in records.items() if f[1] and f[1].split()[0] not in _SLURM_LIVE}
        rss: dict[str, int] = {}
        for base, lines in steps.items():
            for f in lines:
                kb = memory_to_kb(f[6]) if f[6] else None
                if kb is not None:
                    rss[base] = max(rss.get(base, 0), kb)
        for base, kb in rss.items():
            if base in jobs:
                jobs[base][6] = f"{kb}K"
        return jobs

    def _apply_record(self, job_id: str, obs: Observation, f: list[str]) -> None:
        """Start, usage and Slurm's end state from an accounting record.

        DRMAA's exit code (read from slurmctld) is kept: sacct drops the high bit of an exit
        code (``exit 143`` reads ``15:0``). It is replaced only when slurm-drmaa said exit 0
        and accounting says otherwise: slurm-drmaa assumes exit 0 for a job that ran and left
        slurmctld before it was polled. Our own kills stay cancelled.
        """
        state = f[1].split()[0]
        code_text, _, sig_text = f[2].partition(":")
        code = int(code_text) if code_text.isdigit() else None
        sig = int(sig_text) if sig_text.isdigit() and int(sig_text) else None
        obs.started = f[3] not in ("Unknown", "None", "") and f[7] not in ("None assigned", "")
        if obs.started:
            wall = float(f[4]) if f[4].isdigit() else None
            mem = memory_to_kb(f[6]) if f[6] else None
            obs.usage = format_usage(cput=parse_hms(f[5]) if f[5] else None, mem_kb=mem, walltime=wall) or None
        if job_id in self._terminated:
            return
        if state == "CANCELLED":
            obs.cancelled = True
        elif state in _SLURM_ABORTED:
            obs.aborted = f"Slurm ended the job: {state}"
        elif (obs.exit_code == 0 and obs.term_sig is None and not obs.cancelled
              and (state != "COMPLETED" or code or sig)):
            obs.exit_code, obs.term_sig = (code, None) if sig is None else (None, sig)
            obs.launch_error = self._launch_error(job_id) if code == LAUNCH_ERROR_EXIT else None

    def _reap(self, session: Any, job_id: str) -> Observation | None:
        """``wait(id, TIMEOUT_NO_WAIT)`` as an ended Observation; None when not ended (or unknown)."""
        d = self._drmaa
        errors = d.errors
        try:
            info = self._retrying(lambda: session.wait(job_id, d.Session.TIMEOUT_NO_WAIT))
        except (errors.ExitTimeoutException, errors.InvalidJobException):
            return None
        except errors.DrmaaException as exc:
            raise CommandError(["drmaa.wait", job_id], None, _one_line(exc)) from None
        except Exception as exc:
            # DRMAA_ERRNO_NO_RUSAGE ("code 24", a bare Exception in the drmaa package): the
            # job ended without running (SGE: deleted while queued or held).
            if not str(exc).startswith("code 24:"):
                raise
            return Observation(C.DONE, ended=True, cancelled=True, started=False)
        return self.observe_end(job_id, info)

    def observe_end(self, job_id: str, info: Any) -> Observation:
        """A DRMAA ``JobInfo`` as an ended Observation (the contract's table is applied by the base)."""
        rusage = dict(getattr(info, "resourceUsage", None) or {})
        start = _number(rusage.get("start_time", ""))
        started = None if start is None else start > 0
        killed = job_id in self._terminated
        obs = Observation(C.DONE, ended=True, started=started,
                          usage=usage_from_rusage(rusage) if started is not False else None)
        # slurm-drmaa runs the command under a bash that turns a death by signal N into exit
        # 128+N, and reports that as exited *and* signalled: the signal wins.
        sig = signal_number(str(info.terminatedSignal)) if info.hasSignal else None
        if killed or info.wasAborted:
            obs.cancelled = True
        elif sig is not None:
            obs.term_sig = sig
        elif info.hasExited:
            obs.exit_code = int(info.exitStatus)
            if obs.exit_code == LAUNCH_ERROR_EXIT:
                obs.launch_error = self._launch_error(job_id)
        elif info.hasSignal:
            obs.aborted = f"the job died of signal {info.terminatedSignal!r}"
        else:
            obs.aborted = "DRMAA reports neither an exit code nor a signal"
        return obs

    def _launch_error(self, job_id: str) -> str | None:
        path = self._files.get(job_id)
        if path is None:
            return None
        try:
            with open(path + LAUNCH_SUFFIX, encoding="utf-8", errors="replace") as fh:
                return fh.read().strip() or "the command could not be started"
        except OSError:
            return None

    def _finish(self, rec: Any, obs: Observation) -> None:
        super()._finish(rec, obs)
        if self._attached is not None:
            self._attached.forget(rec.id)
        self._reaped.pop(rec.id, None)
        self._terminated.discard(rec.id)
        path = self._files.pop(rec.id, None)
        if path is not None:
            self._remove(path)

    @staticmethod
    def _remove(path: str) -> None:
        for p in (path, path + LAUNCH_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)

    # -- cancel -----------------------------------------------------------------------------------------
    def _cancel(self, job_id: str) -> None:
        d = self._drmaa
        session = self._open()
        tried: list[int] = []

        def terminate() -> None:
            tried.append(1)
            session.control(job_id, d.JobControlAction.TERMINATE)

        with _SESSION.lock:
            try:
                self._retrying(terminate)
            except d.errors.InvalidJobException:
                if len(tried) > 1:  # a first attempt may have killed it before its answer was lost
                    self._terminated.add(job_id)
                return  # it ended already: its own end is reported
            except d.errors.DrmaaException as exc:
                raise CommandError(["drmaa.control", job_id], None, _one_line(exc)) from None
            self._terminated.add(job_id)

    def clean(self) -> None:
        self._close_session()
        self._unaccounted.clear()
        self._wait_failing.clear()
        self._reaped.clear()
        if self._dir is not None and self._files:
            # jobs not seen to end outlive this scheduler (attach follows them): they need their scripts
            if self.logger:
                self.logger.info("%d job script(s) kept in %s for jobs not seen to end", len(self._files), self._dir)
        elif self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self._files.clear()
        super().clean()

    def __repr__(self) -> str:
        return f"<DrmaaScheduler {self.implementation or 'DRMAA'} scripts in {Path(self.tmp_root)}>"
