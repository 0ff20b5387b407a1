"""Helpers of the image tests: clusters started once per module, skipped with the reason when
Docker or the image is unavailable here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from soma_schedulers.testing import docker_harness as dh


def start_or_skip(name: str) -> dh.DrmsCluster:
    """Start cluster ``name`` (printing the harness's progress), or skip saying why it cannot."""
    ok, reason = dh.docker_available()
    if not ok:
        pytest.skip(f"docker unavailable: {reason}")
    try:
        return dh.start_cluster(name, log=lambda line: print(line, flush=True),
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
