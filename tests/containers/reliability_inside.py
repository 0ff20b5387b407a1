"""Reliability of the in-cluster backends (issue 8): run INSIDE the clusters, not collected on the host.

``tests/containers/test_reliability_incontainer.py`` starts the cluster and runs these as alice
with ``PYTHONPATH=/src``:

* DRMAA on SGE 8.1.9 (``sge`` cluster, plain ``python3 -m pytest``): 200 jobs while 20 % of the
  DRMAA calls fail, hang or lose their answer (:func:`inject_drmaa_faults`); 50 jobs in flight
  while the host restarts ``sge_qmaster`` and ``sge_execd`` (a file handshake in
  ``$SOMA_RELIABILITY_DIR``); 2,000 jobs from 8 threads.
* DRMAA on Slurm 22.05 (``slurm-drmaa`` cluster, where its source is): the same 200 jobs under faults.
* MPI (``mpi`` cluster, rank 0 of ``mpirun ... mpi_scheduler -m pytest``): 2,000 jobs from 8 threads.

``$SOMA_RELIABILITY_DIR`` is a directory of the cluster's shared directory (every host sees it).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from soma_schedulers import Job, SchedulerConfig
from soma_schedulers.testing.faults import DRMAA_KINDS, FaultPlan, inject_drmaa_faults
from soma_schedulers.testing.load import run_load, submit_in_batches, wait_all_ended, wrong_end_states

WORK = Path(os.environ.get("SOMA_RELIABILITY_DIR", os.getcwd()))
N_JOBS = int(os.environ.get("SOMA_RELIABILITY_JOBS", "200"))
N_LOAD = int(os.environ.get("SOMA_LOAD_JOBS", "2000"))
#: SGE runs about 11 short jobs a second on 2 cores (2,000 jobs: 182 s): CI may ask for fewer.
N_SGE_LOAD = int(os.environ.get("SOMA_SGE_LOAD_JOBS", str(N_LOAD)))
UNDETERMINED_TIMEOUT = 120.0


def drmaa_scheduler(**settings: Any) -> Any:
    from soma_schedulers.schedulers.drmaa_scheduler import DrmaaScheduler

    defaults: dict[str, Any] = {"status_cache_seconds": 0.2, "undetermined_timeout": UNDETERMINED_TIMEOUT}
    cfg = SchedulerConfig(options={"tmp_dir": str(WORK / "drmaa-scripts")}, **{**defaults, **settings})
    return DrmaaScheduler(cfg)


def sge_jobs_named(prefix: str) -> dict[str, str]:
    """SGE job id -> name of alice's jobs whose name starts with ``prefix``, live or ended; an
    array's tasks as ``<number>.<task>`` (the ids DRMAA gives them)."""
    jobs: dict[str, str] = {}
    live = subprocess.run(["qstat", "-u", "alice", "-g", "d", "-xml"], capture_output=True, text=True,
                          check=True).stdout
    for block in re.findall(r"<job_list[^>]*>(.*?)</job_list>", live, re.S):
        number = re.search(r"<JB_job_number>(\d+)</JB_job_number>", block)
        name = re.search(r"<JB_name>([^<]*)</JB_name>", block)
        task = re.search(r"<tasks>(\d+)</tasks>", block)
        if number and name:
            jobs[f"{number[1]}.{task[1]}" if task else number[1]] = name[1]
    acct = subprocess.run(["qacct", "-o", "alice", "-j"], capture_output=True, text=True, check=False).stdout
    for name, number, task in re.findall(r"^jobname\s+(\S+)\s*\njobnumber\s+(\d+)\s*\ntaskid\s+(\S+)", acct,
                                         re.MULTILINE):
        jobs[f"{number}.{task}" if task.isdigit() else number] = name
    return {n: name for n, name in jobs.items() if name.startswith(prefix)}


def slurm_jobs_named(prefix: str) -> dict[str, str]:
    """Slurm job id -> name of alice's jobs whose name starts with ``prefix``, live or ended; an
    array's tasks as ``<array>_<task>`` (``-r``, ``JobID``: the ids slurm-drmaa gives them)."""
    jobs: dict[str, str] = {}
    live = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-u", "alice", "-o", "%i|%j"],
                          capture_output=True, text=True, check=True).stdout
    acct = subprocess.run(["sacct", "-n", "-X", "-P", "-u", "alice", "-S", "now-2hours", "-o", "JobID,JobName"],
                          capture_output=True, text=True, check=True).stdout
    for line in (live + acct).splitlines():
        number, _, name = line.partition("|")
        jobs[number] = name
    return {n: name for n, name in jobs.items() if name.startswith(prefix)}


def drmaa_200_jobs_under_faults(drms: str, jobs_named: Any, caplog: pytest.LogCaptureFixture) -> None:
    """200 jobs while 20 % of the DRMAA calls fail, hang or lose their answer: every job tracked to
    its true end, or refused and absent from the DRMS (a lost ``runJob`` is found by the job's name)."""
    caplog.set_level("WARNING", logger="soma_schedulers")
    name = f"rel{uuid.uuid4().hex[:8]}"
    sched = drmaa_scheduler(command_retries=2)
    sched.runner.backoff = 0.1
    plan = inject_drmaa_faults(sched, FaultPlan(rate=0.2, kinds=DRMAA_KINDS, seed=8, hang_seconds=0.2))
    t0 = time.monotonic()
    jobs = [Job(command=["/bin/sh", "-c", f"exit {i % 4}"], name=name) for i in range(N_JOBS)]
    ids, refused = submit_in_batches(sched, jobs)
    tracked = {jid: i % 4 for i, jid in enumerate(ids) if jid is not None}
    status, longest = wait_all_ended(sched, list(tracked))
    wrong = wrong_end_states(sched, tracked, status)
    counts = dict(plan.counts)
    sched.clean()
    time.sleep(2.0)  # SGE's accounting file is flushed every second; Slurm's lags as much
    in_drms = jobs_named(f"{name}.soma")
    found = sum("found job" in r.getMessage() for r in caplog.records)
    print(f"\n{drms}/DRMAA: {N_JOBS} jobs, {sum(counts.values())} DRMAA calls, faults injected: "
          f"{ {k: v for k, v in counts.items() if k != 'ok'} }; tracked {len(tracked)} ({found} found by name "
          f"after a lost runJob), refused at submission "
          f"{len(refused)}, wrong end states {len(wrong)}, longest undetermined {longest:.1f} s, "
          f"{time.monotonic() - t0:.0f} s")
    assert plan.injected >= N_JOBS // 10, counts
    assert counts.get("lost", 0) and counts.get("fail", 0) and counts.get("hang", 0), counts
    assert not wrong, wrong
    # Every job the DRMS has under this run's name is one we track: none lost, none run twice, refused ones absent.
    assert set(in_drms) == set(tracked), (sorted(set(in_drms) - set(tracked)), sorted(set(tracked) - set(in_drms)))
    assert all(r and "cannot submit" in r for r in refused), refused
    assert longest < UNDETERMINED_TIMEOUT


def test_sge_200_jobs_under_20_percent_drmaa_faults(caplog: pytest.LogCaptureFixture) -> None:
    drmaa_200_jobs_under_faults("SGE", sge_jobs_named, caplog)


def test_slurm_drmaa_200_jobs_under_20_percent_drmaa_faults(caplog: pytest.LogCaptureFixture) -> None:
    drmaa_200_jobs_under_faults("Slurm", slurm_jobs_named, caplog)


def test_sge_daemon_restarts_with_50_jobs_in_flight(caplog: pytest.LogCaptureFixture) -> None:
    """The host restarts sge_qmaster, then sge_execd, while 50 jobs wait or run (see the module doc)."""
    caplog.set_level("WARNING", logger="soma_schedulers")
    sched = drmaa_scheduler()
    jobs = [Job(command=["/bin/sh", "-c", f"sleep {2 + i % 5}; exit {i % 3}"]) for i in range(50)]
    got = sched.job_submission(jobs)
    assert None not in got, sched.last_submission_errors
    ids = [i for i in got if i]
    (WORK / "submitted").write_text(" ".join(ids))
    seen: set[str] = set()
    t0 = time.monotonic()
    status, longest = wait_all_ended(sched, ids, seen, timeout=300)
    wrong = wrong_end_states(sched, {jid: i % 3 for i, jid in enumerate(ids)}, status)
    for _ in range(600):  # the host says when both restarts are done
        if (WORK / "restarted").exists():
            break
        time.sleep(0.2)
    restarts = (WORK / "restarted").read_text().strip()
    sched.clean()
    # libdrmaa calls the ends it missed while qmaster was down "aborted"; SGE's accounting corrects them
    doubted = sum(len(str(r.args[0]).split()) for r in caplog.records
                  if "asking SGE's accounting" in r.getMessage() and isinstance(r.args, tuple))
    print(f"\nSGE/DRMAA: 50 jobs, restarts: {restarts}; statuses seen {sorted(seen)}, longest undetermined "
          f"{longest:.1f} s, all ended after {time.monotonic() - t0:.0f} s, ends DRMAA called aborted and "
          f"accounting corrected {doubted}, wrong end states {len(wrong)}")
    assert not wrong, wrong


def check_load(sched: Any, label: str, poll: float, jobs: int = N_LOAD) -> None:
    result = run_load(sched, jobs=jobs, threads=8, poll=poll, timeout=1200)
    sched.clean()
    print(f"\n{label} load: {result.jobs} jobs, {result.threads} threads, {result.seconds:.1f} s, "
          f"wrong {len(result.wrong)}, duplicates {result.duplicates}, errors {result.errors[:3]}")
    assert not result.errors and not result.wrong and result.duplicates == 0, result


def test_sge_load_2000_jobs_8_threads() -> None:
    sched = drmaa_scheduler(status_cache_seconds=1.0)
    check_load(sched, "SGE/DRMAA", poll=1.0, jobs=N_SGE_LOAD)
    # memory flat: clean() forgets every job and every file
    assert len(sched.job_table) == 0 and sched.scripts.files == {} and sched._reaped == {} and sched._terminated == set()
    assert not list((WORK / "drmaa-scripts").rglob("*.sh"))


def test_mpi_load_2000_jobs_8_threads() -> None:
    from soma_schedulers.schedulers import mpi_scheduler as M

    sched = M.MPIScheduler()
    check_load(sched, "MPI", poll=0.05)
    dispatcher = M._DISPATCHER
    assert dispatcher is not None
    with dispatcher.cond:
        assert not [r for r in dispatcher.records.values() if r.owner is sched]  # memory flat after clean()
        assert not dispatcher.queue and not any(w.assigned for w in dispatcher.workers.values())
