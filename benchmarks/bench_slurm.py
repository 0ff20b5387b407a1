"""Slurm: polling cost and submission overhead, as ratios measured in one run.

With 500 held jobs in Slurm: one status poll of all of them through our
SlurmScheduler (1 DRMS call) against Soma-Workflow 6.x's SlurmScheduler, which
runs one ``sacct`` per job; and 200 submissions through our backend against a
raw ``sbatch`` loop. Every DRMS command, ours, Soma-Workflow's and the raw
loop's, goes through the same ``docker exec`` into the Slurm container, so the
ratios compare the implementations, not the transport.

    python benchmarks/bench_slurm.py [--drms slurm] [--held 500] [--submit 200]
"""

from __future__ import annotations

import argparse
import os
import shlex
import stat
import subprocess
import sys
import tempfile
import time

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler
from soma_schedulers.testing import docker_harness


def _wrappers(prefix: list[str], where: str) -> None:
    """Put sbatch/squeue/sacct/scancel on PATH as thin wrappers over the bridge prefix."""
    for cmd in ("sbatch", "squeue", "sacct", "scancel"):
        path = os.path.join(where, cmd)
        with open(path, "w") as fh:
            fh.write(f"#!/bin/sh\nexec {shlex.join(prefix)} {cmd} \"$@\"\n")
        os.chmod(path, stat.S_IRWXU)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--drms", default="slurm")
    p.add_argument("--held", type=int, default=500)
    p.add_argument("--submit", type=int, default=200)
    p.add_argument("--sw-sample", type=int, default=0,
                   help="ask Soma-Workflow about only this many jobs and scale (0: all)")
    a = p.parse_args()
    cluster = docker_harness.start_cluster(a.drms, log=lambda s: print(s, file=sys.stderr))
    try:
        prefix = list(cluster.command_prefix)
        cfg = SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(prefix)), status_cache_seconds=0)
        ours = SlurmScheduler(cfg)

        # -- submission: ours vs a raw sbatch loop ---------------------------------------
        t0 = time.perf_counter()
        for _ in range(a.submit):
            subprocess.run([*prefix, "sbatch", "--parsable", "--hold", "--output=/dev/null", "--wrap", "true"],
                           check=True, capture_output=True)
        raw_submit = time.perf_counter() - t0
        t0 = time.perf_counter()
        ids = []
        for _ in range(a.submit):
            ids += ours.job_submission([Job(command=["/bin/true"], hold=True)])
        our_submit = time.perf_counter() - t0
        assert None not in ids, ours.last_submission_errors

        # -- polling 'held' jobs ---------------------------------------------------------------
        more = a.held - len(ids)
        while more > 0:
            batch = ours.job_submission([Job(command=["/bin/true"], hold=True) for _ in range(min(more, 100))])
            ids += batch
            more -= len(batch)
        calls0 = ours.runner.calls
        t0 = time.perf_counter()
        statuses = ours.get_jobs_status(ids)  # type: ignore[arg-type]
        our_poll = time.perf_counter() - t0
        our_calls = ours.runner.calls - calls0
        assert set(statuses.values()) == {"user_on_hold"}, set(statuses.values())

        from soma_workflow.schedulers.slurm_scheduler import SlurmScheduler as SWSlurm  # type: ignore[import-not-found]

        with tempfile.TemporaryDirectory() as bindir:
            _wrappers(prefix, bindir)
            os.environ["PATH"] = bindir + os.pathsep + os.environ["PATH"]
            sw = SWSlurm(None, tmp_file_path=bindir)
            sample = ids[: a.sw_sample] if a.sw_sample else ids
            t0 = time.perf_counter()
            sw_status = [sw.get_job_status(i) for i in sample]
            sw_poll = (time.perf_counter() - t0) * len(ids) / len(sample)
        print(f"## Slurm ({a.drms}) through `docker exec`, same cluster, same run\n")
        print("| measurement | ours | other | ratio |")
        print("|---|---|---|---|")
        print(f"| one status poll of {len(ids)} held jobs | {our_poll * 1000:.0f} ms, {our_calls} DRMS call(s) "
              f"| Soma-Workflow 6.x: {sw_poll:.1f} s, {len(ids)} `sacct` calls | ours {sw_poll / our_poll:.0f}x faster |")
        print(f"| submit {a.submit} jobs | {our_submit:.2f} s | raw `sbatch` loop: {raw_submit:.2f} s "
              f"| ours {our_submit / raw_submit:.2f}x the time |")
        print(f"\nStatuses Soma-Workflow reported for the held jobs: {sorted(set(sw_status))} "
              "(on 22.05 its `sacct -o ...,stdout` is refused, so it says 'undetermined')")
        for jid in ids:
            ours.kill_job(jid)  # type: ignore[arg-type]
        subprocess.run([*prefix, "scancel", "-u", "alice"], capture_output=True)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
