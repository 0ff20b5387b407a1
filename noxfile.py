"""nox sessions: the CI matrix of soma_schedulers.

``nox -s tests``                      unit tests + the conformance suite on local backends
``nox -s "conformance(drms='slurm')"``  the conformance suite against one target (Docker)
``nox -s lint``                       ruff + mypy --strict
``nox -s bench``                      the benchmarks (Markdown tables)
``nox -s wheel``                      the suite from an installed wheel, outside the checkout
``nox -s matrix``                     the targets as JSON (a CI matrix)
``nox -s somaworkflow``               Soma-Workflow's own test suite with its scheduler and with ours
``nox -s ci``                         what .ci/run runs: lint, tests, every Debian-buildable target

The targets are listed once, in soma_schedulers/testing/registry.py (standard library only: loaded
here by path, nothing installed).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nox

_spec = importlib.util.spec_from_file_location(
    "soma_registry", Path(__file__).parent / "soma_schedulers" / "testing" / "registry.py")
assert _spec is not None and _spec.loader is not None
registry = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = registry  # dataclasses look the module up by name
_spec.loader.exec_module(registry)

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

TARGETS = [t.name for t in registry.TARGETS]


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests, the suite on local_basic, the third-party example backend."""
    _install(session)
    session.run("pytest", "tests", "--ignore=tests/containers", "-rs", *session.posargs)


@nox.session
@nox.parametrize("drms", TARGETS)
def conformance(session: nox.Session, drms: str) -> None:
    """The conformance suite against one target of the matrix."""
    _install(session)
    session.run("python", "-m", "soma_schedulers.testing.registry", "run", drms, "-rs", *session.posargs)


@nox.session
def somaworkflow(session: nox.Session) -> None:
    """Soma-Workflow's own test suite: its scheduler (control), then soma_schedulers.local_basic."""
    _install(session, "test,soma-workflow")
    session.run("python", "-m", "soma_schedulers.testing.somaworkflow_suite", "--parallel", *session.posargs)


@nox.session(python=False)
def matrix(session: nox.Session) -> None:
    """Print the targets as JSON ({"drms": [...]}): the GitHub workflow's matrix."""
    print(registry.json.dumps({"drms": TARGETS}))


@nox.session
def images(session: nox.Session) -> None:
    """Build the DRMS images (base images made locally when no registry answers)."""
    _install(session)
    clusters = sorted({str(t.cluster) for t in registry.TARGETS if t.cluster and not t.upstream})
    session.run("python", "-m", "soma_schedulers.testing.images", "build", *(session.posargs or clusters))


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
def wheel(session: nox.Session) -> None:
    """The suite from an installed wheel, outside the checkout: the example Slurm backend on Slurm."""
    _install(session)
    session.run("bash", ".ci/wheel-check", "python", external=True)


@nox.session
def ci(session: nox.Session) -> None:
    """Everything CI checks, in one environment."""
    _install(session)
    _lint(session)
    session.run("pytest", "tests", "--ignore=tests/containers", "-rs", "-p", "no:cacheprovider")
    # Soma-Workflow's own test suite, with its scheduler (control) and with ours: no regression.
    session.run("python", "-m", "soma_schedulers.testing.somaworkflow_suite", "--parallel")
    for t in registry.TARGETS:
        if t.kind in ("incontainer", "bridge"):  # upstream ones print SKIPPED without their source
            session.run("python", "-m", "soma_schedulers.testing.registry", "run", t.name, "-rs")
    session.run("bash", ".ci/wheel-check", "python", external=True)
    # The suite on each host-side target, 4 workers sharing each cluster; a Debian-built target that
    # cannot run fails the run, an upstream one without its source skips saying why.
    # --bulk targets (job arrays) run apart: the option holds for a whole run.
    for upstream, missing in ((False, "fail"), (True, "skip")):
        for bulk in (False, True):
            drms_args = [a for t in registry.TARGETS if t.kind == "host" and t.upstream == upstream
                         and t.bulk == bulk for a in ("--drms", str(t.cluster))]
            if not drms_args:
                continue
            # (the upstream run's skips are summed up per target, with the reason, by the suite's summary)
            session.run("pytest", "tests/test_conformance.py", *drms_args, *(["--bulk"] if bulk else []),
                        f"--drms-missing={missing}", "-n", "4", *([] if upstream else ["-rs"]),
                        "-p", "no:cacheprovider")
    # The image, reliability, attach, CLI and bridge-detection tests: one at a time (faults and
    # restarts are timed).
    session.run("pytest", "tests/containers", "-rs", "-p", "no:cacheprovider", *session.posargs)
