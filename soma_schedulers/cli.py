"""The ``soma-schedulers`` command: submit, follow and kill jobs; run the conformance suite."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import constants as C
from .errors import DRMError
from .job import Job
from .scheduler import Scheduler, build_scheduler, get_schedulers_list

__all__ = ["main"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", "-s", default="local_basic", metavar="TYPE",
                   help="scheduler type (default: local_basic)")
    p.add_argument("--config", "-c", default=None, metavar="FILE",
                   help="INI file with one Soma-Workflow-style resource section")


def _job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--stdout", dest="stdout_file")
    p.add_argument("--stderr", dest="stderr_file")
    p.add_argument("--stdin")
    p.add_argument("--join", dest="join_stderrout", action="store_true", help="stderr into stdout")
    p.add_argument("--cwd", dest="working_directory")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--queue")
    p.add_argument("--native", dest="native_specification", action="append", default=None,
                   metavar="SPEC", help="native specification item (repeatable)")
    p.add_argument("--hold", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command (after --)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soma-schedulers", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("types", help="list the scheduler types and whether they can be used here")
    for name, helptext in (("run", "submit a command, wait for its end, print its exit info"),
                           ("submit", "submit a command and print its job id")):
        p = sub.add_parser(name, help=helptext)
        _common(p)
        _job_options(p)
        if name == "run":
            p.add_argument("--timeout", type=float, default=None, help="give up waiting after N s")
    for name, helptext in (("status", "print the status of jobs"), ("kill", "kill jobs"),
                           ("wait", "wait for jobs to end and print their exit info")):
        p = sub.add_parser(name, help=helptext)
        _common(p)
        p.add_argument("ids", nargs="+", metavar="ID")
        if name == "wait":
            p.add_argument("--timeout", type=float, default=None)
    sub.add_parser("conformance", add_help=False,
                   help="run the conformance suite on a scheduler type or DRMS (conformance --help)")
    return parser


def _job(args: argparse.Namespace) -> Job:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise DRMError(f"--env needs NAME=VALUE, got {item!r}")
        env[key] = value
    return Job(
        command=command, name=args.name, stdin=args.stdin, stdout_file=args.stdout_file,
        stderr_file=args.stderr_file, join_stderrout=args.join_stderrout,
        working_directory=args.working_directory, env=env or None, queue=args.queue,
        native_specification=args.native_specification, hold=args.hold,
    )


def _track(sched: Scheduler, ids: Sequence[str]) -> None:
    track = getattr(sched, "track_job", None)
    if track is None:
        raise DRMError(f"{type(sched).__name__} jobs live only in the process that submitted them")
    for job_id in ids:
        track(job_id)


def _wait(sched: Scheduler, ids: Sequence[str], timeout: float | None) -> dict[str, str]:
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while True:
        status = sched.get_jobs_status(ids)
        if all(s in C.END_STATES for s in status.values()):
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise DRMError(f"jobs still running after {timeout:g} s: "
                           + ", ".join(i for i, s in status.items() if s not in C.END_STATES))
        sched.jobs_finished_event.wait(delay)
        sched.jobs_finished_event.clear()
        delay = min(delay * 2, 1.0)


def _exit_info_dict(sched: Scheduler, job_id: str, status: str) -> dict[str, Any]:
    exit_status, value, sig, usage = sched.get_job_exit_info(job_id)
    return {"id": job_id, "status": status, "exit_status": exit_status, "exit_value": value,
            "term_sig": sig, "resource_usage": usage.decode() if usage else None}


def _conformance(args: list[str]) -> int:
    from .testing.conformance_cli import main as conformance_main

    return conformance_main(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["conformance"]:  # its own parser (testing.conformance_cli); the rest is pytest's
        return _conformance(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * args.verbose, format="%(levelname)s %(name)s: %(message)s")
    if args.action == "types":
        for name, usable in get_schedulers_list():
            print(f"{name:<14} {'usable' if usable else 'unavailable'}")
        return 0
    try:
        sched = build_scheduler(args.scheduler, args.config)
    except DRMError as exc:
        print(f"soma-schedulers: {exc}", file=sys.stderr)
        return 2
    try:
        with sched:
            if args.action in ("run", "submit"):
                [job_id] = sched.job_submission([_job(args)])
                if job_id is None:
                    print(f"soma-schedulers: submission failed: {sched.last_submission_errors[0]}", file=sys.stderr)
                    return 2
                if args.action == "submit":
                    print(job_id)
                    return 0
                status = _wait(sched, [job_id], args.timeout)[job_id]
                info = _exit_info_dict(sched, job_id, status)
                print(json.dumps(info))
                if info["exit_status"] == C.FINISHED_REGULARLY:
                    return int(info["exit_value"] or 0)
                return 1
            _track(sched, args.ids)
            if args.action == "status":
                for job_id, status in sched.get_jobs_status(args.ids).items():
                    print(f"{job_id}\t{status}")
                return 0
            if args.action == "kill":
                for job_id in args.ids:
                    sched.kill_job(job_id)
                return 0
            statuses = _wait(sched, args.ids, args.timeout)
            for job_id, status in statuses.items():
                print(json.dumps(_exit_info_dict(sched, job_id, status)))
            return 0 if all(s == C.DONE for s in statuses.values()) else 1
    except DRMError as exc:
        print(f"soma-schedulers: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
