"""A third-party backend in one file: the example of docs/writing-a-backend.md.

``ThreadScheduler`` runs each job as a child process watched by a thread.
It is registered through the ``soma_schedulers.schedulers`` entry point
(see this folder's pyproject.toml) as ``example_threads``. ``BrokenScheduler``
(``example_broken``) and ``SilentScheduler`` (``example_silent``) are the same
with deliberate bugs, so the test suite can show that the conformance suite
catches them and says what the contract asks.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

from soma_schedulers import constants as C
from soma_schedulers.errors import UnknownJobError
from soma_schedulers.job import Job
from soma_schedulers.scheduler import ExitInfo, Scheduler


class ThreadScheduler(Scheduler):
    """One thread per job; no queue, no concurrency limit."""

    scheduler_type = "example_threads"
    capabilities = frozenset({"stdout_stderr", "join", "stdin", "working_directory", "env",
                              "job_name", "exit_signal", "launch_errors"})

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._status: dict[str, str] = {}
        self._info: dict[str, ExitInfo] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._killed: set[str] = set()

    def job_submission(self, jobs: Sequence[Any], signal_end: bool = True) -> list[str | None]:
        # submit_each converts each job (Job, dict or EngineJob) and keeps the errors.
        return self.submit_each(jobs, self._start)

    def _start(self, job: Job) -> str:
        with self._lock:
            job_id = f"ex-{next(self._ids)}"
            self._status[job_id] = C.RUNNING
        threading.Thread(target=self._run, args=(job_id, job), daemon=True).start()
        return job_id

    def _run(self, job_id: str, job: Any) -> None:
        env = {**os.environ, **(job.env or {})}
        try:
            with open(job.stdin or os.devnull, "rb") as fin, \
                 open(job.stdout_file or os.devnull, "wb") as fout:
                ferr: Any = subprocess.STDOUT if job.join_stderrout else open(job.stderr_file or os.devnull, "wb")  # noqa: SIM115
                try:
                    proc = subprocess.Popen(list(job.command), stdin=fin, stdout=fout, stderr=ferr,
                                            cwd=job.working_directory, env=self._env(env))
                finally:
                    if ferr is not subprocess.STDOUT:
                        ferr.close()
        except OSError:
            self._end(job_id, C.FAILED, ExitInfo(C.EXIT_ABORTED, None, None, None))
            return
        with self._lock:
            self._procs[job_id] = proc
            if job_id in self._killed:
                proc.terminate()
        code = proc.wait()
        with self._lock:
            killed = job_id in self._killed
        if killed:
            self._end(job_id, C.FAILED, ExitInfo(C.USER_KILLED, None, -code if code < 0 else None, None))
        elif code < 0:
            self._end(job_id, C.DONE, ExitInfo(C.FINISHED_TERM_SIG, None, -code, None))
        else:
            self._end(job_id, C.DONE, self._exit(code))

    # Two hooks the broken variant overrides.
    def _env(self, env: dict[str, str]) -> dict[str, str]:
        return env

    def _exit(self, code: int) -> ExitInfo:
        return ExitInfo(C.FINISHED_REGULARLY, code, None, None)

    def _end(self, job_id: str, status: str, info: ExitInfo) -> None:
        with self._lock:
            self._status[job_id] = status
            self._info[job_id] = info
            self._procs.pop(job_id, None)
        self.jobs_finished_event.set()

    def get_job_status(self, scheduler_job_id: str) -> str:
        with self._lock:
            if scheduler_job_id not in self._status:
                raise UnknownJobError(scheduler_job_id)
            return self._status[scheduler_job_id]

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        with self._lock:
            if scheduler_job_id not in self._status:
                raise UnknownJobError(scheduler_job_id)
            return self._info.get(scheduler_job_id, ExitInfo(C.EXIT_UNDETERMINED, None, None, None))

    def kill_job(self, scheduler_job_id: str) -> None:
        with self._lock:
            if scheduler_job_id not in self._status:
                raise UnknownJobError(scheduler_job_id)
            if scheduler_job_id in self._info:
                return
            self._killed.add(scheduler_job_id)
            proc = self._procs.get(scheduler_job_id)
            if proc is not None:
                proc.terminate()

    @classmethod
    def build_scheduler(cls, config: Any) -> ThreadScheduler:
        return cls()


class BrokenScheduler(ThreadScheduler):
    """Deliberately wrong: drops the job's environment and reports every exit value as 0."""

    scheduler_type = "example_broken"

    def _env(self, env: dict[str, str]) -> dict[str, str]:
        return dict(os.environ)

    def _exit(self, code: int) -> ExitInfo:
        return ExitInfo(C.FINISHED_REGULARLY, 0, None, None)


class SilentScheduler(ThreadScheduler):
    """Deliberately wrong: never sets jobs_finished_event, and answers unknown ids with a bare KeyError."""

    scheduler_type = "example_silent"

    def _end(self, job_id: str, status: str, info: ExitInfo) -> None:
        with self._lock:
            self._status[job_id] = status
            self._info[job_id] = info
            self._procs.pop(job_id, None)

    def get_job_status(self, scheduler_job_id: str) -> str:
        with self._lock:
            return self._status[scheduler_job_id]
