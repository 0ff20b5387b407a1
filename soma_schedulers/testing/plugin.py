"""pytest plugin (entry point ``pytest11``): options and fixtures of the conformance suite.

Options:

``--scheduler TYPE``          run the suite on a registered scheduler type (repeatable)
``--scheduler-config FILE``   INI section given to ``build_scheduler`` for those types
``--drms NAME``               run it on a DRMS started in Docker (``slurm``, ``slurm-cluster``, ...)
``--drms-missing fail|skip``  a DRMS that cannot run here fails the run (default) or skips its cases
``--conformance-examples N``  hypothesis examples per property case
``--conformance-report FILE`` write the case x backend matrix as Markdown
``--bulk``                    submit every case's jobs as job-array tasks (``ARRAYS = auto``,
                              ``ARRAY_MIN_SIZE = 1``); a backend without arrays is skipped

Without ``--scheduler`` or ``--drms`` the suite runs on ``local_basic``. ``--drms D`` alone
runs the built-in backend of ``D``; with ``--scheduler T`` too, it runs ``T`` against ``D``'s
daemons, the DRMS's client commands reachable by name through shims first on ``PATH``
(``testing.shims``), the jobs' files on the cluster's shared directory. Clusters are shared
by pytest-xdist workers (``testing.drms_pool``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ..config import BridgeConfig, SchedulerConfig, load_config
from ..errors import DRMError
from ..scheduler import build_scheduler, get_scheduler_implementation
from . import backend_checks
from .cluster_logs import report_focus
from .results import CASE_PROPERTY, TARGET_PROPERTY, Results, TargetInfo, case_name
from .selection import SelectionError, Wanted, select_targets
from .target import Target

# The suite's asserts must explain themselves even from an editable install.
pytest.register_assert_rewrite("soma_schedulers.testing.suite")

__all__ = ["Wanted", "wanted_targets"]

_RESULTS = pytest.StashKey[Results]()
_POOL = pytest.StashKey[Any]()  # drms_pool.ClusterPool, imported only when a DRMS is asked for
_UNAVAILABLE = pytest.StashKey[dict[str, str]]()
_FIRST_ID = pytest.StashKey[int]()  # index in Target.submitted of a case's first job
_WORKER_POOL = "soma_schedulers_pool"
_WORKER_UNAVAILABLE = "soma_schedulers_unavailable"


_WANTED = pytest.StashKey[dict[str, Wanted]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("soma_schedulers", "soma_schedulers conformance suite")
    group.addoption("--scheduler", action="append", default=[], metavar="TYPE",
                    help="scheduler type to run the conformance suite on (repeatable); with --drms, "
                         "run this type against that DRMS's daemons")
    group.addoption("--scheduler-config", default=None, metavar="FILE",
                    help="INI file (one section) used to build the --scheduler types")
    group.addoption("--drms", action="append", default=[], metavar="NAME",
                    help="DRMS cluster started in Docker to run the suite on (repeatable)")
    group.addoption("--drms-missing", choices=("fail", "skip"), default="fail",
                    help="when a --drms cluster cannot be built or started here: fail the run (default) "
                         "or skip its cases, naming the reason")
    group.addoption("--conformance-examples", type=int, default=None, metavar="N",
                    help="hypothesis examples per property case")
    group.addoption("--conformance-report", default=None, metavar="FILE",
                    help="write the case x backend matrix (Markdown) to FILE")
    group.addoption("--bulk", action="store_true", default=False,
                    help="submit every case's jobs as job-array tasks (ARRAYS=auto, ARRAY_MIN_SIZE=1); "
                         "a backend without job arrays is skipped, naming why")


def bulk_config(config: pytest.Config, cfg: Any) -> Any:
    """``cfg`` (a SchedulerConfig or None) with arrays for every submission under ``--bulk``."""
    if not config.getoption("bulk"):
        return cfg
    return replace(cfg if isinstance(cfg, SchedulerConfig) else SchedulerConfig(), arrays="auto", array_min_size=1)


def wanted_targets(config: pytest.Config) -> list[Wanted]:
    """The backends ``--scheduler`` and ``--drms`` ask for (else a one-line ``pytest.UsageError``)."""
    try:
        return select_targets(config.getoption("scheduler"), config.getoption("drms"))
    except SelectionError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "drms: needs a DRMS running in Docker (selected with --drms)")
    config.addinivalue_line("markers", "conformance: a case of the soma_schedulers conformance suite")
    wanted = wanted_targets(config)
    config.stash[_WANTED] = {w.id: w for w in wanted}
    results = Results()
    for w in wanted:
        caps = frozenset(get_scheduler_implementation(w.scheduler_type).capabilities)
        where = f"DRMS {w.drms}" if w.drms else "this machine"
        results.targets[w.id] = TargetInfo(w.scheduler_type, caps, where)
    config.stash[_RESULTS] = results
    config.stash[_UNAVAILABLE] = {}
    config.pluginmanager.register(_Collector(results), "soma_schedulers_results")


def _drms_names(config: pytest.Config) -> list[str]:
    return sorted({w.drms for w in config.stash[_WANTED].values() if w.drms})


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    names = _drms_names(config)
    if not names or config.option.collectonly:
        return
    from .drms_pool import ClusterPool

    def log(line: str) -> None:
        sys.stderr.write(f"[soma_schedulers] {line}\n")

    if _is_worker(config):
        winput: dict[str, Any] = config.workerinput  # type: ignore[attr-defined]
        config.stash[_POOL] = ClusterPool(winput[_WORKER_POOL], log)
        config.stash[_UNAVAILABLE] = json.loads(winput[_WORKER_UNAVAILABLE])
        return
    pool = ClusterPool.create(log)
    config.stash[_POOL] = pool
    failures = pool.prepare(names)
    if failures and config.getoption("drms_missing") == "fail":
        first = next(iter(failures))
        pool.stop_all()
        pytest.exit(f"--drms {first} cannot run here: {failures[first]} "
                    "(--drms-missing=skip skips its cases instead)", returncode=pytest.ExitCode.TESTS_FAILED)
    config.stash[_UNAVAILABLE] = failures


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: hand each worker the run's cluster pool."""
    config = node.config
    if _POOL in config.stash:
        node.workerinput[_WORKER_POOL] = str(config.stash[_POOL].directory)
        node.workerinput[_WORKER_UNAVAILABLE] = json.dumps(config.stash[_UNAVAILABLE])


def pytest_unconfigure(config: pytest.Config) -> None:
    if _POOL in config.stash and not _is_worker(config):
        config.stash[_POOL].stop_all()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_target" in metafunc.fixturenames:
        wanted: dict[str, Wanted] = metafunc.config.stash[_WANTED]
        ids = list(wanted)
        metafunc.parametrize("conformance_target", ids, indirect=True, scope="session", ids=ids)


def _local_target(request: pytest.FixtureRequest, w: Wanted) -> Target:
    cfg_path = request.config.getoption("scheduler_config")
    cfg: Any = bulk_config(request.config, load_config(cfg_path) if cfg_path else None)
    workdir = Path(request.getfixturevalue("tmp_path_factory").mktemp(f"conf-{w.scheduler_type}"))
    return Target(name=w.id, scheduler_type=w.scheduler_type,
                  make_scheduler=lambda: build_scheduler(w.scheduler_type, cfg), workdir=workdir,
                  python=sys.executable)


def _drms_target(request: pytest.FixtureRequest, w: Wanted, stack: ExitStack) -> Target:
    from .drms_pool import PoolError
    from .shims import on_path

    config = request.config
    assert w.drms is not None
    reason = config.stash[_UNAVAILABLE].get(w.drms)
    if reason:
        pytest.skip(f"DRMS {w.drms!r} cannot run here: {reason}")
    pool = config.stash[_POOL]
    worker = getattr(config, "workerinput", {}).get("workerid", "")
    try:
        held = pool.get(w.drms, worker)
    except PoolError as exc:
        if config.getoption("drms_missing") == "skip":
            pytest.skip(f"DRMS {w.drms!r} cannot start here: {exc}")
        pytest.fail(f"DRMS {w.drms!r} cannot start here: {exc}", pytrace=False)
    if not _is_worker(config):
        stack.callback(pool.done_with, w.drms)
    cluster = held.cluster
    cfg: Any
    if w.own_backend:
        cfg = SchedulerConfig(scheduler_type=w.scheduler_type,
                              bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix), shells=True),
                              status_cache_seconds=0.2, command_timeout=60.0)
    else:
        cfg_path = config.getoption("scheduler_config")
        cfg = load_config(cfg_path) if cfg_path else None
        stack.enter_context(on_path(held.shims))
    cfg = bulk_config(config, cfg)
    target = Target(
        name=w.id, scheduler_type=w.scheduler_type,
        make_scheduler=lambda: build_scheduler(w.scheduler_type, replace(cfg) if cfg is not None else None),
        workdir=Path(cluster.shared_dir), python="python3", timeout=120.0, poll=0.1, examples=8,
    )
    target.cluster = cluster  # type: ignore[attr-defined]
    return target


@pytest.fixture(scope="session")
def conformance_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The backend under test (parametrized over --scheduler / --drms)."""
    w: Wanted = request.config.stash[_WANTED][request.param]
    with ExitStack() as stack:
        target = _drms_target(request, w, stack) if w.drms else _local_target(request, w)
        stack.callback(target.close)
        try:
            sched = target.scheduler  # build now: a failure here is reported clearly
        except DRMError as exc:
            pytest.fail(f"cannot build scheduler {w.scheduler_type!r}: {exc}", pytrace=False)
        problems = backend_checks.instance_problems(sched, w.scheduler_type)
        if problems:
            pytest.fail("; ".join(problems), pytrace=False)
        if request.config.getoption("bulk") and not getattr(sched, "has_arrays", False):
            pytest.skip(f"--bulk: backend {w.scheduler_type!r} has no job arrays")
        examples = request.config.getoption("conformance_examples")
        if examples:
            target.examples = examples
        yield target


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    callspec = getattr(item, "callspec", None)
    if callspec is None or "conformance_target" not in callspec.params:
        return
    target_id = str(callspec.params["conformance_target"])
    report.user_properties.append((TARGET_PROPERTY, target_id))
    report.user_properties.append((CASE_PROPERTY, case_name(getattr(item, "originalname", item.name),
                                                            callspec.id, target_id)))
    target = getattr(item, "funcargs", {}).get("conformance_target")
    if report.when == "setup" and isinstance(target, Target):
        item.stash[_FIRST_ID] = len(target.submitted)
    if report.failed and report.when == "call" and isinstance(target, Target):
        cluster = getattr(target, "cluster", None)
        if cluster is not None:
            # the jobs the failure says are not ended, then this case's, then ids the failure names
            raised = call.excinfo.value if call.excinfo else None
            pending, focus = report_focus(target.submitted[item.stash.get(_FIRST_ID, 0):], target.submitted[-500:],
                                          str(report.longrepr), getattr(raised, "pending", ()))
            try:
                report.sections.append(("DRMS daemon logs", cluster.logs(focus=focus, pending=pending)))
            except Exception as exc:  # logs are a help, never a second failure
                report.sections.append(("DRMS daemon logs", f"unavailable: {exc}"))


class _Collector:
    """Counts the cases' reports where they arrive (the only process, or the xdist controller)."""

    def __init__(self, results: Results) -> None:
        self.results = results

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.results.add_report(report)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    path = config.getoption("conformance_report", None)
    if path and not _is_worker(config) and config.stash[_RESULTS].outcomes:
        _fill_where(config)
        config.stash[_RESULTS].write_markdown(path)


def _fill_where(config: pytest.Config) -> None:
    if _POOL not in config.stash:
        return
    summaries = config.stash[_POOL].summaries()
    results = config.stash[_RESULTS]
    for w in config.stash[_WANTED].values():
        if w.drms and w.drms in summaries and w.id in results.targets:
            results.targets[w.id].where = f"DRMS {w.drms}: {summaries[w.drms]}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    config = terminalreporter.config
    if _is_worker(config) or _RESULTS not in config.stash or not config.stash[_RESULTS].outcomes:
        return
    _fill_where(config)
    tr = terminalreporter
    tr.section("soma_schedulers conformance")
    for w in config.stash[_WANTED].values():
        info = config.stash[_RESULTS].targets.get(w.id)
        if w.drms and info is not None:
            tr.write_line(f"{w.id:<24} {info.where}")
    for line in config.stash[_RESULTS].summary_lines():
        tr.write_line(line)
    path = config.getoption("conformance_report", None)
    if path:
        tr.write_line(f"report written to {os.path.abspath(path)}")
