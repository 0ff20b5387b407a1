"""An mpi4py program across two Slurm compute containers, submitted through SlurmScheduler.

``parallel_job_info={'config_name': 'MPI', 'nodes_number': 2, 'cpu_per_node': 1}`` asks for one
task on each of two nodes; ``mpirun`` inside the allocation starts its daemons through ``srun``
(no ssh), and each rank prints its hostname: they must differ.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler
from soma_schedulers.testing import docker_harness as dh
from soma_schedulers.testing.target import wait_for_end

pytestmark = pytest.mark.drms

HELLO = """\
import socket
from mpi4py import MPI
c = MPI.COMM_WORLD
print(c.Get_rank(), c.Get_size(), socket.gethostname(), c.allreduce(1), flush=True)
"""


@pytest.fixture(scope="module", params=["slurm-cluster", "slurm-24.11-cluster"])
def multi(request: pytest.FixtureRequest) -> Iterator[dh.DrmsCluster]:
    ok, reason = dh.docker_available()
    if not ok:
        pytest.skip(f"docker unavailable: {reason}")
    try:
        cluster = dh.start_cluster(request.param, log=lambda line: print(line, flush=True),
                                   name_suffix=os.environ.get("PYTEST_XDIST_WORKER", ""))
    except dh.ImageUnavailable as exc:
        pytest.skip(f"{request.param} image unavailable: {exc}")
    yield cluster
    cluster.stop()


def test_mpi_job_one_rank_per_node(multi: dh.DrmsCluster) -> None:
    d = Path(multi.make_workdir("mpi-hello"))
    (d / "hello.py").write_text(HELLO)
    (d / "hello.py").chmod(0o644)
    cfg = SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(multi.command_prefix)))
    with SlurmScheduler(cfg) as sched:
        [jid] = sched.job_submission([Job(
            command=["mpirun", "python3", str(d / "hello.py")], stdout_file=str(d / "out"), join_stderrout=True,
            parallel_job_info={"config_name": "MPI", "nodes_number": 2, "cpu_per_node": 1},
        )])
        assert jid is not None, sched.last_submission_errors
        wait_for_end(sched, [jid], 180, 0.3)
        out = (d / "out").read_text()
        assert sched.get_job_exit_info(jid)[:2] == (C.FINISHED_REGULARLY, 0), out
    ranks = sorted(line.split() for line in out.splitlines() if line[:1].isdigit())
    assert [r[:2] for r in ranks] == [["0", "2"], ["1", "2"]], out
    assert all(r[3] == "2" for r in ranks), out  # the allreduce crossed the nodes
    assert ranks[0][2] != ranks[1][2] and {r[2] for r in ranks} <= {"c1", "c2"}, out
