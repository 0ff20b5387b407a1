"""DRMAA: the status of 300 held jobs through DrmaaScheduler vs the DRMS's command line.

Run from the host: it starts a DRMAA test cluster (``sge``, ``slurm-drmaa``, ``slurm-drmaa-24.11``)
with this repository mounted, runs itself inside the controller (where libdrmaa is), and stops
the cluster::

    python benchmarks/bench_drmaa.py [--cluster sge|slurm-drmaa] [--held 300] [--rounds 5]

In one run, with the same held jobs: one status poll of every job through our
DrmaaScheduler (DRMAA has no batched status call: one ``jobStatus`` per job),
one ``qstat``/``squeue`` for all of them (parsed), and one ``qstat -j ID``/``squeue -j ID``
per job (what a per-job poller pays). Medians over ``--rounds``. Submissions are timed too:
DrmaaScheduler (script file + ``runJob``) against a ``qsub -h``/``sbatch -H`` loop.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import NamedTuple

USER = os.environ.get("USER", "alice")


class Raw(NamedTuple):
    """The DRMS's command line: submit one held /bin/true (prints the id), list the user's jobs
    (header lines to skip, the field that shows the held state), ask about one job, delete."""

    submit: list[str]
    all: list[str]
    skip: int
    state_field: int
    held: str
    each: list[str]
    delete: list[str]


#: By DRMAA implementation family.
RAW = {
    "sge": Raw(["qsub", "-h", "-terse", "-o", "/dev/null", "-e", "/dev/null", "-b", "y", "/bin/true"],
               ["qstat", "-u", USER], 2, 4, "hqw", ["qstat", "-j"], ["qdel"]),
    "slurm": Raw(["sbatch", "-H", "--parsable", "-o", "/dev/null", "--wrap", "/bin/true"],
                 ["squeue", "-h", "-u", USER, "-o", "%i %t %r"], 0, 2, "JobHeldUser",
                 ["squeue", "-h", "-o", "%i %t %r", "-j"], ["scancel"]),
}


def _median_time(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def inside(held: int, rounds: int) -> int:
    from soma_schedulers import Job, SchedulerConfig
    from soma_schedulers.schedulers.drmaa_scheduler import DrmaaScheduler, implementation_family

    tmp = tempfile.mkdtemp(prefix="bench-drmaa-", dir=os.environ.get("BENCH_DIR") or None)
    ours = DrmaaScheduler(SchedulerConfig(status_cache_seconds=0, options={"tmp_dir": tmp}))
    try:
        family = implementation_family(ours.implementation)
        raw = RAW[family]
        ids: list[str] = []
        raw_ids: list[str] = []
        our_submit = raw_submit = 0.0
        # Submissions, interleaved (the qmaster slows down as jobs pile up): ours, and a qsub/sbatch loop.
        every = max(1, held // 100)
        for i in range(held):
            t0 = time.perf_counter()
            [jid] = ours.job_submission([Job(command=["/bin/true"], hold=True)])
            our_submit += time.perf_counter() - t0
            assert jid is not None, ours.last_submission_errors
            ids.append(jid)
            if i % every == 0:
                t0 = time.perf_counter()
                out = subprocess.run(raw.submit, check=True, capture_output=True, text=True).stdout
                raw_submit += time.perf_counter() - t0
                raw_ids.append(out.strip())
        n_raw = len(raw_ids)
        raw_submit *= held / n_raw

        def ours_poll() -> None:
            statuses = ours.get_jobs_status(ids)
            assert set(statuses.values()) == {"user_on_hold"}, set(statuses.values())

        wanted = set(ids)

        def qstat_all() -> None:
            out = subprocess.run(raw.all, check=True, capture_output=True, text=True).stdout
            k = raw.state_field
            states = {f[0]: f[k] for f in (line.split() for line in out.splitlines()[raw.skip:]) if len(f) > k}
            assert all(states.get(i) == raw.held for i in wanted), f"{raw.all[0]} does not show every job held"

        def qstat_each() -> None:
            for jid in ids:
                subprocess.run([*raw.each, jid], check=True, capture_output=True)

        t_ours = _median_time(ours_poll, rounds)
        t_qstat = _median_time(qstat_all, rounds)
        t_each = _median_time(qstat_each, max(1, rounds // 2))
        drms = subprocess.run(["sinfo", "-V"] if family == "slurm" else ["true"], capture_output=True,
                              text=True).stdout.strip() or "SGE 8.1.9"
        all_cmd = " ".join(raw.all[:2]) + (f" -u {USER}" if family == "slurm" else f" {USER}")
        each_cmd = " ".join(raw.each[:1]) + " -j ID"
        submit_cmd = " ".join(raw.submit[:2])
        print(f"\n{held} held jobs, {drms} ({ours.implementation}), medians of {rounds} rounds\n")
        print("| what | seconds | per job |")
        print("|---|---|---|")
        print(f"| ours: `DrmaaScheduler.get_jobs_status` ({held} `jobStatus`) | {t_ours:.3f} | {t_ours / held * 1e3:.2f} ms |")
        print(f"| one `{all_cmd}`, parsed | {t_qstat:.3f} | {t_qstat / held * 1e3:.3f} ms |")
        print(f"| `{each_cmd}` per job | {t_each:.3f} | {t_each / held * 1e3:.2f} ms |")
        print(f"| ours: {held} submissions (script file + `runJob`) | {our_submit:.2f} | {our_submit / held * 1e3:.1f} ms |")
        print(f"| {held} `{submit_cmd}` (scaled from {n_raw}) | {raw_submit:.2f} | {raw_submit / held * 1e3:.1f} ms |")
        print(f"\nours / one {raw.all[0]}: {t_ours / t_qstat:.1f}x; "
              f"{raw.each[0]} per job / ours: {t_each / t_ours:.1f}x")
        for jid in ids:
            ours.kill_job(jid)
        subprocess.run([*raw.delete, *raw_ids], check=False, capture_output=True)
    finally:
        ours.clean()
        os.rmdir(tmp)
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cluster", default="sge")
    p.add_argument("--held", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--inside", action="store_true", help="(run in the cluster's controller)")
    a = p.parse_args()
    if a.inside:
        return inside(a.held, a.rounds)
    from soma_schedulers.testing import docker_harness as dh
    from soma_schedulers.testing.incontainer import run_in_cluster

    def command(cluster: dh.DrmsCluster) -> list[str]:
        return ["env", f"BENCH_DIR={cluster.shared_dir}", "python3", f"{dh.SOURCE_MOUNT}/benchmarks/bench_drmaa.py",
                "--inside", "--held", str(a.held), "--rounds", str(a.rounds)]

    return run_in_cluster(a.cluster, command, lambda line: print(line, file=sys.stderr))


if __name__ == "__main__":
    sys.exit(main())
