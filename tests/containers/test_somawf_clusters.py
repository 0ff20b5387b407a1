"""Soma-Workflow's engine on the host drives our backends in the DRMS containers (issue items 3b, 4).

A Soma-Workflow "local server" resource (its engine is a process of its own, on this host) whose
section says ``SCHEDULER_TYPE = soma_schedulers.<type>`` and reaches the cluster through our own
keys in that same section (``OUT_OF_CONTAINER = prefix``, ``BRIDGE_COMMAND = docker exec -i -u
alice <container>``, ``BRIDGE_SHELLS = yes``, ``BRIDGE_SHARED_DIR``); job files live on the
cluster's shared directory. The 33-job workflow of soma_schedulers/testing/somaworkflow_e2e.py:
every job's status and exit info, as Soma-Workflow reports them, equal what the job did. Slurm
always; OpenPBS and Torque where their images (upstream sources) are present, skipped otherwise.

The restart case SIGKILLs the engine process while 4 jobs run on Slurm, connects again (a new
engine) and calls ``restart_workflow``: Soma-Workflow then asks the new scheduler about the old
DRMS ids (docs/soma-workflow.md, "Engine restart"), which it answers through ``attach``.
"""

from __future__ import annotations

import re
import shlex
import tempfile
import uuid
from pathlib import Path

import pytest
from image_clusters import module_clusters  # tests/containers/image_clusters.py

from soma_schedulers.testing import docker_harness as dh
from soma_schedulers.testing.somaworkflow_e2e import launch
from soma_schedulers.testing.somaworkflow_suite import server_section

pytest.importorskip("soma_workflow")
pytest.importorskip("zmq")  # Soma-Workflow's local server

pytestmark = pytest.mark.drms

TYPES = {"slurm": "soma_schedulers.slurm", "openpbs": "soma_schedulers.pbspro", "torque": "soma_schedulers.torque"}
cluster = module_clusters(*TYPES)


def _run(cluster: dh.DrmsCluster, restart: bool = False) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="somawf-", dir=cluster.shared_dir))
    workdir.chmod(0o777)
    resource = f"somawf-{cluster.spec.name}-{uuid.uuid4().hex[:8]}"
    section = server_section(resource, TYPES[cluster.spec.name.split("-")[0]], workdir / "swf",
                             OUT_OF_CONTAINER="prefix", BRIDGE_COMMAND=shlex.join(cluster.command_prefix),
                             BRIDGE_SHELLS="yes", BRIDGE_SHARED_DIR=cluster.shared_dir)
    got = launch(workdir, section=section, resource=resource, python="python3", restart=restart, timeout=900)
    print(f"{cluster.spec.name}: {got.get('jobs')} jobs in {got.get('seconds')} s through Soma-Workflow's engine")
    return got


def test_workflow_through_soma_workflows_engine(cluster: dh.DrmsCluster) -> None:
    got = _run(cluster)
    assert got["problems"] == [], str(got["output"])[-6000:]
    assert got["jobs"] >= 30  # type: ignore[operator]
    ids = got["drms_ids"]
    assert str(ids["barrier"]).startswith("engine-")  # type: ignore[index]
    # a real DRMS id: a job (12, 12.srv) or, Soma-Workflow handing its ready jobs as a list, an
    # array task (Slurm 12_3, PBS 12[3].srv)
    assert re.fullmatch(r"\d+(_\d+|\[\d+\])?(\..+)?", str(ids["first0"])), ids["first0"]  # type: ignore[index]
    assert got["leftovers"] == []


def test_engine_restart_while_jobs_run(cluster: dh.DrmsCluster) -> None:
    if cluster.spec.name != "slurm":
        pytest.skip("the restart case runs on Slurm")
    got = _run(cluster, restart=True)
    print(str(got["output"])[-3000:])
    assert got["problems"] == [], str(got["output"])[-6000:]
    assert got["leftovers"] == []
