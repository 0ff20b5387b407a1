"""Helpers of the image tests: clusters started once per module (or one at a time, for a module
going through several), skipped with the reason when Docker or the image is unavailable here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from soma_schedulers.testing import docker_harness as dh


def run_as_root(cluster: dh.DrmsCluster, script: str, container: Any | None = None, login: bool = False) -> str:
    """Run ``script`` with bash as root in the controller (or ``container``); its output, or
    AssertionError naming the script and its output when it fails. ``login``: a login shell
    (the PBS images put their commands on PATH through /etc/profile)."""
    rc, out = cluster.exec(["bash", "-lc" if login else "-c", script], container=container)
    assert rc == 0, f"{script}: {out}"
    return out


def start_or_skip(name: str, mount_source: bool = False) -> dh.DrmsCluster:
    """Start cluster ``name`` (printing the harness's progress), or skip saying why it cannot;
    ``mount_source``: with this checkout at :data:`~soma_schedulers.testing.docker_harness.SOURCE_MOUNT`."""
    ok, reason = dh.docker_available()
    if not ok:
        pytest.skip(f"docker unavailable: {reason}")
    try:
        return dh.start_cluster(name, log=lambda line: print(line, flush=True), mount_source=mount_source,
                                name_suffix=os.environ.get("PYTEST_XDIST_WORKER", ""))
    except dh.ImageUnavailable as exc:
        pytest.skip(f"{name} image unavailable: {exc}")


def module_clusters(*names: str) -> Callable[..., Any]:
    """A module-scoped fixture parametrized over ``names``: each cluster is started once."""

    @pytest.fixture(scope="module", params=list(names))
    def fixture(request: pytest.FixtureRequest) -> Iterator[dh.DrmsCluster]:
        cluster = start_or_skip(request.param)
        yield cluster
        cluster.stop()

    return fixture


class Clusters:
    """One cluster at a time (2 cores), with this checkout mounted: asking for another stops the
    current one."""

    def __init__(self) -> None:
        self.current: dh.DrmsCluster | None = None

    def get(self, name: str) -> dh.DrmsCluster:
        """Cluster ``name``, started (or skipped with the reason) unless it is the current one."""
        if self.current is not None and self.current.spec.name == name:
            return self.current
        self.stop()
        self.current = start_or_skip(name, mount_source=True)
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


def one_at_a_time() -> Callable[..., Any]:
    """A module-scoped fixture giving a :class:`Clusters` (skipped when Docker is unavailable),
    whose last cluster stops with the module."""

    @pytest.fixture(scope="module")
    def fixture() -> Iterator[Clusters]:
        ok, reason = dh.docker_available()
        if not ok:
            pytest.skip(f"docker unavailable: {reason}")
        holder = Clusters()
        yield holder
        holder.stop()

    return fixture
