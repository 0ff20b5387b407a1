"""The one list of test targets: what each is, how it runs, whether CI runs it on a fresh machine.

Read by ``noxfile.py`` (sessions and CI), ``tox.ini`` (through ``run``), the GitHub workflow (``nox
-s matrix`` prints it as JSON), :mod:`.incontainer` and :mod:`.bridge`. Standard library only at
import time, so the noxfile can load it without installing anything::

    python -m soma_schedulers.testing.registry list
    python -m soma_schedulers.testing.registry run slurm [PYTEST ARGS...]
    python -m soma_schedulers.testing.registry matrix          # JSON, for a CI matrix
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["IN_CONTAINER_TYPES", "TARGETS", "TestTarget", "by_name", "main", "run"]

#: How a target's suite runs: on this machine (``local``), from the host against a cluster
#: (``host``, ``--drms``), inside the cluster (``incontainer``), or from an engine container
#: through the ssh bridge (``bridge``).
KINDS = ("local", "host", "incontainer", "bridge")
#: Scheduler types whose backend only works inside their cluster (libdrmaa, mpirun).
IN_CONTAINER_TYPES = frozenset({"drmaa", "mpi"})


@dataclass(frozen=True)
class TestTarget:
    """One entry of the conformance matrix."""

    __test__ = False  # not a pytest test class

    name: str  # the nox/CI name: "slurm", "sge-drmaa", "slurm-bridge"
    kind: str
    cluster: str | None = None  # its docker_harness cluster spec (None for local)
    #: The image builds from an upstream source (containers/*/src/): CI on a fresh machine skips it.
    upstream: bool = False
    #: The suite runs with ``--bulk``: every case's jobs submitted as job-array tasks.
    bulk: bool = False

    @property
    def drms(self) -> str | None:
        """For a bridge target, the DRMS the bridged host runs (``slurm`` for ``slurm-bridge``)."""
        return self.name.removesuffix("-bridge") if self.kind == "bridge" else None


TARGETS: tuple[TestTarget, ...] = (
    TestTarget("local", "local"),
    TestTarget("slurm", "host", "slurm"),
    TestTarget("slurm-cluster", "host", "slurm-cluster"),
    TestTarget("slurm-24.11", "host", "slurm-24.11"),
    TestTarget("slurm-noacct", "host", "slurm-noacct"),
    TestTarget("slurm-bulk", "host", "slurm", bulk=True),
    TestTarget("slurm-24.11-bulk", "host", "slurm-24.11", bulk=True),
    TestTarget("slurm-noacct-bulk", "host", "slurm-noacct", bulk=True),
    TestTarget("htcondor", "host", "htcondor"),
    TestTarget("htcondor-cluster", "host", "htcondor-cluster"),
    TestTarget("htcondor-bulk", "host", "htcondor", bulk=True),
    TestTarget("mpi", "incontainer", "mpi"),
    TestTarget("sge-drmaa", "incontainer", "sge"),
    TestTarget("sge-drmaa-bulk", "incontainer", "sge", bulk=True),
    TestTarget("sge-drmaa-cluster", "incontainer", "sge-cluster"),
    TestTarget("slurm-bridge", "bridge", "slurm-ssh"),
    TestTarget("htcondor-bridge", "bridge", "htcondor-ssh"),
    TestTarget("slurm-drmaa", "incontainer", "slurm-drmaa", upstream=True),
    TestTarget("slurm-drmaa-bulk", "incontainer", "slurm-drmaa", upstream=True, bulk=True),
    TestTarget("slurm-drmaa-24.11", "incontainer", "slurm-drmaa-24.11", upstream=True),
    TestTarget("openpbs", "host", "openpbs", upstream=True),
    TestTarget("openpbs-cluster", "host", "openpbs-cluster", upstream=True),
    TestTarget("torque", "host", "torque", upstream=True),
    TestTarget("torque-cluster", "host", "torque-cluster", upstream=True),
    TestTarget("openpbs-bulk", "host", "openpbs", upstream=True, bulk=True),
    TestTarget("torque-bulk", "host", "torque", upstream=True, bulk=True),
    TestTarget("openpbs-bridge", "bridge", "openpbs-ssh", upstream=True),
    TestTarget("torque-bridge", "bridge", "torque-ssh", upstream=True),
)


def by_name(name: str) -> TestTarget:
    """The target called ``name``; ``KeyError`` naming the known ones."""
    for target in TARGETS:
        if target.name == name:
            return target
    raise KeyError(f"unknown target {name!r}; known: {', '.join(t.name for t in TARGETS)}")


def run(name: str, args: Sequence[str] = ()) -> int:
    """Run target ``name``'s conformance suite the way CI does; its exit code."""
    target = by_name(name)
    if target.bulk:
        args = ["--bulk", *args]
    if target.kind == "incontainer":
        from .incontainer import main as incontainer

        return incontainer([name, *args])
    if target.kind == "bridge":
        from .bridge import main as bridge

        return bridge([name, *args])
    import pytest

    where = ["--scheduler", "local_basic"] if target.kind == "local" else ["--drms", str(target.cluster)]
    workers = [] if target.kind == "local" else ["-n", "4"]
    return int(pytest.main(["--pyargs", "soma_schedulers.testing.suite", *where, *workers, *args]))


def main(argv: Sequence[str] | None = None) -> int:
    """``list`` / ``matrix`` / ``run TARGET [PYTEST ARGS]`` (see the module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["list"]:
        for t in TARGETS:
            print(f"{t.name:20} {t.kind:12} {t.cluster or '-':20} {'upstream source' if t.upstream else 'Debian'}"
                  f"{'  --bulk (job arrays)' if t.bulk else ''}")
        return 0
    if args[:1] == ["matrix"]:
        print(json.dumps({"drms": [t.name for t in TARGETS]}))
        return 0
    if args[:1] == ["run"] and len(args) >= 2:
        try:
            return run(args[1], args[2:])
        except KeyError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
