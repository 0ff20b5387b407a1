"""Polling cost against the number of jobs (1 to 1,000): batched vs per-job, on a real Slurm.

For each N, N held jobs are in Slurm; we time one batched poll through our
SlurmScheduler (one ``squeue`` for all) and a per-job poll (one ``squeue -j ID``
per job, what Soma-Workflow's backends do with qstat/sacct), same cluster,
same run, every call through the same ``docker exec``. Writes a PNG chart.

    python benchmarks/bench_polling.py [--sizes 1,10,100,300,1000] [--png polling.png]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler
from soma_schedulers.testing import docker_harness


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--drms", default="slurm")
    p.add_argument("--sizes", default="1,10,100,300,1000")
    p.add_argument("--png", default="benchmarks/results/polling.png")
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    cluster = docker_harness.start_cluster(a.drms, log=lambda s: print(s, file=sys.stderr))
    rows = []
    try:
        prefix = list(cluster.command_prefix)
        sched = SlurmScheduler(SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(prefix)),
                                               status_cache_seconds=0))
        ids: list[str] = []
        for n in sizes:
            while len(ids) < n:
                got = sched.job_submission([Job(command=["/bin/true"], hold=True)
                                            for _ in range(min(100, n - len(ids)))])
                ids += [i for i in got if i]
            subset = ids[:n]
            calls = sched.runner.calls
            t0 = time.perf_counter()
            sched.get_jobs_status(subset)
            batched = time.perf_counter() - t0
            batched_calls = sched.runner.calls - calls
            t0 = time.perf_counter()
            for jid in subset:
                subprocess.run([*prefix, "squeue", "-h", "-j", jid, "-o", "%T"], capture_output=True, check=True)
            per_job = time.perf_counter() - t0
            rows.append((n, batched, batched_calls, per_job))
            print(f"N={n}: batched {batched * 1000:.0f} ms ({batched_calls} call), per-job {per_job:.2f} s",
                  file=sys.stderr)
        subprocess.run([*prefix, "scancel", "--me"], capture_output=True)
    finally:
        cluster.stop()
    print(f"## Polling cost against the number of jobs (Slurm `{a.drms}`, through `docker exec`)\n")
    print("| jobs | ours, batched | DRMS calls | per-job `squeue -j` | ratio |")
    print("|---|---|---|---|---|")
    for n, b, c, pj in rows:
        print(f"| {n} | {b * 1000:.0f} ms | {c} | {pj * 1000:.0f} ms | {pj / b:.0f}x |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib is not installed: no chart)")
        return 0
    import os

    os.makedirs(os.path.dirname(a.png) or ".", exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog([r[0] for r in rows], [r[1] for r in rows], "o-", label="batched (ours): 1 squeue per poll")
    ax.loglog([r[0] for r in rows], [r[3] for r in rows], "s-", label="per job: 1 squeue per job")
    ax.set_xlabel("jobs polled")
    ax.set_ylabel("seconds per poll")
    ax.set_title(f"Status polling cost, Slurm ({a.drms})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.png, dpi=120)
    print(f"\n![polling cost]({os.path.basename(a.png)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
