"""Shared fixtures of the repository's own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).parent / "example_backend"


@pytest.fixture(scope="session")
def example_pythonpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PYTHONPATH on which the example backend (tests/example_backend) is installed, in effect.

    Instead of pip-installing it, a real ``.dist-info`` folder with its entry points (what an
    install makes) is written to a temporary directory put on the path beside the example's
    modules, so ``--scheduler example_threads`` and ``soma-schedulers types`` find it.
    """
    import tomllib  # Python 3.11+, as the tests that use this fixture

    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    site = tmp_path_factory.mktemp("example-site")
    dist = site / f"soma_example_backend-{meta['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n",
                                   encoding="utf-8")
    lines = ["[soma_schedulers.schedulers]"]
    lines += [f"{k} = {v}" for k, v in meta["entry-points"]["soma_schedulers.schedulers"].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return os.pathsep.join([str(EXAMPLE), str(site)])
