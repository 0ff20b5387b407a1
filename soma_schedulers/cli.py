"""The ``soma-schedulers`` command: run, submit, follow and kill jobs; list the types; run the
conformance suite.

Every error is one line on stderr and exit code 2. The job subcommands are in
:mod:`soma_schedulers.cli_jobs`; ``conformance`` is :mod:`soma_schedulers.testing.conformance_cli`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from .cli_jobs import (
    EXIT_ABORTED,
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    refuse_unattachable,
    run_action,
)
from .errors import DRMError
from .scheduler import (
    DEFAULT_SCHEDULER_TYPE,
    build_scheduler,
    coerce_config,
    get_scheduler_implementation,
    resolve_scheduler_type,
    scheduler_types_report,
)

__all__ = ["main"]

PROG = "soma-schedulers"
_VERBOSE = re.compile(r"-v+|--verbose")

EXIT_CODES = f"""\
exit codes:
  run, wait   the job's exit code; 128+N when it died from signal N; {EXIT_ABORTED} when it did not
              run to its own end (could not start, ended by the DRMS: time or memory limit, node
              failure; killed; never ran); {EXIT_TIMEOUT} when --timeout passed (run kills the job,
              wait leaves the jobs running); wait with several jobs: the first job's (in the
              order given) that is not 0
  others      0 when done
  all         {EXIT_USAGE}: a usage, configuration or DRMS error (one line on stderr), e.g. a refused
              submission or an unknown job id; {EXIT_INTERRUPTED}: interrupted (run kills its job)"""

EPILOG = f"""\
examples:
  {PROG} run -- python3 step.py --in 'a b.txt'          # local, output shown here
  {PROG} run --config site.ini -- hostname             # the type is the file's SCHEDULER_TYPE
  id=$({PROG} submit -c site.ini --section cluster -- sleep 60)
  {PROG} status -c site.ini --section cluster "$id"    # in any later command
  {PROG} wait -c site.ini --section cluster "$id"      # one JSON line per job

The scheduler type is --scheduler, else the configuration's SCHEDULER_TYPE, else {DEFAULT_SCHEDULER_TYPE};
both given and different is an error. submit, status, wait, kill and exit-info need a type whose
jobs the DRMS keeps (slurm, pbspro, torque, htcondor, drmaa): local and mpi jobs live in the
command's process.

{EXIT_CODES}"""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def _verbose(p: argparse.ArgumentParser, dest: str) -> None:
    p.add_argument("-v", "--verbose", dest=dest, action="count", default=0,
                   help="show the library's log on stderr: -v warnings, -vv progress, -vvv DRMS commands "
                        "(and the traceback of an internal error)")


def _config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=None, metavar="FILE",
                   help="INI file of Soma-Workflow resource sections (SCHEDULER_TYPE, bridge, timeouts...)")
    p.add_argument("--section", default=None, metavar="NAME",
                   help="the section of --config to use (needed when the file has several)")


def _scheduler_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", "-s", default=None, metavar="TYPE",
                   help=f"scheduler type (default: the configuration's SCHEDULER_TYPE, else {DEFAULT_SCHEDULER_TYPE}; "
                        "soma-schedulers types lists them)")
    _config_options(p)


def _job_options(p: argparse.ArgumentParser, run: bool) -> None:
    shown = " (default: shown here)" if run else " (default: discarded)"
    p.add_argument("--name", metavar="NAME", help="job name, as the DRMS shows it")
    p.add_argument("--stdout", dest="stdout_file", metavar="FILE",
                   help="file for the job's standard output, as the job sees its path" + shown)
    p.add_argument("--stderr", dest="stderr_file", metavar="FILE",
                   help="file for the job's standard error, as the job sees its path" + shown)
    p.add_argument("--stdin", metavar="FILE", help="file read as the job's standard input (default: empty)")
    p.add_argument("--join", dest="join_stderrout", action="store_true",
                   help="the job's standard error goes to its standard output")
    p.add_argument("--cwd", dest="working_directory", metavar="DIR",
                   help="the job's working directory (default: the backend's: here for local jobs, the "
                        "submission directory for batch jobs)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set a variable in the job's environment (repeatable)")
    p.add_argument("--queue", metavar="NAME", help="queue (partition) to submit to")
    p.add_argument("--native", dest="native_specification", action="append", default=None, metavar="SPEC",
                   help="native specification item, passed to the DRMS as it is (repeatable)")
    if run:
        p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                       help=f"kill the job if it has not ended after SECONDS (exit code {EXIT_TIMEOUT})")
        p.add_argument("--json", action="store_true",
                       help="print the job's exit info as one JSON line on stdout at the end")
    else:
        p.add_argument("--hold", action="store_true",
                       help="submit the job held: it waits until released with the DRMS's tools, or killed")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments, after --")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Run, submit, follow and kill jobs on this machine or a DRMS; list "
                     "the scheduler types; run the conformance suite.", epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _verbose(parser, "verbose")
    sub = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")

    def add(name: str, helptext: str, epilog: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=helptext, description=helptext, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _verbose(p, "sub_verbose")
        return p

    p = add("types", "list the scheduler types and whether each can run here (and why not)")
    _config_options(p)
    p = add("run", "run a command as a job: show its output, wait for its end, exit with its code", EXIT_CODES)
    _scheduler_options(p)
    _job_options(p, run=True)
    p = add("submit", "submit a command as a job and print its DRMS job id (DRMS types only)")
    _scheduler_options(p)
    _job_options(p, run=False)
    for name, helptext in (
        ("status", "print the status of jobs (ID<tab>STATUS lines)"),
        ("wait", "wait for jobs to end; print their exit info (JSON lines)"),
        ("kill", "kill jobs (queued, held or running)"),
        ("exit-info", "print the exit info of jobs now, ended or not (JSON lines)"),
    ):
        p = add(name, helptext + "; jobs of an earlier submit, by id (DRMS types only)",
                EXIT_CODES if name == "wait" else None)
        _scheduler_options(p)
        p.add_argument("ids", nargs="+", metavar="ID", help="DRMS job id, as submit printed it")
        if name == "wait":
            p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                           help=f"stop waiting after SECONDS (exit code {EXIT_TIMEOUT}); the jobs go on")
    sub.add_parser("conformance", add_help=False,
                   help="run the conformance suite on a scheduler type or DRMS (conformance --help)")
    return parser


def _types(args: argparse.Namespace) -> int:
    config = coerce_config(args.config, args.section) if args.config else None
    for name, cls, reason in scheduler_types_report(config):
        if reason is not None:
            state = "unavailable: " + " ".join(reason.split())
        elif cls is not None and not cls.attachable:
            state = "usable (run only: its jobs live in the command's process)"
        else:
            state = "usable"
        print(f"{name:<14} {state}")
    return 0


def _jobs(args: argparse.Namespace) -> int:
    if args.section is not None and args.config is None:
        raise DRMError("--section needs --config FILE")
    config = coerce_config(args.config, args.section)
    source = f"{args.config}{f' [{args.section}]' if args.section else ''}" if args.config else None
    scheduler_type = resolve_scheduler_type(args.scheduler, config, source)
    cls = get_scheduler_implementation(scheduler_type)
    if args.action != "run":
        refuse_unattachable(cls, scheduler_type, args.action)
    reason = cls.unavailable_reason(config)
    if reason is not None:
        raise DRMError(f"scheduler type {scheduler_type!r} cannot run here: {reason}")
    with build_scheduler(scheduler_type, config) as sched:
        return run_action(sched, args)


def _conformance(args: list[str]) -> int:
    from .testing.conformance_cli import main as conformance_main

    return conformance_main(args)


def _log_level(verbose: int) -> int:
    return {0: logging.CRITICAL + 10, 1: logging.WARNING, 2: logging.INFO}.get(verbose, logging.DEBUG)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, a in enumerate(argv) if not _VERBOSE.fullmatch(a)), len(argv))
    if argv[first:first + 1] == ["conformance"]:  # its own parser (testing.conformance_cli); the rest is
        return _conformance(argv[first + 1:])  # pytest's
    args = _parser().parse_args(argv)
    verbose = args.verbose + getattr(args, "sub_verbose", 0)
    logging.basicConfig(level=_log_level(verbose), format="%(levelname)s %(name)s: %(message)s")
    try:
        return _types(args) if args.action == "types" else _jobs(args)
    except DRMError as exc:
        message = str(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (| head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as a shell reports a SIGPIPE
    except Exception as exc:  # a bug, here or in a third-party backend: still one line
        if verbose >= 3:
            traceback.print_exc()
        message = f"internal error: {type(exc).__name__}: {exc} (-vvv shows the traceback)"
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE
