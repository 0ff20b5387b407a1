"""The OpenPBS and Torque images with real daemons: start-up, interactive jobs (``qsub -I``
driven with pexpect), 2-node jobs, the force-kill path, clean stop and restart, and the skip
when the upstream source is missing.

Run with ``pytest -m drms tests/containers/test_pbs_images.py -s``. Skipped with the reason when
Docker, the images or their upstream sources are unavailable here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from image_clusters import module_clusters, start_or_skip  # tests/containers/image_clusters.py

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers.pbspro_scheduler import PBSProScheduler
from soma_schedulers.testing import docker_harness as dh
from soma_schedulers.testing.target import wait_for_end, wait_for_status

pytestmark = pytest.mark.drms

SINGLE = ["openpbs", "torque"]
MULTI = ["openpbs-cluster", "torque-cluster"]
REPO = Path(__file__).resolve().parents[2]


single = module_clusters(*SINGLE)
multi = module_clusters(*MULTI)


def scheduler(cluster: dh.DrmsCluster, **options: str) -> PBSProScheduler:
    cfg = SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix)),
                          status_cache_seconds=0.2, options=options)
    return PBSProScheduler(cfg)


def run(cluster: dh.DrmsCluster, *argv: str, input: str | None = None) -> str:
    proc = subprocess.run([*cluster.command_prefix, *argv], input=input, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"{argv} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_ready(single: dh.DrmsCluster) -> None:
    print(f"{single.spec.name}: docker run -> ready {single.ready_seconds:.1f} s")
    with scheduler(single) as s:
        impl, version = s.get_pbs_version()
    assert (impl, version) == {"openpbs": ("pbspro", "23.06.06"), "torque": ("torque", "6.1-dev")}[single.spec.name]
    rc, out = single.exec(["id", "-un"], user="alice")
    assert (rc, out.strip()) == (0, "alice")
    rc, out = single.exec(["bash", "-c", "pbsnodes -a"])
    assert rc == 0 and "state = free" in out and ("ncpus = 16" in out or "np = 16" in out), out


def _interactive(cluster: dh.DrmsCluster, *qsub_args: str) -> str:
    """``qsub -I`` as alice: a shell on the execution host; returns that host's name."""
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn("docker", ["exec", "-it", "-u", cluster.spec.user, "-w", "/tmp", cluster.name,
                                     "qsub", "-I", *qsub_args], encoding="utf-8", timeout=60)
    try:
        child.expect(r"qsub: job (\S+) ready")
        job_id = child.match.group(1)
        child.sendline("echo MARK-$(hostname)-$((6*7))-$PBS_JOBID")
        child.expect(r"MARK-([\w.-]+)-42-(\S+)")
        host, seen_id = child.match.group(1), child.match.group(2).strip()
        assert seen_id == job_id
        child.sendline("exit 4")
        child.expect(r"qsub: job \S+ completed")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0  # qsub -I does not pass the shell's exit code on
    return str(host)


def test_interactive_job(single: dh.DrmsCluster) -> None:
    assert _interactive(single) == single.spec.context


def test_interactive_job_on_a_mom(multi: dh.DrmsCluster) -> None:
    assert _interactive(multi) in ("c1", "c2")


def test_two_node_job(multi: dh.DrmsCluster) -> None:
    """parallel_job_info (select=2:ncpus=1 + place=scatter / nodes=2:ppn=1) spans both MOMs."""
    out = Path(multi.make_workdir("two-nodes")) / "hosts"
    with scheduler(multi) as s:
        [jid] = s.job_submission([Job(
            command=["sh", "-c", 'sort -u "$PBS_NODEFILE"; hostname'], stdout_file=str(out),
            parallel_job_info={"config_name": "native", "nodes_number": 2, "cpu_per_node": 1},
        )])
        assert jid is not None, s.last_submission_errors
        wait_for_end(s, [jid], 120, 0.3)
        assert s.get_job_exit_info(jid)[:2] == (C.FINISHED_REGULARLY, 0)
    *nodes, mother = out.read_text().split()
    assert len(nodes) == 2 and sorted(n.split(".")[0][-2:] for n in nodes) == ["c1", "c2"], nodes
    assert mother in ("c1", "c2")


def test_force_kill_of_a_lingering_job(single: dh.DrmsCluster) -> None:
    """A job ignoring SIGTERM outlives qdel until kill_delay (OpenPBS: 10 s): forced after 2 s."""
    with scheduler(single, force_kill_after="2") as s:
        [jid] = s.job_submission([Job(command=["sh", "-c", 'trap "" TERM; sh -c "trap \\"\\" TERM; sleep 300"'])])
        assert jid is not None, s.last_submission_errors
        assert wait_for_status(s, jid, frozenset({C.RUNNING}), 60) == C.RUNNING
        time.sleep(1)
        t0 = time.monotonic()
        s.kill_job(jid)
        wait_for_end(s, [jid], 60, 0.2)
        took = time.monotonic() - t0
        assert (s.get_job_status(jid), *s.get_job_exit_info(jid)[:2]) == (C.FAILED, C.USER_KILLED, None)
    print(f"{single.spec.name}: lingering job ended {took:.1f} s after kill_job")
    if single.spec.name == "openpbs":
        assert took < 9, took  # without the force path: kill_delay, 10 s and more


def test_clean_stop_keeps_the_job_counter() -> None:
    """SIGTERM stops the daemons cleanly: after docker stop/start, job ids go on (they restart at 0
    when PostgreSQL is killed)."""
    for name in SINGLE:
        cluster = start_or_skip(name)
        try:
            first = int(run(cluster, "qsub", "-h", input="true\n").split(".")[0])
            ctr = cluster.controller
            t0 = time.monotonic()
            ctr.stop(timeout=30)
            stop_took = time.monotonic() - t0
            ctr.reload()
            assert ctr.attrs["State"]["ExitCode"] == 0 and stop_took < 20, (stop_took, ctr.attrs["State"])
            ctr.start()
            deadline = time.monotonic() + 120
            while ctr.logs().decode().count(cluster.spec.ready_line) < 2:
                assert time.monotonic() < deadline, cluster.logs()
                time.sleep(0.3)
            second = int(run(cluster, "qsub", input="true\n").split(".")[0])
            print(f"{name}: docker stop {stop_took:.1f} s, ids {first} then {second}")
            assert second > first
        finally:
            cluster.stop()


def test_missing_source_skips_with_the_reason(tmp_path: Path) -> None:
    """Without containers/<name>/src (and no download allowed) the DRMS runs skip, saying why, when
    asked to (--drms-missing=skip; by default such a run fails with the same reason)."""
    ok, reason = dh.docker_available()
    if not ok:
        pytest.skip(f"docker unavailable: {reason}")
    copy = tmp_path / "containers"
    shutil.copytree(dh.containers_dir(), copy, ignore=shutil.ignore_patterns("src", "*.tar.gz", "*.tgz"))
    env = {k: v for k, v in os.environ.items()
           if k not in (dh.ALLOW_DOWNLOAD_ENV, dh.SKIP_BUILD_ENV, "PYTEST_ADDOPTS")}
    env[dh.CONTAINERS_ENV] = str(copy)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "tests" / "test_conformance.py"), "-p", "no:cacheprovider",
         "-rs", "-q", "--drms-missing=skip", *(a for name in [*SINGLE, *MULTI] for a in ("--drms", name))],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" not in proc.stdout.splitlines()[-1] and "skipped" in proc.stdout.splitlines()[-1]
    for what in ("OpenPBS 23.06.06 source (commit be361a18ef37652bece0811ec709f0fe4fc52710)",
                 "Torque 6.1-dev source (commit 9335ebb6a95a89dad4fcf0afd9b1f03af4be1276)",
                 "SOMA_SCHEDULERS_ALLOW_DOWNLOAD=1"):
        assert what in proc.stdout, proc.stdout[-3000:]
