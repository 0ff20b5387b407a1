"""pytest plugin (entry point ``pytest11``): options and fixtures of the conformance suite.

Options:

``--scheduler TYPE``          run the suite on a registered scheduler type (repeatable)
``--scheduler-config FILE``   INI section given to ``build_scheduler`` for those types
``--drms NAME``               run it on a DRMS started in Docker (``slurm``, ``slurm-cluster``, ...)
``--conformance-examples N``  hypothesis examples per property case

Without ``--scheduler`` or ``--drms`` the suite runs on ``local_basic``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ..config import BridgeConfig, SchedulerConfig, load_config
from ..errors import DRMError
from ..scheduler import build_scheduler
from .target import Target

# The suite's asserts must explain themselves even from an editable install.
pytest.register_assert_rewrite("soma_schedulers.testing.suite")

_RESULTS: dict[str, dict[str, int]] = {}
_CLUSTERS: dict[str, str] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("soma_schedulers", "soma_schedulers conformance suite")
    group.addoption("--scheduler", action="append", default=[], metavar="TYPE",
                    help="scheduler type to run the conformance suite on (repeatable)")
    group.addoption("--scheduler-config", default=None, metavar="FILE",
                    help="INI file (one section) used to build the --scheduler types")
    group.addoption("--drms", action="append", default=[], metavar="NAME",
                    help="DRMS cluster started in Docker to run the suite on (repeatable)")
    group.addoption("--conformance-examples", type=int, default=None, metavar="N",
                    help="hypothesis examples per property case")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "drms: needs a DRMS running in Docker (selected with --drms)")
    config.addinivalue_line("markers", "conformance: a case of the soma_schedulers conformance suite")


def _target_names(config: pytest.Config) -> list[str]:
    names = [f"type:{t}" for t in config.getoption("scheduler")]
    names += [f"drms:{d}" for d in config.getoption("drms")]
    return names or ["type:local_basic"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_target" in metafunc.fixturenames:
        names = _target_names(metafunc.config)
        metafunc.parametrize("conformance_target", names, indirect=True, scope="session",
                             ids=[n.split(":", 1)[1] for n in names])


def _type_target(request: pytest.FixtureRequest, scheduler_type: str) -> Target:
    cfg_path = request.config.getoption("scheduler_config")
    cfg: Any = load_config(cfg_path) if cfg_path else None
    workdir = Path(request.config._tmp_path_factory.mktemp(f"conf-{scheduler_type}"))  # type: ignore[attr-defined]
    target = Target(
        name=scheduler_type,
        scheduler_type=scheduler_type,
        make_scheduler=lambda: build_scheduler(scheduler_type, cfg),
        workdir=workdir,
        python=sys.executable,
    )
    return target


def _drms_target(request: pytest.FixtureRequest, name: str) -> Target:
    from . import docker_harness as harness
    from .incontainer import IN_CONTAINER_ONLY

    spec = harness.CLUSTERS.get(name)
    if spec is not None and spec.scheduler_type in IN_CONTAINER_ONLY:
        pytest.skip(f"DRMS {name!r} runs the suite inside its cluster: python -m soma_schedulers.testing.incontainer {name}")
    ok, reason = harness.docker_available()
    if not ok:
        pytest.skip(f"DRMS {name!r}: {reason}")
    worker = getattr(request.config, "workerinput", {}).get("workerid", "")

    def log(line: str) -> None:
        sys.stderr.write(f"[{name}] {line}\n")

    try:
        cluster = harness.start_cluster(name, log=log, name_suffix=worker)
    except harness.ImageUnavailable as exc:
        pytest.skip(f"DRMS {name!r} image cannot be built here: {exc}")
    spec = cluster.spec
    from .images import docker_client, image_size

    size = image_size(docker_client(), spec.image_tag)
    _CLUSTERS[name] = (f"{len(cluster.containers)} container(s), image {spec.image_tag} {size / 1e6:.0f} MB, "
                       f"docker run -> ready {cluster.ready_seconds:.1f} s")
    cfg = SchedulerConfig(
        scheduler_type=spec.scheduler_type,
        bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix)),
        status_cache_seconds=0.2,
        command_timeout=60.0,
    )
    target = Target(
        name=name,
        scheduler_type=spec.scheduler_type,
        make_scheduler=lambda: build_scheduler(spec.scheduler_type, replace(cfg)),
        workdir=Path(cluster.shared_dir),
        python="python3",
        timeout=120.0,
        poll=0.25,
        examples=4,
    )
    target.finalizers.append(cluster.stop)
    target.cluster = cluster  # type: ignore[attr-defined]
    return target


@pytest.fixture(scope="session")
def conformance_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The backend under test (parametrized over --scheduler / --drms)."""
    kind, _, name = request.param.partition(":")
    try:
        target = _drms_target(request, name) if kind == "drms" else _type_target(request, name)
        target.scheduler  # build now: a failure here is reported once, clearly  # noqa: B018
    except DRMError as exc:
        pytest.fail(f"cannot build scheduler {name!r}: {exc}", pytrace=False)
    examples = request.config.getoption("conformance_examples")
    if examples:
        target.examples = examples
    yield target
    target.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    callspec = getattr(item, "callspec", None)
    if callspec is None or "conformance_target" not in callspec.params:
        return
    target_name = str(callspec.params["conformance_target"]).split(":", 1)[1]
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        counts = _RESULTS.setdefault(target_name, {"passed": 0, "failed": 0, "skipped": 0})
        counts[report.outcome] = counts.get(report.outcome, 0) + 1
    if report.failed and report.when == "call":
        cluster = None
        try:
            cluster = item.funcargs["conformance_target"].cluster  # type: ignore[attr-defined]
        except (KeyError, AttributeError):
            pass
        if cluster is not None:
            try:
                report.sections.append(("DRMS daemon logs", cluster.logs()[-20000:]))
            except Exception as exc:  # logs are a help, never a second failure
                report.sections.append(("DRMS daemon logs", f"unavailable: {exc}"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("soma_schedulers conformance")
    for name, text in sorted(_CLUSTERS.items()):
        tr.write_line(f"{name:<24} {text}")
    for name, counts in sorted(_RESULTS.items()):
        tr.write_line(
            f"{name:<24} {counts.get('passed', 0):>4} passed  {counts.get('failed', 0):>4} failed  "
            f"{counts.get('skipped', 0):>4} skipped"
        )
