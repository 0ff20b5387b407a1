"""A third-party backend installed into a cluster (``incontainer --install``) runs the suite there:
the path for backends that need a library only the image has (libdrmaa)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from soma_schedulers.testing import docker_harness as dh

EXAMPLE = Path(__file__).resolve().parents[1] / "example_backend"


def test_example_backend_installed_in_the_sge_cluster_passes() -> None:
    ok, reason = dh.docker_available()
    if not ok:
        pytest.skip(f"docker unavailable: {reason}")
    out = subprocess.run(
        [sys.executable, "-m", "soma_schedulers.testing.incontainer", "sge", "--install", str(EXAMPLE),
         "--scheduler", "example_threads", "-n", "2", "-k", "exit_three or env_values or argv_round_trip"],
        capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "installed for the suite: soma_example_backend" in out.stdout
    assert re.search(r"^example_threads +3 passed +0 failed +0 skipped$", out.stdout, re.M), out.stdout[-3000:]
