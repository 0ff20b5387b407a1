"""HTCondor: one poll of N jobs against per-job ``condor_q``, and N different jobs in one
``condor_submit`` against a ``condor_submit`` loop, in one run on the ``htcondor`` personal pool.

Every job has its own argv, environment and stdout file, and is submitted held (nothing runs,
so the pool's speed does not enter the submission figures). Measured:

* ours with bulk submission (``ARRAYS = auto``: one ``condor_submit`` of ``queue ... from``
  rows) against ours one job per ``condor_submit`` (``ARRAYS = never``), same transport (a
  ``/bin/sh`` kept open in the container, ``BRIDGE_SHELLS``);
* one status poll of ``--poll-jobs`` held jobs (one ``condor_q``) against a shell loop of one
  ``condor_q ID`` per job run inside the container (no transport at all: the strictest baseline).

    PYTHONPATH=. python benchmarks/bench_htcondor.py [--jobs 1000] [--poll-jobs 500]

It ends with two lines: ``htcondor submit <n> jobs: one condor_submit <t> s, loop <t> s, ratio <r>x``
and ``htcondor poll <n> jobs: one condor_q <t> s, per-job condor_q <t> s, ratio <r>x``.
"""

from __future__ import annotations

import argparse
import time

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers.schedulers.htcondor_scheduler import HTCondorScheduler
from soma_schedulers.testing import docker_harness


def _jobs(n: int, out: str) -> list[Job]:
    return [Job(command=["/bin/echo", f"job {i}", "it's"], env={"SOMA_N": str(i)}, stdout_file=f"{out}/{i}.out",
                hold=True) for i in range(n)]


def _submit(cluster: docker_harness.DrmsCluster, arrays: str, n: int, out: str) -> tuple[float, list[str]]:
    cfg = SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix), shells=True),
                          arrays=arrays, array_min_size=2)
    with HTCondorScheduler(cfg) as sched:
        sched.runner.run(["condor_q", "-totals"])  # the kept shell is open before the clock starts
        t0 = time.perf_counter()
        ids = sched.job_submission(_jobs(n, out))
        seconds = time.perf_counter() - t0
        calls = sched.runner.calls
    assert None not in ids, ids[:3]
    print(f"  ARRAYS={arrays}: {n} jobs in {seconds:.2f} s ({calls} DRMS calls)", flush=True)
    return seconds, [i for i in ids if i is not None]


def _poll(cluster: docker_harness.DrmsCluster, ids: list[str]) -> tuple[float, float]:
    cfg = SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix), shells=True),
                          status_cache_seconds=0)
    with HTCondorScheduler(cfg) as sched:
        sched.runner.run(["condor_q", "-totals"])
        for job_id in ids:
            sched.track_job(job_id)
        t0 = time.perf_counter()
        status = sched.get_jobs_status(ids)
        ours = time.perf_counter() - t0
    assert set(status.values()) == {"user_on_hold"}, set(status.values())
    loop = (f"t0=$(date +%s.%N); for id in {' '.join(ids)}; do condor_q -af JobStatus $id >/dev/null || exit 1; "
            "done; echo $t0 $(date +%s.%N)")
    rc, text = cluster.exec(["sh", "-c", loop], user="alice")
    assert rc == 0, text
    start, end = (float(f) for f in text.split())
    raw = end - start
    return ours, raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--poll-jobs", type=int, default=500)
    args = parser.parse_args()
    cluster = docker_harness.start_cluster("htcondor", name_suffix="bench")
    try:
        out = cluster.make_workdir("bench")
        print(f"htcondor: submitting {args.jobs} different held jobs", flush=True)
        bulk, ids = _submit(cluster, "auto", args.jobs, out)
        loop, _ = _submit(cluster, "never", args.jobs, out)
        ours, raw = _poll(cluster, ids[: args.poll_jobs])
        cluster.exec(["condor_rm", "-all"], user="alice")
        print(f"htcondor submit {args.jobs} jobs: one condor_submit {bulk:.2f} s, loop {loop:.2f} s, "
              f"ratio {loop / bulk:.1f}x")
        print(f"htcondor poll {args.poll_jobs} jobs: one condor_q {ours:.3f} s, per-job condor_q {raw:.2f} s, "
              f"ratio {raw / ours:.1f}x")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
