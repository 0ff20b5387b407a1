"""Soma-Workflow's real engine, light mode, on soma_schedulers.local_basic: a 33-job workflow.

Dependencies, a barrier (engine-execution job), exit codes 0-3, a job killed while it runs, a
self-SIGTERM, a job after a failed one, argv and env with special characters, stdout/stderr files
and a working directory with specials: every job's status and exit info, as Soma-Workflow reports
them, equal what the job did (soma_schedulers/testing/somaworkflow_e2e.py). It runs in a process
of its own with a private HOME, with nothing but the installed .pth file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from soma_schedulers.testing.somaworkflow_e2e import launch

pytest.importorskip("soma_workflow")


def test_light_mode_workflow_on_local_basic(tmp_path: Path) -> None:
    got = launch(tmp_path, light="soma_schedulers.local_basic", timeout=300)
    assert got["problems"] == [], got["output"][-4000:]
    assert got["jobs"] >= 30
    assert str(got["drms_ids"]["barrier"]).startswith("engine-")  # our engine job, not Soma-Workflow's
    assert got["leftovers"] == []
