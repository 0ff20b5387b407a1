"""Bulk submission on OpenPBS and Torque: 1,000 *different* jobs through job arrays, against a
one-``qsub``-per-job loop (the PBS half of issue 16's bench_arrays.py, which can dispatch here).

Each job has its own argv, environment and stdout file. Measured in one run, per DRMS:

* ours with arrays (``ARRAYS = auto``; commands on a kept shell, ``BRIDGE_SHELLS``), held jobs;
* the raw command line: a loop of one ``qsub -h -v SOMA_N=i -o ... -e ...`` per job (the command
  on stdin), run *inside* the DRMS container (no transport at all: the strictest baseline);
* ours with ``ARRAYS = never`` (one ``qsub`` per job, same transport as ours);
* one status poll of the held tasks; then the same jobs (not held) from submission until all ended.

It ends with one line per DRMS: ``arrays <drms>: submit 1000 jobs ours <t> s, raw loop <t> s,
ratio <r>x``. Needs the images (upstream sources in containers/<name>/src/).

    python benchmarks/bench_arrays_pbs.py [--drms openpbs --drms torque] [--jobs 1000]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time

# the jobs and the wait are bench_arrays.py's (this script's directory is first on sys.path)
from bench_arrays import _end_to_end, _jobs, _timed_held_poll, _timed_submission, _until, report

from soma_schedulers import BridgeConfig, SchedulerConfig
from soma_schedulers.schedulers.pbspro_scheduler import PBSProScheduler
from soma_schedulers.testing import docker_harness


def _raw_loop(prefix: list[str], n: int, out: str, hold: bool) -> float:
    """A shell loop of one qsub per job, inside the container; its own seconds (date +%s.%N)."""
    flag = "-h " if hold else ""
    loop = (f't0=$(date +%s.%N); i=0; while [ $i -lt {n} ]; do '
            f'echo "/bin/echo \\"job $i\\" it\\\\\'s" | qsub {flag}-v SOMA_N=$i -o {shlex.quote(out)}/raw$i.out '
            f'-e /dev/null >/dev/null || exit 1; i=$((i+1)); done; echo "$t0 $(date +%s.%N)"')
    res = subprocess.run([*prefix, "sh", "-c", loop], capture_output=True, text=True, check=True)
    t0, t1 = (float(x) for x in res.stdout.split())
    return t1 - t0


def _none_left(prefix: list[str]) -> bool:
    """No job of the user is queued, held or running (``qstat`` lists ended ones as F/C or not at all)."""
    out = subprocess.run([*prefix, "qstat", "-t"], capture_output=True, text=True).stdout
    return not any(line.split()[-2] in "QRHEBTW" for line in out.splitlines()[2:] if len(line.split()) > 2)


def bench(drms: str, n: int) -> str:
    cluster = docker_harness.start_cluster(drms, log=lambda s: print(s, file=sys.stderr))
    rows: list[str] = []
    try:
        prefix, shared = list(cluster.command_prefix), cluster.shared_dir

        def ours(arrays: str = "auto") -> PBSProScheduler:
            sched = PBSProScheduler(SchedulerConfig(
                bridge=BridgeConfig(mode="prefix", prefix=tuple(prefix), shells=True), status_cache_seconds=0.5,
                arrays=arrays))
            sched.runner.run(["true"])  # a long-lived scheduler's transport is up (as in bench_arrays.py)
            return sched

        def delete_all() -> None:
            ids = subprocess.run([*prefix, "qselect"], capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run([*prefix, "qdel", *ids], capture_output=True)
            time.sleep(2)

        s = ours()
        calls = s.runner.calls  # the server's caps (qmgr, once) are timed, as MaxArraySize is on Slurm
        t_ours, ids = _timed_submission(s, _jobs(n, shared, hold=True))
        calls = s.runner.calls - calls
        time.sleep(3)  # Torque makes an array's tasks in the background
        t_poll = _timed_held_poll(s, ids)
        delete_all()
        t_raw = _raw_loop(prefix, n, shared, hold=True)
        delete_all()
        t_never, _ = _timed_submission(ours("never"), _jobs(n, shared, hold=True))
        delete_all()

        e2e_ours = _end_to_end(ours(), n, shared)
        t0 = time.perf_counter()
        _raw_loop(prefix, n, shared, hold=False)
        _until(lambda: _none_left(prefix))
        e2e_raw = time.perf_counter() - t0

        rows += report(drms, n, "qsub", t_ours, calls, t_raw, t_never, t_poll, e2e_ours, e2e_raw)
    finally:
        cluster.stop()
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--drms", action="append", default=[])
    p.add_argument("--jobs", type=int, default=1000)
    a = p.parse_args()
    print("\n".join(bench(d, a.jobs) for d in a.drms or ["openpbs", "torque"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
