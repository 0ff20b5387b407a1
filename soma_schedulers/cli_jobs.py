"""The job subcommands of ``soma-schedulers``: run, submit, status, wait, kill, exit-info.

``run`` submits one job, shows its output (:mod:`soma_schedulers.cli_output`), waits for its end
and exits with the job's code. ``submit`` prints the DRMS's own job id; ``status``, ``wait``,
``kill`` and ``exit-info``, in later processes, :meth:`~soma_schedulers.scheduler.Scheduler.attach`
those ids. Backends whose jobs live in the process that submitted them (``local``, ``mpi``: not
``attachable``) can only ``run``: the others refuse in one line saying so.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import constants as C
from .cli_output import JobOutput, job_output
from .errors import DRMError, NotSupportedError
from .job import Job
from .scheduler import Scheduler

__all__ = [
    "EXIT_ABORTED",
    "EXIT_INTERRUPTED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "JobsTimeout",
    "exit_code",
    "refuse_unattachable",
    "run_action",
]

#: Usage, configuration or DRMS errors (a refused submission, an unknown id, a DRMS that cannot be
#: reached): the command could not do its work.
EXIT_USAGE = 2
#: ``--timeout`` passed: ``run`` killed the job; ``wait`` stopped waiting (the jobs go on).
EXIT_TIMEOUT = 124
#: The job did not run to its own end: it could not start, the DRMS ended it (time or memory
#: limit, node failure), it was killed (``kill``, ``scancel``...) or never ran.
EXIT_ABORTED = 125
#: The command was interrupted (Ctrl-C): ``run`` killed its job.
EXIT_INTERRUPTED = 130

#: Seconds ``run`` waits for the end of a job it killed (timeout, Ctrl-C) before reporting anyway.
KILL_WAIT = 60.0


class JobsTimeout(DRMError):
    """``--timeout`` passed with jobs still running (``ids``)."""

    def __init__(self, ids: Sequence[str], timeout: float) -> None:
        self.ids = list(ids)
        self.timeout = timeout
        super().__init__(f"still running after {timeout:g} s (--timeout): job{'s' if len(ids) > 1 else ''} "
                         + ", ".join(self.ids))


def exit_code(info: dict[str, Any]) -> int:
    """The process exit code that stands for a job's end (documented in ``run --help``)."""
    if info["exit_status"] == C.FINISHED_REGULARLY:
        return int(info["exit_value"] or 0) & 0xFF
    if info["exit_status"] == C.FINISHED_TERM_SIG and info["term_sig"]:
        return 128 + int(info["term_sig"])
    return EXIT_ABORTED


def _job(args: argparse.Namespace, output: JobOutput) -> Job:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise DRMError(f"no command: give it after -- (soma-schedulers {args.action} [options] -- cmd args...)")
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DRMError(f"--env needs NAME=VALUE, got {item!r}")
        env[key] = value
    return Job(
        command=command, name=args.name, stdin=args.stdin,
        stdout_file=args.stdout_file or output.stdout_path,
        stderr_file=args.stderr_file or output.stderr_path, join_stderrout=args.join_stderrout,
        working_directory=args.working_directory, env=env or None, queue=args.queue,
        native_specification=args.native_specification, hold=getattr(args, "hold", False),
    )


def _submit(sched: Scheduler, job: Job) -> str:
    [job_id] = sched.job_submission([job])
    if job_id is None:
        raise DRMError(f"the job was not submitted: {sched.last_submission_errors[0]}")
    return job_id


def _wait(sched: Scheduler, ids: Sequence[str], timeout: float | None) -> dict[str, str]:
    """Statuses once every job has ended; :class:`JobsTimeout` after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while True:
        status = sched.get_jobs_status(ids)
        if all(s in C.END_STATES for s in status.values()):
            return status
        if deadline is not None and time.monotonic() >= deadline:
            raise JobsTimeout([i for i, s in status.items() if s not in C.END_STATES], timeout or 0.0)
        wait = delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic()))
        sched.jobs_finished_event.wait(wait)
        sched.jobs_finished_event.clear()
        delay = min(delay * 2, 1.0)


def _info(sched: Scheduler, job_id: str, status: str) -> dict[str, Any]:
    exit_status, value, sig, usage = sched.get_job_exit_info(job_id)
    get_error = getattr(sched, "get_job_error", None)
    error = get_error(job_id) if callable(get_error) else None
    return {"id": job_id, "status": status, "exit_status": exit_status, "exit_value": value,
            "term_sig": sig, "resource_usage": usage.decode() if usage else None, "error": error}


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _end_message(info: dict[str, Any], code: int) -> str | None:
    """One line on how a job ended, unless it exited by itself (its code says it all)."""
    es, job_id = info["exit_status"], info["id"]
    why = f": {info['error']}" if info.get("error") else ""
    if es == C.FINISHED_REGULARLY:
        return None
    if es == C.FINISHED_TERM_SIG:
        return f"job {job_id} died from {_signal_name(info['term_sig'] or 0)} (exit code {code})"
    if es == C.USER_KILLED:
        return f"job {job_id} was killed{why} (exit code {code})"
    if es == C.EXIT_NOTRUN:
        return f"job {job_id} was killed before it ran{why} (exit code {code})"
    if es == C.EXIT_ABORTED:
        return f"job {job_id} was aborted{why} (exit code {code})"
    return f"job {job_id} ended with exit status {es}{why} (exit code {code})"


def _say(message: str) -> None:
    sys.stdout.flush()
    print(f"soma-schedulers: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _kill_and_wait(sched: Scheduler, job_id: str) -> str:
    sched.kill_job(job_id)
    try:
        return _wait(sched, [job_id], KILL_WAIT)[job_id]
    except JobsTimeout:
        return sched.get_job_status(job_id)


def _run(sched: Scheduler, args: argparse.Namespace) -> int:
    output = job_output(sched, stdout=args.stdout_file is None,
                        stderr=args.stderr_file is None and not args.join_stderrout)
    timed_out = interrupted = False
    try:
        job_id = _submit(sched, _job(args, output))
        output.start()
        try:
            status = _wait(sched, [job_id], args.timeout)[job_id]
        except JobsTimeout:
            timed_out = True
            status = _kill_and_wait(sched, job_id)
        except KeyboardInterrupt:
            interrupted = True
            status = _kill_and_wait(sched, job_id)
        info = _info(sched, job_id, status)
    finally:
        output.finish()
    if args.json:
        print(json.dumps(info), flush=True)
    if interrupted:
        _say(f"interrupted: job {job_id} killed (exit code {EXIT_INTERRUPTED})")
        return EXIT_INTERRUPTED
    if timed_out and info["exit_status"] != C.FINISHED_REGULARLY:
        _say(f"job {job_id} killed: still running after {args.timeout:g} s (--timeout; exit code {EXIT_TIMEOUT})")
        return EXIT_TIMEOUT
    code = exit_code(info)
    message = _end_message(info, code)
    if message:
        _say(message)
    return code


def refuse_unattachable(cls: type[Scheduler], scheduler_type: str, action: str) -> None:
    """Raise the one-line refusal of ``action`` for a type whose jobs live in their process."""
    if cls.attachable:
        return
    if action == "submit":
        raise NotSupportedError(
            f"{scheduler_type} jobs live in the process that submits them: a job submitted here would be "
            "killed when this command exits; use 'soma-schedulers run' (it waits for the job)")
    raise NotSupportedError(
        f"{scheduler_type} jobs live only in the process that submitted them: '{action}' cannot reach them "
        "from another command; use 'soma-schedulers run', or a DRMS type (soma-schedulers types)")


def run_action(sched: Scheduler, args: argparse.Namespace) -> int:
    """Do ``args.action`` with ``sched``; the process exit code (errors raise DRMError)."""
    if args.action == "run":
        return _run(sched, args)
    if args.action == "submit":
        print(_submit(sched, _job(args, JobOutput())), flush=True)
        return 0
    ids = list(dict.fromkeys(args.ids))
    sched.attach(ids)
    if args.action == "status":
        for job_id, status in sched.get_jobs_status(ids).items():
            print(f"{job_id}\t{status}")
        return 0
    if args.action == "kill":
        for job_id in ids:
            sched.kill_job(job_id)
        return 0
    if args.action == "exit-info":
        for job_id, status in sched.get_jobs_status(ids).items():
            print(json.dumps(_info(sched, job_id, status)))
        return 0
    try:
        statuses = _wait(sched, ids, args.timeout)
    except JobsTimeout as exc:
        _say(f"{exc}; they go on (exit code {EXIT_TIMEOUT})")
        return EXIT_TIMEOUT
    codes = []
    for job_id, status in statuses.items():
        info = _info(sched, job_id, status)
        print(json.dumps(info))
        codes.append(exit_code(info))
    return next((c for c in codes if c), 0)
