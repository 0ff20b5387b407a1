"""Run one job as a child process: what the local and MPI backends share.

A :class:`ProcessSpec` is the plain data needed to start a job (argv, extra
environment, working directory, stdin/stdout/stderr paths, join): it can
cross a process boundary (the MPI backend sends it to its workers as a
dict of str). :class:`JobProcess` starts it without a shell in its own
process group, blocks in ``os.wait4`` for its end (so the end is known at
once, with its rusage) and classifies it into the contract's end states;
:meth:`JobProcess.kill` may be called from any thread at any time, even
before the process has started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from . import constants as C
from .exit_info import ExitInfo
from .job import Job
from .usage import format_usage

__all__ = ["KILL_GRACE", "JobProcess", "ProcessResult", "ProcessSpec"]

#: Seconds between SIGTERM and SIGKILL when a killed job does not die.
KILL_GRACE = 2.0


@dataclass(frozen=True)
class ProcessSpec:
    """What to start: plain data only (no Job object, nothing to unpickle)."""

    argv: tuple[str, ...]
    #: Variables added to the inherited environment (None: inherit as is).
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    join: bool = False

    @classmethod
    def from_job(cls, job: Job) -> ProcessSpec:
        return cls(
            argv=tuple(job.command),
            env=dict(job.env) if job.env else None,
            cwd=job.working_directory,
            stdin=job.stdin,
            stdout=job.stdout_file,
            stderr=job.stderr_file,
            join=job.join_stderrout,
        )

    def to_message(self) -> dict[str, Any]:
        """A dict of str / list / bool / None, for a wire format."""
        return {
            "argv": list(self.argv),
            "env": dict(self.env) if self.env is not None else None,
            "cwd": self.cwd,
            "stdin": self.stdin,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "join": self.join,
        }

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> ProcessSpec:
        """Inverse of :meth:`to_message`; raises ValueError on malformed data."""
        argv = data.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"bad argv in process spec: {argv!r}")
        env = data.get("env")
        if env is not None and not (
            isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ValueError("bad env in process spec")
        paths: dict[str, str | None] = {}
        for key in ("cwd", "stdin", "stdout", "stderr"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"bad {key} in process spec: {value!r}")
            paths[key] = value
        return cls(argv=tuple(argv), env=env, join=bool(data.get("join", False)), **paths)


@dataclass(frozen=True)
class ProcessResult:
    """How a job process ended: its status, exit info, and why it could not start (if so)."""

    status: str
    exit_info: ExitInfo
    error: str | None = None


def open_files(spec: ProcessSpec) -> tuple[IO[bytes] | None, IO[bytes] | None, Any]:
    """Open stdin, stdout and stderr of ``spec`` (stderr may be ``subprocess.STDOUT``)."""
    opened: list[IO[bytes]] = []
    try:
        stdin = open(spec.stdin, "rb") if spec.stdin else None  # noqa: SIM115
        if stdin:
            opened.append(stdin)
        stdout = open(spec.stdout, "wb") if spec.stdout else None  # noqa: SIM115
        if stdout:
            opened.append(stdout)
        stderr: Any
        if spec.join:
            stderr = subprocess.STDOUT if stdout else None
        else:
            stderr = open(spec.stderr, "wb") if spec.stderr else None  # noqa: SIM115
        return stdin, stdout, stderr
    except BaseException:
        for fh in opened:
            fh.close()
        raise


class JobProcess:
    """One job's process, from start to classified end.

    ``base_env`` is the environment the job's ``env`` is added to (default:
    this process's environment at start time).
    """

    def __init__(self, spec: ProcessSpec, base_env: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.base_env = base_env
        self.pid: int | None = None
        self.started = 0.0
        self._pgid: int | None = None  # the job's process group, kept after its leader's end
        self._term_sent = 0.0
        self._lock = threading.Lock()
        self._kill_requested = False
        self._signal_sent = False
        self._ended = False

    @property
    def kill_requested(self) -> bool:
        return self._kill_requested

    def _environment(self) -> dict[str, str] | None:
        if self.base_env is None and not self.spec.env:
            return None
        env = dict(self.base_env if self.base_env is not None else os.environ)
        env.update(self.spec.env or {})
        return env

    def run(self) -> ProcessResult:
        """Start the process, wait for its end (blocking), return how it ended."""
        spec = self.spec
        self.started = time.monotonic()
        files: tuple[Any, ...] = ()
        with self._lock:
            if self._kill_requested:  # killed before it could start
                self._ended = True
                return ProcessResult(C.FAILED, ExitInfo.killed())
        try:
            files = open_files(spec)
            stdin, stdout, stderr = files
            proc = subprocess.Popen(
                list(spec.argv),
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=stdout if stdout is not None else subprocess.DEVNULL,
                stderr=stderr if stderr is not None else subprocess.DEVNULL,
                cwd=spec.cwd,
                env=self._environment(),
                start_new_session=True,
            )
        except OSError as exc:
            what = exc.strerror or str(exc)
            target = exc.filename if exc.filename is not None else spec.argv[0]
            with self._lock:
                self._ended = True
            return ProcessResult(C.FAILED, ExitInfo.aborted(),
                                 f"could not start {spec.argv[0]!r}: {what}: {target}")
        finally:
            for fh in files:
                if fh is not None and not isinstance(fh, int):
                    fh.close()
        with self._lock:
            self.pid = self._pgid = proc.pid
            if self._kill_requested:
                self._signal_locked(signal.SIGTERM)
        _, wstatus, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(wstatus)
        wall = time.monotonic() - self.started
        cput = ru.ru_utime + ru.ru_stime
        usage = format_usage(
            cpupercent=int(100 * cput / wall) if wall > 0 else 0,
            cput=cput,
            mem_kb=ru.ru_maxrss,
            ncpus=1,
            walltime=wall,
        )
        with self._lock:
            killed = self._signal_sent
            self.pid = None
        if killed:
            self._finish_group()
        with self._lock:
            self._ended = True
        return classify(wstatus, killed, usage)

    def _finish_group(self) -> None:
        """After a killed job's leader ended: give the rest of its group the rest of the
        grace period, then SIGKILL it, so that a killed job leaves nothing behind."""
        deadline = self._term_sent + KILL_GRACE
        while self._pgid is not None:
            try:
                os.killpg(self._pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            if time.monotonic() >= deadline:
                self._force_kill()
                return
            time.sleep(0.02)

    def _signal_locked(self, sig: int) -> None:
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return
        self._signal_sent = True
        if sig == signal.SIGTERM:
            self._term_sent = time.monotonic()
            timer = threading.Timer(KILL_GRACE, self._force_kill)
            timer.daemon = True
            timer.start()

    def _force_kill(self) -> None:
        # The whole group, even when its leader is gone: children that ignore SIGTERM die too.
        with self._lock:
            if self._pgid is not None:
                try:
                    os.killpg(self._pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def kill(self) -> None:
        """SIGTERM the job's process group, SIGKILL what is left of it after :data:`KILL_GRACE` s.

        :meth:`run` returns once the whole group is gone (a child ignoring
        SIGTERM does not outlive the kill). Before the start, the job will
        not start (``killed_by_user``); after its end, nothing happens.
        """
        with self._lock:
            if self._ended:
                return
            self._kill_requested = True
            self._signal_locked(signal.SIGTERM)


def classify(wstatus: int, killed: bool, usage: bytes | None) -> ProcessResult:
    """The contract's end state of a wait status (``killed``: we signalled it)."""
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        if killed:
            return ProcessResult(C.FAILED, ExitInfo.killed(sig, usage))
        return ProcessResult(C.DONE, ExitInfo.signalled(sig, usage))
    if killed:
        return ProcessResult(C.FAILED, ExitInfo.killed(None, usage))
    return ProcessResult(C.DONE, ExitInfo.finished(os.WEXITSTATUS(wstatus), usage))
