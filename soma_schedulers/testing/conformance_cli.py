"""``soma-schedulers conformance``: the conformance suite from the command line.

Its own options are read here (``--help`` lists them); every other argument goes to pytest
unchanged (``-k EXPR``, ``-x``, ``--junitxml FILE`` ...). A wrong type or DRMS name is one
line on stderr and exit code 2, before pytest starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from .selection import SelectionError, select_targets

__all__ = ["main", "parser"]

#: Workers (pytest-xdist) used against a DRMS when ``--workers`` is not given: the cases wait on
#: the DRMS far more than they compute, so 4 share one cluster well even on 2 cores.
DRMS_WORKERS = 4


def parser() -> argparse.ArgumentParser:
    """The ``conformance`` subcommand's options (pytest's own pass through)."""
    p = argparse.ArgumentParser(
        prog="soma-schedulers conformance",
        description="Run the conformance suite (pytest) on scheduler types, on DRMS clusters started in "
                    "Docker, or on your type against a DRMS's daemons (--scheduler T --drms D).",
        epilog="Any other argument is passed to pytest (e.g. -k EXPR, -x, --junitxml FILE). Exit code: "
               "pytest's (0 all passed, 1 a case failed), 2 for a wrong name or option.")
    p.add_argument("--scheduler", "-s", action="append", default=[], metavar="TYPE",
                   help="scheduler type to check (repeatable; default local_basic); with --drms, run this "
                        "type against that DRMS, its client commands reached by name on PATH")
    p.add_argument("--drms", action="append", default=[], metavar="NAME",
                   help="DRMS cluster started in Docker (repeatable): slurm, slurm-cluster, slurm-24.11, "
                        "openpbs, torque, ... (python -m soma_schedulers.testing.images list)")
    p.add_argument("--scheduler-config", "--config", "-c", default=None, metavar="FILE",
                   help="INI file (one section) used to build the --scheduler types")
    p.add_argument("--drms-missing", choices=("fail", "skip"), default="fail",
                   help="a DRMS that cannot be built or started here fails the run (default) or skips")
    p.add_argument("--report", default=None, metavar="FILE",
                   help="write the case x backend matrix (Markdown) to FILE")
    p.add_argument("--examples", type=int, default=None, metavar="N",
                   help="hypothesis examples per property case")
    p.add_argument("--workers", "-n", default=None, metavar="N",
                   help=f"run the cases in N processes (pytest-xdist; default {DRMS_WORKERS} with --drms, "
                        "else 1); 'auto' is one per core")
    return p


def main(argv: Sequence[str]) -> int:
    """Run the suite; pytest's exit code, or 2 (one line on stderr) for a usage error."""
    args, rest = parser().parse_known_args([a for a in argv if a != "--"])
    try:
        select_targets(args.scheduler, args.drms)
    except SelectionError as exc:
        print(f"soma-schedulers: {exc}", file=sys.stderr)
        return 2
    try:
        import pytest
    except ImportError:
        print("soma-schedulers: the conformance suite needs pytest: pip install 'soma-schedulers[test]'",
              file=sys.stderr)
        return 2
    # This process imported soma_schedulers before pytest could rewrite its plugin's asserts: known, harmless.
    pytest_args = ["--pyargs", "soma_schedulers.testing.suite", "-p", "no:cacheprovider", "-q",
                   "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    pytest_args += [a for t in args.scheduler for a in ("--scheduler", t)]
    pytest_args += [a for d in args.drms for a in ("--drms", d)]
    pytest_args += ["--drms-missing", args.drms_missing]
    if args.scheduler_config:
        pytest_args += ["--scheduler-config", args.scheduler_config]
    if args.report:
        pytest_args += ["--conformance-report", args.report]
    if args.examples:
        pytest_args += ["--conformance-examples", str(args.examples)]
    workers = args.workers if args.workers is not None else (str(DRMS_WORKERS) if args.drms else "1")
    if workers not in ("0", "1"):
        if importlib.util.find_spec("xdist") is None:
            print("soma-schedulers: --workers needs pytest-xdist: pip install 'soma-schedulers[test]'",
                  file=sys.stderr)
            return 2
        pytest_args += ["-n", workers]
    code = int(pytest.main([*pytest_args, *rest]))
    return 2 if code == int(pytest.ExitCode.USAGE_ERROR) else code
