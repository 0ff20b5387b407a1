"""A third-party Slurm backend in one file, using only the public API and the standard library.

``SlurmExample`` (entry point ``example_slurm``) runs ``sbatch``, ``squeue``,
``sacct`` and ``scancel`` by name from PATH:

* submission: ``sbatch --parsable`` reads a ``#!/bin/sh`` script on its stdin
  (nothing is written to disk). Every argv item, env value and path in the
  script is quoted with :func:`shlex.quote`; a carriage return (sbatch refuses
  "DOS line breaks") is spliced in as ``"$(printf '\\r')"``. The script opens
  the job's files, changes directory, exports the env and ``exec``s the
  command; when it cannot, it writes the reason in the job's Comment
  (``scontrol update``) and exits 127, so a launch error is told from a
  program that exits 127. ``Job.queue`` is ``--partition``, the native
  specification goes in ``#SBATCH`` lines;
* polling: one ``squeue -t all`` for every unfinished job, then one ``sacct``
  for those that ended (or left squeue), cached for ``status_cache_seconds``;
* killing: ``scancel``.

It needs Slurm accounting (``sacct``) for exit codes, and sees a launch error
only when a poll comes within ``MinJobAge`` of the job's end (squeue shows the
Comment; Slurm's accounting keeps it only with ``AccountingStoreFlags=job_comment``).

Left out to stay short (``soma_schedulers.batch.CommandLineScheduler`` does them):
retrying a failed query, ending a job ``failed``/``aborted`` once Slurm could not
be asked for ``undetermined_timeout`` seconds (here it stays ``undetermined``),
and finding a job again when ``sbatch``'s answer is lost. The conformance suite
does not check these. docs/writing-a-backend.md walks through this file.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from soma_schedulers import constants as C
from soma_schedulers.errors import DRMError, JobSpecError, SubmissionError, UnknownJobError
from soma_schedulers.job import Job
from soma_schedulers.scheduler import ExitInfo, Scheduler

LAUNCH_MARK = "soma_launch_error"
_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
          "DEADLINE", "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED"}
# Live states that are not "running" (CONFIGURING, RUNNING, COMPLETING... are).
_WAITING = {"PENDING": C.QUEUED_ACTIVE, "REQUEUED": C.QUEUED_ACTIVE, "SUSPENDED": C.SYSTEM_SUSPENDED,
            "STOPPED": C.USER_SUSPENDED}
_HELD = {"JobHeldUser": C.USER_ON_HOLD, "JobHeldAdmin": C.SYSTEM_ON_HOLD}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote(text: str) -> str:
    """One ``/bin/sh`` word for ``text``, holding no carriage return."""
    return "\"$(printf '\\r')\"".join(shlex.quote(p) if p else "" for p in text.split("\r")) or "''"


def job_script(job: Job) -> str:
    """The ``/bin/sh`` script that runs ``job``: opens its files, ``cd``, exports its env, ``exec``."""
    q = quote
    if any("\n" in item or "\r" in item for item in job.native_spec_list):
        raise JobSpecError("Job.native_specification holds a line break")
    lines = ["#!/bin/sh", *(f"#SBATCH {item}" for item in job.native_spec_list),  # e.g. "--time=10 --mem=1G"
             "soma_fail() { scontrol update JobId=\"$SLURM_JOB_ID\" "
             f"Comment=\"{LAUNCH_MARK}: $1\" >/dev/null 2>&1; printf '%s\\n' \"$1\" >&2; exit 127; }}"]

    def redirect(op: str, path: str | None, what: str) -> None:
        if path:  # probe in a subshell: a failed redirection on `exec` would end the script silently
            lines.append(f"( : {op[-1]}{q(path)} ) 2>/dev/null || soma_fail {q(f'cannot {what} {path}')}")
        lines.append(f"exec {op}{q(path or os.devnull)}")

    redirect(">", job.stdout_file, "write stdout to")
    if job.join_stderrout:
        lines.append("exec 2>&1")
    else:
        redirect("2>", job.stderr_file, "write stderr to")
    if job.working_directory:
        wd = job.working_directory
        lines.append(f"cd -- {q(wd)} 2>/dev/null || soma_fail {q('cannot change directory to ' + wd)}")
    redirect("<", job.stdin, "read stdin from")
    for key, value in (job.env or {}).items():
        if not _ENV_NAME.fullmatch(key):
            raise JobSpecError(f"Job.env name {key!r} cannot be exported by a shell")
        lines.append(f"export {key}={q(value)}")
    exe = job.command[0]
    lines.append(f"command -v -- {q(exe)} >/dev/null 2>&1 || soma_fail {q('command not found: ' + exe)}")
    lines.append("exec " + " ".join(q(arg) for arg in job.command))
    return "\n".join(lines) + "\n"


def _hms(seconds: float) -> str:
    """``HH:MM:SS`` (hours may exceed 24)."""
    s = round(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def resource_usage(elapsed_raw: str, total_cpu: str) -> bytes | None:
    """``cput=HH:MM:SS walltime=HH:MM:SS`` from sacct's TotalCPU (``[D-][HH:]MM:SS[.fff]``) and ElapsedRaw."""
    try:
        days, _, clock = total_cpu.rpartition("-")
        cput = sum(float(x) * 60**i for i, x in enumerate(reversed(clock.split(":")))) + 86400 * int(days or 0)
        return f"cput={_hms(cput)} walltime={_hms(int(elapsed_raw))}".encode()
    except ValueError:
        return None


class SlurmExample(Scheduler):
    """Slurm through ``sbatch``/``squeue``/``sacct``/``scancel``; thread safe."""

    scheduler_type = "example_slurm"
    capabilities = frozenset({"stdin", "join", "stdout_stderr", "working_directory", "env", "job_name",
                              "hold", "resource_usage", "exit_signal", "launch_errors",
                              "queues", "native_specification"})  # the last two are opt-in ones
    status_cache_seconds = 0.2  #: one poll answers every status call for this long
    accounting_grace = 10.0  #: how long an incomplete sacct record is waited for (x6: a missing one)

    def __init__(self, chdir: str | None = None, command_timeout: float = 60.0) -> None:
        super().__init__()  # jobs_finished_event, logger, per-thread submission errors
        self.chdir = chdir  # sbatch's --chdir, if given (the script does the job's own `cd`)
        self.command_timeout = command_timeout
        self._lock = threading.Lock()  # guards the records below
        self._poll_lock = threading.Lock()  # one poll at a time
        self._polled_at = 0.0
        self._status: dict[str, str] = {}
        self._info: dict[str, ExitInfo] = {}  # ended jobs only: never asked about again
        self._signal_end: dict[str, bool] = {}
        self._killed: set[str] = set()
        self._errors: dict[str, str] = {}  # launch errors, from the Comment squeue shows
        self._waiting: dict[str, float] = {}  # since when a job's end is not (fully) in sacct

    @classmethod
    def build_scheduler(cls, config: Any) -> SlurmExample:
        """An instance from a ``SchedulerConfig`` (``OPTION_CHDIR`` sets sbatch's ``--chdir``)."""
        options = getattr(config, "options", None) or {}
        return cls(chdir=options.get("chdir"), command_timeout=getattr(config, "command_timeout", 60.0))

    def _run(self, argv: list[str], stdin: bytes | None = None) -> str:
        """Run a Slurm command: its stdout, or a ``DRMError`` with its stderr."""
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=self.command_timeout,
                                  stdin=None if stdin is not None else subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DRMError(f"{argv[0]}: {exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise DRMError(f"{argv[0]} failed (exit {proc.returncode}): {err}")
        return proc.stdout.decode(errors="surrogateescape")

    def _known(self, job_id: str) -> None:
        """Raise ``UnknownJobError`` unless this instance submitted ``job_id`` (lock held)."""
        if job_id not in self._status:
            raise UnknownJobError(job_id)

    # -- submission ----------------------------------------------------------------------------
    def job_submission(self, jobs: Sequence[Any], signal_end: bool = True) -> list[str | None]:
        """Submit each job with ``sbatch`` (:meth:`Scheduler.submit_each` keeps the errors)."""
        # A job signals its end when the call asks for it and the job does (an EngineJob may not).
        return self.submit_each(jobs, lambda job: self._submit(job, signal_end and job.signal_end))

    def _submit(self, job: Job, signal_end: bool) -> str:
        script = job_script(job).encode("utf-8", "surrogateescape")  # os.fsdecode'd bytes come back
        argv = ["sbatch", "--parsable", "--output=/dev/null", "--error=/dev/null"]
        if self.chdir:
            argv.append(f"--chdir={self.chdir}")  # else where sbatch runs
        if job.name:
            argv.append("--job-name=" + re.sub(r"[\x00-\x1f\x7f]", "_", job.name))
        if job.hold:
            argv.append("--hold")
        if job.queue:
            argv.append(f"--partition={job.queue}")  # sbatch refuses an unknown one
        try:
            out = self._run(argv, stdin=script)
        except DRMError as exc:
            raise SubmissionError(str(exc)) from None  # sbatch's own message
        job_id = out.strip().split(";")[0]  # "id" or "id;cluster"
        if not job_id.isdigit():
            raise SubmissionError(f"sbatch gave no job id: {out!r}")
        with self._lock:
            self._status[job_id] = C.USER_ON_HOLD if job.hold else C.QUEUED_ACTIVE
            self._signal_end[job_id] = signal_end
        return job_id

    # -- status ----------------------------------------------------------------------------------
    def get_jobs_status(self, scheduler_job_ids: Iterable[str]) -> dict[str, str]:
        """Status of several jobs from one poll of every unfinished job."""
        ids = list(scheduler_job_ids)
        with self._lock:
            for i in ids:
                self._known(i)
        self._poll()
        with self._lock:
            return {i: self._status[i] for i in ids}

    def get_job_status(self, scheduler_job_id: str) -> str:
        """Status of one job (from the same cached poll)."""
        return self.get_jobs_status([scheduler_job_id])[scheduler_job_id]

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        """``(exit_status, exit_value, term_sig, resource_usage)``; undetermined before the end."""
        self.get_job_status(scheduler_job_id)
        with self._lock:
            return self._info.get(scheduler_job_id, ExitInfo(C.EXIT_UNDETERMINED, None, None, None))

    def get_job_error(self, scheduler_job_id: str) -> str | None:
        """Why the job could not be launched, if it could not."""
        with self._lock:
            self._known(scheduler_job_id)
            return self._errors.get(scheduler_job_id)

    def _poll(self) -> None:
        """Ask Slurm about every unfinished job, unless a poll answered less than ``status_cache_seconds`` ago."""
        with self._poll_lock:
            if time.monotonic() - self._polled_at < self.status_cache_seconds:
                return
            with self._lock:
                ids = [i for i in self._status if i not in self._info]
            try:
                if ids:
                    self._query(ids)
            except DRMError as exc:
                if self.logger is not None:
                    self.logger.warning("Slurm poll failed: %s", exc)
                with self._lock:
                    self._status.update({i: C.UNDETERMINED for i in ids if i not in self._info})
            self._polled_at = time.monotonic()

    def _query(self, ids: list[str]) -> None:
        """One ``squeue`` for ``ids``, one ``sacct`` for those no longer live; record what they say."""
        try:
            out = self._run(["squeue", "-h", "-a", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|%k"])
        except DRMError as exc:
            if "Invalid job id" not in str(exc):  # squeue's answer when it knows none of the ids
                raise
            out = ""
        wanted, live = set(ids), {}
        for line in out.split("\n")[:-1]:  # a last line without its newline was cut short
            job_id, state, reason, comment = [*line.split("|", 3), "", "", ""][:4]
            state = state.split(" ")[0]
            if job_id in wanted and comment.startswith(LAUNCH_MARK):
                with self._lock:
                    self._errors[job_id] = comment[len(LAUNCH_MARK) + 1:].strip()
            if state not in _ENDED and job_id in wanted:
                live[job_id] = _HELD.get(reason, C.QUEUED_ACTIVE) if state == "PENDING" \
                    else _WAITING.get(state, C.RUNNING)
        ended = [i for i in ids if i not in live]
        ends = self._sacct(ended) if ended else {}
        now = time.monotonic()
        with self._lock:
            self._status.update(live)
            for job_id in ended:
                if job_id in ends:
                    self._status[job_id], self._info[job_id] = ends[job_id]
                    self._waiting.pop(job_id, None)
                elif now - self._waiting.setdefault(job_id, now) > 6 * self.accounting_grace:
                    self._status[job_id], self._info[job_id] = C.FAILED, ExitInfo(C.EXIT_ABORTED, None, None, None)
                    self._errors.setdefault(job_id, "Slurm has no record of the job's end")
                else:
                    continue
                if self._signal_end.get(job_id):  # any end, the engine waits on it
                    self.jobs_finished_event.set()

    def _sacct(self, ids: list[str]) -> dict[str, tuple[str, ExitInfo]]:
        """The ends of ``ids`` that Slurm's accounting has recorded completely."""
        out = self._run(["sacct", "-n", "-P", "-j", ",".join(ids),
                         "--format=JobIDRaw,State,ExitCode,NodeList,ElapsedRaw,TotalCPU"])
        jobs: dict[str, list[str]] = {}
        steps: dict[str, list[list[str]]] = {}
        for line in out.split("\n")[:-1]:
            f = line.split("|")
            base, _, step = f[0].partition(".")
            if len(f) != 6:
                continue
            if step:
                steps.setdefault(base, []).append(f)
            else:
                jobs[base] = f  # a requeued job's last record wins
        ends = {}
        now = time.monotonic()
        with self._lock:
            for job_id in ids:
                record, job_steps = jobs.get(job_id), steps.get(job_id, [])
                if record is None or record[1].split(" ")[0] not in _ENDED:
                    continue
                # Under load slurmdbd may have the job's end before its exit code (a step still live).
                if any(s[1].split(" ")[0] not in _ENDED for s in job_steps) and \
                        now - self._waiting.setdefault(job_id, now) < self.accounting_grace:
                    continue
                ends[job_id] = self._end(job_id, record, job_steps)
        return ends

    def _end(self, job_id: str, f: list[str], steps: list[list[str]]) -> tuple[str, ExitInfo]:
        """Status and exit info from the job's sacct fields ``f`` and its steps' (lock held)."""
        state = f[1].split(" ")[0]  # "CANCELLED by 1000"
        code, _, sig_text = f[2].partition(":")
        exit_code, sig = int(code or 0), int(sig_text or 0) or None
        started = f[3] not in ("", "None assigned")
        usage = resource_usage(f[4], f[5]) if started else None
        if state == "CANCELLED" and job_id in self._killed:
            if not started:
                return C.FAILED, ExitInfo(C.EXIT_NOTRUN, None, None, None)
            for step in steps:  # the batch step's ExitCode has the signal that ended it
                if step[0].endswith(".batch"):
                    sig = int(step[2].partition(":")[2] or 0) or None
            return C.FAILED, ExitInfo(C.USER_KILLED, None, sig, usage)
        if state not in ("COMPLETED", "FAILED"):  # time/memory limit, node failure, scancel elsewhere...
            return C.FAILED, ExitInfo(C.EXIT_ABORTED, None if sig else exit_code, sig, usage)
        if sig:
            return C.DONE, ExitInfo(C.FINISHED_TERM_SIG, None, sig, usage)
        if exit_code == 127 and job_id in self._errors:
            return C.FAILED, ExitInfo(C.EXIT_ABORTED, 127, None, usage)
        return C.DONE, ExitInfo(C.FINISHED_REGULARLY, exit_code, None, usage)

    # -- kill, clean ---------------------------------------------------------------------------
    def kill_job(self, scheduler_job_id: str) -> None:
        """``scancel`` a queued, held or running job; a finished one is left as it is."""
        with self._lock:
            self._known(scheduler_job_id)
            if scheduler_job_id in self._info:
                return
            self._killed.add(scheduler_job_id)
        self._run(["scancel", scheduler_job_id])
        self._polled_at = 0.0  # the next status call asks Slurm again

    def clean(self) -> None:
        """Forget every job (Slurm keeps running those not finished)."""
        with self._lock:
            for record in (self._status, self._info, self._signal_end, self._errors, self._waiting, self._killed):
                record.clear()
