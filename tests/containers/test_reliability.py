"""Reliability under injected faults, against a real Slurm (issue 8, first part).

200 jobs through SlurmScheduler while 20 % of the DRMS calls fail, hang past
their timeout, lose their answer after the DRMS acted, or come back cut short.
Every job must end tracked with its true end state, or be refused at submission
with a reason and be absent from Slurm; nothing may raise to the caller; no
job may stay ``undetermined`` longer than the policy allows.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler
from soma_schedulers.testing import docker_harness as dh
from soma_schedulers.testing.faults import FaultPlan, inject_faults

pytestmark = pytest.mark.drms

N_JOBS = int(os.environ.get("SOMA_RELIABILITY_JOBS", "200"))
UNDETERMINED_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[dh.DrmsCluster]:
    ok, reason = dh.docker_available()
    if not ok:
        pytest.skip(f"docker unavailable: {reason}")
    try:
        c = dh.start_cluster("slurm", log=print, name_suffix=os.environ.get("PYTEST_XDIST_WORKER", ""))
    except dh.ImageUnavailable as exc:
        pytest.skip(f"slurm image unavailable: {exc}")
    yield c
    c.stop()


def test_200_jobs_under_20_percent_faults(cluster: dh.DrmsCluster) -> None:
    cfg = SchedulerConfig(
        bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix)),
        status_cache_seconds=0.2, command_timeout=10.0, command_retries=2,
        undetermined_timeout=UNDETERMINED_TIMEOUT,
    )
    name = f"rel-{uuid.uuid4().hex[:8]}"
    expected = {}
    with SlurmScheduler(cfg) as sched:
        sched.runner.backoff = 0.1
        plan = inject_faults(sched.runner, FaultPlan(rate=0.2, seed=8, hang_seconds=0.3))
        jobs = [Job(command=["/bin/sh", "-c", f"exit {i % 4}"], name=name) for i in range(N_JOBS)]
        ids: list[str | None] = []
        refused: list[str | None] = []
        for start in range(0, N_JOBS, 20):  # submitting while earlier jobs run and are polled
            batch = sched.job_submission(jobs[start:start + 20])
            ids += batch
            refused += [e for i, e in zip(batch, sched.last_submission_errors, strict=True) if i is None]
            sched.get_jobs_status([i for i in ids if i])
        tracked = {jid: i % 4 for i, jid in enumerate(ids) if jid is not None}
        expected.update(tracked)

        # Poll until every tracked job ended; measure the longest 'undetermined' stretch.
        since: dict[str, float] = {}
        longest = 0.0
        deadline = time.monotonic() + 600
        while True:
            status = sched.get_jobs_status(list(tracked))
            now = time.monotonic()
            for jid, st in status.items():
                if st == C.UNDETERMINED:
                    since.setdefault(jid, now)
                    longest = max(longest, now - since[jid])
                else:
                    since.pop(jid, None)
            if all(s in C.END_STATES for s in status.values()):
                break
            assert now < deadline, {j: s for j, s in status.items() if s not in C.END_STATES}
            time.sleep(0.3)
        infos = sched.get_jobs_exit_info(list(tracked))
        counts = dict(plan.counts)

    wrong = {jid: (status[jid], tuple(infos[jid])[:3]) for jid, code in tracked.items()
             if (status[jid], tuple(infos[jid])[:3]) != (C.DONE, (C.FINISHED_REGULARLY, code, None))}
    # Every job Slurm has under this run's name is one we track: none lost, none invented.
    # (sacct may not list a job that ended a second ago: squeue still does)
    rc, out = cluster.exec(["sacct", "-n", "-X", "-P", "--name", name, "-o", "JobIDRaw"], user="alice")
    rc2, out2 = cluster.exec(["squeue", "-h", "-t", "all", "--name", name, "-o", "%i"], user="alice")
    assert rc == rc2 == 0, (out, out2)
    in_slurm = set(out.split()) | set(out2.split())
    print(f"\n{N_JOBS} jobs, {sum(counts.values())} DRMS calls, faults injected: "
          f"{ {k: v for k, v in counts.items() if k != 'ok'} }; tracked {len(tracked)}, refused at "
          f"submission {len(refused)}, wrong end states {len(wrong)}, longest undetermined {longest:.1f} s")
    assert plan.injected >= N_JOBS // 10, counts
    assert not wrong, wrong
    assert in_slurm == set(tracked), (sorted(in_slurm - set(tracked)), sorted(set(tracked) - in_slurm))
    assert all(r and ("cannot submit" in r or "sbatch" in r) for r in refused), refused
    assert longest < UNDETERMINED_TIMEOUT


def test_daemon_restarts_with_50_jobs_in_flight(cluster: dh.DrmsCluster) -> None:
    """slurmctld, then slurmd, restart while 50 jobs wait or run: each ends tracked, with its true state."""
    cfg = SchedulerConfig(
        bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix)),
        status_cache_seconds=0.2, command_timeout=10.0, undetermined_timeout=UNDETERMINED_TIMEOUT,
    )
    with SlurmScheduler(cfg) as sched:
        jobs = [Job(command=["/bin/sh", "-c", f"sleep {2 + i % 5}; exit {i % 3}"]) for i in range(50)]
        ids = sched.job_submission(jobs)
        assert None not in ids, sched.last_submission_errors
        time.sleep(1.0)
        seen: set[str] = set()
        for restart in ("scontrol shutdown slurmctld; sleep 2; /usr/sbin/slurmctld",
                        "pkill -x slurmd; sleep 2; /usr/sbin/slurmd"):
            rc, out = cluster.exec(["bash", "-c", restart])
            assert rc == 0, out
            for _ in range(10):  # poll through the restart
                seen.update(sched.get_jobs_status(ids).values())  # type: ignore[arg-type]
                time.sleep(0.3)
        deadline = time.monotonic() + 300
        while True:
            status = sched.get_jobs_status(ids)  # type: ignore[arg-type]
            seen.update(status.values())
            if all(s in C.END_STATES for s in status.values()):
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        infos = sched.get_jobs_exit_info(ids)  # type: ignore[arg-type]
    wrong = {jid: tuple(infos[jid])[:3] for i, jid in enumerate(ids)
             if (status[jid], tuple(infos[jid])[:3]) != (C.DONE, (C.FINISHED_REGULARLY, i % 3, None))}  # type: ignore[index]
    print(f"\n50 jobs, 2 daemon restarts, statuses seen {sorted(seen)}, wrong end states {len(wrong)}")
    assert not wrong, wrong


def test_load_2000_jobs_8_threads(cluster: dh.DrmsCluster) -> None:
    """2,000 short jobs submitted and polled from 8 threads: none lost, duplicated or misreported."""
    from soma_schedulers.testing.load import run_load

    cfg = SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix)),
                          status_cache_seconds=0.5, command_timeout=60.0)
    sched = SlurmScheduler(cfg)
    result = run_load(sched, jobs=int(os.environ.get("SOMA_LOAD_JOBS", "2000")), threads=8, poll=0.5)
    calls = sched.runner.calls
    sched.clean()
    print(f"\nload: {result.jobs} jobs, {result.threads} threads, {result.seconds:.1f} s, {calls} DRMS calls, "
          f"wrong {len(result.wrong)}, duplicates {result.duplicates}, errors {result.errors[:3]}")
    assert not result.errors and not result.wrong and result.duplicates == 0
    assert sched._records == {}  # clean() forgets every job
