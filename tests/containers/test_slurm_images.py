"""Checks of the Slurm test images and of the Docker harness (real containers).

Run with ``pytest -m drms tests/containers -s`` (``-s`` shows build progress
and times to ready).  Skipped with the reason when Docker, the images or
their base images are unavailable on this machine.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from soma_schedulers.testing import docker_harness as dh

pytestmark = pytest.mark.drms

SINGLE = ["slurm", "slurm-24.11"]
MULTI = ["slurm-cluster", "slurm-24.11-cluster"]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


def _log(line: str) -> None:
    print(line, flush=True)


def _start(name: str) -> dh.DrmsCluster:
    ok, reason = dh.docker_available()
    if not ok:
        pytest.skip(f"docker unavailable: {reason}")
    try:
        return dh.start_cluster(name, log=_log, name_suffix=os.environ.get("PYTEST_XDIST_WORKER", ""))
    except dh.ImageUnavailable as exc:
        pytest.skip(f"{name} image unavailable: {exc}")


@pytest.fixture(scope="module", params=SINGLE)
def single(request: pytest.FixtureRequest) -> Iterator[dh.DrmsCluster]:
    cluster = _start(request.param)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module", params=MULTI)
def multi(request: pytest.FixtureRequest) -> Iterator[dh.DrmsCluster]:
    cluster = _start(request.param)
    yield cluster
    cluster.stop()


def run(cluster: dh.DrmsCluster, *argv: str, input: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a DRMS client command as the test user through ``command_prefix``."""
    proc = subprocess.run([*cluster.command_prefix, *argv], input=input, capture_output=True,
                          text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{cluster.logs()}")
    return proc


def sacct_row(cluster: dh.DrmsCluster, jobid: str, timeout: float = 60.0) -> dict[str, str]:
    """Poll ``sacct -P -X -j`` until the job has a final state."""
    fields = ["JobID", "State", "ExitCode", "NodeList"]
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = run(cluster, "sacct", "-n", "-P", "-X", "-j", jobid, "-o", ",".join(fields)).stdout
        for line in last.splitlines():
            row = dict(zip(fields, line.split("|"), strict=False))
            if row.get("JobID") == jobid and row.get("State", "").split()[0] in FINAL:
                return row
        time.sleep(0.2)
    raise AssertionError(f"job {jobid} not final in sacct after {timeout} s: {last!r}\n{cluster.logs()}")


def wait_state(cluster: dh.DrmsCluster, jobid: str, state: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = run(cluster, "squeue", "-h", "-t", "all", "-j", jobid, "-o", "%T", check=False).stdout.strip()
        if out == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"job {jobid} never {state} (last {out!r})")


# --------------------------------------------------------------------------- single node


def test_ready(single: dh.DrmsCluster) -> None:
    print(f"{single.spec.name}: docker run -> ready {single.ready_seconds:.1f} s")
    node = run(single, "sinfo", "-h", "-N", "-o", "%N %T %c").stdout.split()
    assert node[1] == "idle" and node[2] == "16", node
    assert Path(single.shared_dir).is_dir()
    assert oct(Path(single.shared_dir).stat().st_mode & 0o7777) == "0o1777"
    assert single.command_prefix[:5] == ["docker", "exec", "-i", "-u", "alice"]
    rc, out = single.exec(["id", "-un"], user="alice")
    assert (rc, out.strip()) == (0, "alice")


def test_sbatch_stdin_squeue_sacct_exit_code(single: dh.DrmsCluster) -> None:
    wd = single.make_workdir("exit3")
    script = (
        "#!/bin/bash\n"
        "echo hello from $(hostname)\n"
        "python3 -c 'import sys; print(sys.version_info[0])'\n"
        "sleep 1\n"
        "exit 3\n"
    )
    jobid = run(single, "sbatch", "--parsable", "-D", wd, "-o", f"{wd}/job-%j.out", input=script).stdout.strip()
    assert jobid.isdigit(), jobid
    listing = run(single, "squeue", "-h", "-t", "all", "-o", "%i|%T|%u").stdout
    assert any(line.startswith(f"{jobid}|") and line.endswith("|alice") for line in listing.splitlines()), listing
    row = sacct_row(single, jobid)
    assert row["State"] == "FAILED" and row["ExitCode"] == "3:0", row
    out = Path(wd, f"job-{jobid}.out").read_text()
    assert "hello from" in out and out.splitlines()[-1] == "3", out
    full = run(single, "sacct", "-P", "-j", jobid, "-o", "jobid,state,exitcode").stdout
    assert f"{jobid}|FAILED|3:0" in full.splitlines(), full


def test_scancel(single: dh.DrmsCluster) -> None:
    wd = single.make_workdir("cancel")
    jobid = run(single, "sbatch", "--parsable", "-D", wd, "-o", "/dev/null", "--wrap", "sleep 300").stdout.strip()
    wait_state(single, jobid, "RUNNING")
    run(single, "scancel", jobid)
    row = sacct_row(single, jobid)
    assert row["State"].startswith("CANCELLED"), row


def test_exec_stdin_and_logs(single: dh.DrmsCluster) -> None:
    rc, out = single.exec(["wc", "-c"], user="alice", stdin=b"x" * 100_000)
    assert rc == 0 and out.strip() == "100000"
    rc, out = single.exec(["bash", "-c", "exit 7"])
    assert rc == 7
    logs = single.logs()
    assert "SOMA-SCHEDULERS-READY slurm" in logs and "slurmctld.log" in logs


def test_srun_pty(single: dh.DrmsCluster) -> None:
    _srun_pty(single)


def _srun_pty(cluster: dh.DrmsCluster) -> str:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn("docker", ["exec", "-it", "-u", cluster.spec.user, cluster.name,
                                     "srun", "--pty", "/bin/bash"], encoding="utf-8", timeout=30)
    try:
        child.sendline("echo MARK-$(hostname)-$((6*7))-$SLURM_JOB_ID")
        child.expect(r"MARK-([\w.-]+)-42-(\d+)")
        host = child.match.group(1)
        child.sendline("exit 4")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 4, (child.exitstatus, child.signalstatus)
    return str(host)


# --------------------------------------------------------------------------- multi node


def test_two_nodes(multi: dh.DrmsCluster) -> None:
    print(f"{multi.spec.name}: docker run -> ready {multi.ready_seconds:.1f} s")
    assert len(multi.containers) == 3
    wd = multi.make_workdir("twonodes")
    jobid = run(multi, "sbatch", "--parsable", "-N2", "-n2", "-D", wd, "-o", f"{wd}/out-%j.txt",
                "--wrap", "srun hostname; srun ls -d " + wd).stdout.strip()
    row = sacct_row(multi, jobid)
    assert row["State"] == "COMPLETED", row
    lines = Path(wd, f"out-{jobid}.txt").read_text().split()
    assert sorted(lines[:2]) == ["c1", "c2"], lines
    assert lines[2:] == [wd, wd]  # the shared dir is mounted on both compute nodes


def test_sacct_from_compute_node(multi: dh.DrmsCluster) -> None:
    jobid = run(multi, "sbatch", "--parsable", "--wrap", "exit 3", "-o", "/dev/null").stdout.strip()
    sacct_row(multi, jobid)
    rc, out = multi.exec(["sacct", "-n", "-P", "-X", "-j", jobid, "-o", "state,exitcode"],
                         user="alice", container=multi.containers[1])
    assert rc == 0 and out.strip() == "FAILED|3:0", out


def test_srun_pty_on_compute(multi: dh.DrmsCluster) -> None:
    assert _srun_pty(multi) in ("c1", "c2")


# --------------------------------------------------------------------------- harness


def test_stop_removes_everything() -> None:
    cluster = _start("slurm")
    names = [c.name for c in cluster.containers]
    shared = cluster.shared_dir
    # a file owned by the container user in the shared dir
    rc, _ = cluster.exec(["bash", "-c", f"mkdir {shared}/d && touch {shared}/d/f"], user="alice")
    assert rc == 0
    t0 = time.monotonic()
    cluster.stop()
    assert time.monotonic() - t0 < 20  # SIGTERM handled, no SIGKILL after the timeout
    client = dh.docker_client()
    left = client.containers.list(all=True, filters={"name": names[0]})
    assert not left and not os.path.exists(shared)
    cluster.stop()  # idempotent


def test_cleanup_stale() -> None:
    ok, reason = dh.docker_available()
    if not ok:
        pytest.skip(reason)
    client = dh.docker_client()
    proc = subprocess.Popen(["true"])
    proc.wait()
    labels = {dh.HARNESS_LABEL: "1", "org.soma-schedulers.pid": str(proc.pid),
              "org.soma-schedulers.host": __import__("socket").gethostname()}
    net = client.networks.create(f"soma-stale-test-{os.getpid()}", labels=labels)
    try:
        assert dh.cleanup_stale(log=_log) >= 1
        assert not client.networks.list(names=[net.name])
    finally:
        if client.networks.list(names=[net.name]):
            net.remove()


def test_containers_dir() -> None:
    d = dh.containers_dir()
    assert (d / "slurm" / "Dockerfile").is_file()
    for spec in dh.CLUSTERS.values():
        assert (d / spec.context / (spec.dockerfile or "Dockerfile")).is_file(), spec


def test_two_node_job_through_slurm_scheduler(multi: dh.DrmsCluster) -> None:
    """A Job with parallel_job_info runs on two different compute containers (proved by its output)."""
    from soma_schedulers import BridgeConfig, Job, SchedulerConfig
    from soma_schedulers import constants as C
    from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler
    from soma_schedulers.testing import wait_for_end

    out = Path(multi.make_workdir("two-nodes")) / "hosts"
    cfg = SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(multi.command_prefix)))
    with SlurmScheduler(cfg) as sched:
        [jid] = sched.job_submission([Job(
            command=["srun", "hostname"], stdout_file=str(out),
            parallel_job_info={"config_name": "native", "nodes_number": 2, "cpu_per_node": 1},
        )])
        assert jid is not None, sched.last_submission_errors
        wait_for_end(sched, [jid], 120, 0.3)
        assert sched.get_job_exit_info(jid)[:2] == (C.FINISHED_REGULARLY, 0)
    hosts = out.read_text().split()
    assert sorted(hosts) == ["c1", "c2"], hosts
