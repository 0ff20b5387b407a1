"""The OpenMPI test cluster (containers/openmpi) and MPIScheduler's life cycle in it (real containers).

The conformance suite itself runs with ``python -m soma_schedulers.testing.incontainer mpi``;
these tests check what the suite does not: the image, the job environment on the workers, the
process-group kill, and that every rank exits, after a normal end and after an error on rank 0.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_clusters import start_or_skip  # tests/containers/image_clusters.py

from soma_schedulers.testing import docker_harness as dh

pytestmark = pytest.mark.drms

RUNNER = ["python3", "-m", "soma_schedulers.schedulers.mpi_scheduler"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[dh.DrmsCluster]:
    c = start_or_skip("mpi", mount_source=True)
    yield c
    c.stop()


def mpirun(cluster: dh.DrmsCluster, *argv: str, np: int = 3, timeout: int = 120) -> tuple[int, str]:
    cmd = ["timeout", str(timeout), "mpirun", "-np", str(np), "-H", ",".join(cluster.hostnames[:np]),
           "-x", f"PYTHONPATH={dh.SOURCE_MOUNT}", "-x", "PYTHONDONTWRITEBYTECODE=1", *argv]
    return cluster.exec(cmd, user="alice", workdir=cluster.shared_dir)


def script(cluster: dh.DrmsCluster, name: str, code: str) -> str:
    path = Path(cluster.make_workdir("scripts")) / name
    path.write_text(textwrap.dedent(code))
    path.chmod(0o644)
    return str(path)


def test_ranks_on_three_containers_and_big_messages(cluster: dh.DrmsCluster) -> None:
    hello = script(cluster, "hello.py", """
        import socket
        from mpi4py import MPI
        c = MPI.COMM_WORLD
        big = bytearray(4 << 20) if c.rank == 0 else None   # > 1 MB: needs the CMA setting in one container
        big = c.bcast(big, root=0)
        print("HOST", c.rank, socket.gethostname(), c.allreduce(len(big)), flush=True)
    """)
    rc, out = mpirun(cluster, "python3", hello, np=4)  # 4 ranks on 3 containers: 2 share one
    assert rc == 0, out
    hosts = sorted(line.split()[2] for line in out.splitlines() if line.startswith("HOST"))
    assert set(hosts) == {"mpi1", "mpi2", "mpi3"} and len(hosts) == 4, out
    assert all(line.split()[3] == str(4 * (4 << 20)) for line in out.splitlines() if line.startswith("HOST"))


def test_healthcheck_and_ssh_keys_not_in_repository(cluster: dh.DrmsCluster) -> None:
    for ctr in cluster.containers:
        rc, out = cluster.exec(["/usr/local/sbin/healthcheck.sh"], container=ctr)
        assert rc == 0, (ctr.name, out)
    containers = Path(dh.containers_dir()) / "openmpi"
    assert not [p for p in containers.rglob("*") if "id_" in p.name or p.suffix == ".pub"]


def test_jobs_on_workers(cluster: dh.DrmsCluster) -> None:
    """Job env has no launcher variables (a job may be an MPI program), kill reaches the whole group."""
    out_dir = cluster.make_workdir("jobs")
    prog = script(cluster, "jobs.py", f"""
        import os, time
        from soma_schedulers import Job
        from soma_schedulers import constants as C
        from soma_schedulers.scheduler import build_scheduler
        from soma_schedulers.testing.target import wait_for_end, wait_for_status
        d = {out_dir!r}
        with build_scheduler("mpi") as s:
            mpi_job = Job(command=["python3", "-c",
                "import os, socket; from mpi4py import MPI; "
                "print(MPI.COMM_WORLD.size, socket.gethostname(), sorted(k for k in os.environ if k.startswith(('PMIX_', 'OMPI_COMM'))))"],
                stdout_file=d + "/mpi_job.out", join_stderrout=True)
            tree = Job(command=["/bin/sh", "-c", "sh -c 'trap \\"\\" TERM; sleep 300' & echo $! > " + d + "/child; wait"])
            [a, b] = s.job_submission([mpi_job, tree])
            wait_for_end(s, [a], 60)
            print("MPIJOB", s.get_job_exit_info(a)[:3], s.get_job_error(a))
            wait_for_status(s, b, frozenset({{C.RUNNING}}), 60)
            while not os.path.exists(d + "/child"):
                time.sleep(0.05)
            t0 = time.monotonic()
            s.kill_job(b)
            wait_for_end(s, [b], 60)
            print("KILLED", s.get_job_exit_info(b)[:3], round(time.monotonic() - t0, 1))
            print("WORKERS", s.workers)
    """)
    rc, out = mpirun(cluster, *RUNNER, prog)
    assert rc == 0, out
    assert "MPIJOB ('finished_regularly', 0, None) None" in out, out
    job_out = (Path(out_dir) / "mpi_job.out").read_text()
    size, host, launcher_vars = job_out.split(" ", 2)
    assert size == "1" and host in ("mpi2", "mpi3") and launcher_vars.strip() == "[]", job_out
    assert "KILLED ('killed_by_user', None, " in out, out
    child = (Path(out_dir) / "child").read_text().strip()
    for ctr in cluster.containers[1:]:  # the TERM-ignoring grandchild got SIGKILL with its group
        _, ps = cluster.exec(["ps", "-o", "pid=,args=", "-p", child], container=ctr)
        assert "sleep 300" not in ps, ps


@pytest.mark.parametrize("ending", ["normal", "exception", "exit 3"])
def test_every_rank_exits(cluster: dh.DrmsCluster, ending: str) -> None:
    tail = {"normal": "", "exception": "raise RuntimeError('boom on rank 0')", "exit 3": "raise SystemExit(3)"}[ending]
    prog = script(cluster, f"end-{ending.replace(' ', '')}.py", f"""
        from soma_schedulers import Job
        from soma_schedulers.scheduler import build_scheduler
        s = build_scheduler("mpi")
        s.job_submission([Job(command=["/bin/sleep", "300"]) for _ in range(6)])   # running and queued
        import time; time.sleep(1)
        {tail}
    """)
    rc, out = mpirun(cluster, *RUNNER, prog, timeout=60)
    assert rc == {"normal": 0, "exception": 1, "exit 3": 3}[ending], out
    if ending == "exception":
        assert "boom on rank 0" in out
    for ctr in cluster.containers:  # no rank, no job left behind
        _, ps = cluster.exec(["ps", "-e", "-o", "args="], container=ctr)
        assert "mpi_scheduler" not in ps and "sleep 300" not in ps, (ctr.name, ps)
