"""nox sessions: the CI matrix of soma_schedulers.

``nox -s tests``                      unit tests + the conformance suite on local backends
``nox -s "conformance(drms='slurm')"``  the conformance suite against one DRMS (Docker)
``nox -s lint``                       ruff + mypy --strict
``nox -s bench``                      the benchmarks (Markdown tables)
``nox -s somaworkflow``               Soma-Workflow's own test suite with its scheduler and with ours
``nox -s ci``                         what .ci/run runs: lint, tests, every Debian-buildable DRMS
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

#: Targets of the conformance matrix: "local" is the local backend, the others DRMS images.
DRMS = ["local", "slurm", "slurm-cluster", "slurm-24.11", "slurm-noacct", "mpi", "sge-drmaa", "sge-drmaa-cluster", "slurm-bridge",
        "slurm-drmaa", "slurm-drmaa-24.11", "openpbs", "openpbs-cluster", "torque", "torque-cluster",
        "openpbs-bridge", "torque-bridge"]
#: The DRMS that build from Debian packages alone, so CI runs them on a fresh machine.
CI_DRMS = ["slurm", "slurm-cluster", "slurm-24.11", "slurm-noacct", "mpi", "sge-drmaa", "sge-drmaa-cluster", "slurm-bridge"]
#: DRMS whose scheduler runs inside the cluster (the suite runs there, see testing/incontainer.py).
IN_CONTAINER = {"mpi", "sge-drmaa", "sge-drmaa-cluster", "slurm-drmaa", "slurm-drmaa-24.11"}
#: DRMS images built from an upstream source (containers/<name>/src/, or a download with
#: SOMA_SCHEDULERS_ALLOW_DOWNLOAD=1): without it the target prints SKIPPED and succeeds.
UPSTREAM_DRMS = ["slurm-drmaa", "slurm-drmaa-24.11", "openpbs", "openpbs-cluster", "torque", "torque-cluster",
                 "openpbs-bridge", "torque-bridge"]
#: Out of container: the suite runs in an engine container that has no DRMS command and reaches the
#: DRMS host over ssh, with auto-detection and with explicit configuration, then the bridge's failure
#: cases (see soma_schedulers/testing/bridge.py).
BRIDGED = {"slurm-bridge", "openpbs-bridge", "torque-bridge"}
#: Targets named after the backend too: their cluster (image) name.
CLUSTER_OF = {"sge-drmaa": "sge", "sge-drmaa-cluster": "sge-cluster", "slurm-bridge": "slurm-ssh",
              "openpbs-bridge": "openpbs-ssh", "torque-bridge": "torque-ssh"}
#: pytest-xdist workers for the conformance runs from the host: they share each cluster.
WORKERS = "4"


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install("-e", f".[{extras}]")


def _target_args(drms: str) -> list[str]:
    return ["--scheduler", "local_basic"] if drms == "local" else ["--drms", drms]


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests, the suite on local_basic, the third-party example backend."""
    _install(session)
    session.run("pytest", "tests", "--ignore=tests/containers", "-rs", *session.posargs)


@nox.session
@nox.parametrize("drms", DRMS)
def conformance(session: nox.Session, drms: str) -> None:
    """The conformance suite against one target of the matrix."""
    _install(session)
    if drms in IN_CONTAINER:
        session.run("python", "-m", "soma_schedulers.testing.incontainer", drms, "-rs", *session.posargs)
        return
    if drms in BRIDGED:
        session.run("python", "-m", "soma_schedulers.testing.bridge", drms, "-rs", *session.posargs)
        return
    session.run("pytest", "tests/test_conformance.py", *_target_args(drms), "-n", WORKERS, "-rs", *session.posargs)


@nox.session
def somaworkflow(session: nox.Session) -> None:
    """Soma-Workflow's own test suite: its scheduler (control), then soma_schedulers.local_basic."""
    _install(session, "test,soma-workflow")
    session.run("python", "-m", "soma_schedulers.testing.somaworkflow_suite", "--parallel", *session.posargs)


@nox.session
def wheel(session: nox.Session) -> None:
    """The suite from an installed wheel, outside the checkout: the example Slurm backend on Slurm."""
    _install(session)
    session.run("bash", ".ci/wheel-check", "python", external=True)


@nox.session
def images(session: nox.Session) -> None:
    """Build the DRMS images (base images made locally when no registry answers)."""
    _install(session)
    session.run("python", "-m", "soma_schedulers.testing.images", "build",
                *(session.posargs or [CLUSTER_OF.get(d, d) for d in CI_DRMS]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict on the package."""
    _install(session)
    _lint(session)


def _lint(session: nox.Session) -> None:
    session.install("ruff", "mypy")
    session.run("ruff", "check", "soma_schedulers", "tests", "benchmarks", "noxfile.py")
    session.run("mypy", "soma_schedulers")


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark, every available DRMS: benchmarks/results/report.md and polling.png."""
    _install(session, "test,bench")
    session.run("python", "benchmarks/report.py", *session.posargs)


@nox.session
def ci(session: nox.Session) -> None:
    """Everything CI checks, in one environment."""
    _install(session)
    _lint(session)
    session.run("pytest", "tests", "--ignore=tests/containers", "-rs", "-p", "no:cacheprovider")
    for drms in sorted(IN_CONTAINER & {*CI_DRMS, *UPSTREAM_DRMS}):
        session.run("python", "-m", "soma_schedulers.testing.incontainer", drms, "-rs")
    for drms in sorted(BRIDGED & {*CI_DRMS, *UPSTREAM_DRMS}):
        session.run("python", "-m", "soma_schedulers.testing.bridge", drms, "-rs")
    session.run("bash", ".ci/wheel-check", "python", external=True)
    # The suite on each host-side target, 4 workers sharing each cluster; a Debian-built target that
    # cannot run fails the run, an upstream one without its source skips saying why.
    for targets, missing in ((CI_DRMS, "fail"), (UPSTREAM_DRMS, "skip")):
        drms_args = [a for d in targets if d not in IN_CONTAINER | BRIDGED for a in _target_args(d)]
        session.run("pytest", "tests/test_conformance.py", *drms_args, f"--drms-missing={missing}", "-n", WORKERS,
                    "-rs", "-p", "no:cacheprovider")
    # The image, reliability and bridge-detection tests: one at a time (faults and restarts are timed).
    session.run("pytest", "tests/containers", "-rs", "-p", "no:cacheprovider", *session.posargs)
