"""MPI backend throughput and end-detection latency, against the local backend, in one run.

Starts the 3-container ``mpi`` cluster (Docker), then inside it:

* MPIScheduler: ``mpirun -np 3`` (rank 0 on mpi1 holds the scheduler, workers on mpi2 and mpi3);
* LocalScheduler on mpi1 alone;

each runs N ``/bin/true`` jobs (submit all, poll the unfinished ones every 5 ms until all are
``done``), then the delay between a job's end (the job writes ``time.time()`` as its last act)
and the moment its status reads ``done``, over S sequential jobs. The containers share the host's
cores, so the "3 nodes" bring no extra CPU here: the table shows the overhead of the MPI path.

    python benchmarks/bench_mpi.py [--jobs 500] [--samples 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

MARK = "BENCH-JSON "


def throughput(sched: object, n: int) -> float:
    from soma_schedulers import Job

    t0 = time.perf_counter()
    pending = set(sched.job_submission([Job(command=["/bin/true"]) for _ in range(n)]))  # type: ignore[attr-defined]
    while pending:
        time.sleep(0.005)
        pending -= {i for i, s in sched.get_jobs_status(pending).items() if s == "done"}  # type: ignore[attr-defined]
    return time.perf_counter() - t0


def delays(sched: object, samples: int, workdir: str) -> list[float]:
    from soma_schedulers import Job

    out = os.path.join(workdir, f"delay-{os.getpid()}")
    code = "import time,sys; sys.stdout.write(repr(time.time()))"
    found = []
    for _ in range(samples):
        sched.jobs_finished_event.clear()  # type: ignore[attr-defined]
        [jid] = sched.job_submission([Job(command=[sys.executable, "-S", "-c", code], stdout_file=out)])  # type: ignore[attr-defined]
        while sched.get_job_status(jid) != "done":  # type: ignore[attr-defined]
            sched.jobs_finished_event.wait(0.001)  # type: ignore[attr-defined]
        seen = time.time()
        with open(out) as fh:
            found.append(seen - float(fh.read()))
    return found


def inner(kind: str, n: int, samples: int, workdir: str) -> None:
    """Runs inside the cluster (rank 0 under mpirun for ``mpi``); prints one JSON line."""
    from soma_schedulers.scheduler import build_scheduler

    with build_scheduler("mpi" if kind == "mpi" else "local_basic") as sched:
        if kind == "mpi":  # wait for the workers' hello, so the start-up is not timed
            while len(sched.workers) < 2:  # type: ignore[attr-defined]
                time.sleep(0.01)
            slots = sum(s for _r, _h, s in sched.workers)  # type: ignore[attr-defined]
        else:
            slots = sched.limit  # type: ignore[attr-defined]
        throughput(sched, 20)  # warm-up
        seconds = throughput(sched, n)
        d = delays(sched, samples, workdir)
    print(MARK + json.dumps({"kind": kind, "seconds": seconds, "slots": slots,
                             "median_ms": 1000 * statistics.median(d), "max_ms": 1000 * max(d)}), flush=True)


def outer(n: int, samples: int) -> dict[str, dict[str, float]]:
    from soma_schedulers.testing import docker_harness as dh

    cluster = dh.start_cluster("mpi", log=lambda line: print(f"# {line}", file=sys.stderr), mount_source=True)
    try:
        work = cluster.make_workdir("bench")
        script = f"{dh.SOURCE_MOUNT}/benchmarks/bench_mpi.py"
        args = ["--jobs", str(n), "--samples", str(samples), "--dir", work]
        env = ["env", f"PYTHONPATH={dh.SOURCE_MOUNT}", "PYTHONDONTWRITEBYTECODE=1"]
        runs = {
            "mpi": [*env, "mpirun", "-np", "3", "-H", ",".join(cluster.hostnames), "-x", f"PYTHONPATH={dh.SOURCE_MOUNT}",
                    "python3", "-m", "soma_schedulers.schedulers.mpi_scheduler", script, "--inner", "mpi", *args],
            "local": [*env, "python3", script, "--inner", "local", *args],
        }
        results = {}
        for kind, argv in runs.items():
            rc, out = cluster.exec(argv, user=cluster.spec.user, workdir=work)
            lines = [ln for ln in out.splitlines() if ln.startswith(MARK)]
            if rc != 0 or not lines:
                raise SystemExit(f"{kind} run failed (exit {rc}):\n{out}")
            results[kind] = json.loads(lines[-1][len(MARK):])
        return results
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--inner", choices=["mpi", "local"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.inner:
        inner(ns.inner, ns.jobs, ns.samples, ns.dir or os.getcwd())
        return 0
    res = outer(ns.jobs, ns.samples)
    mpi, local = res["mpi"], res["local"]
    print(f"\n{ns.jobs} x /bin/true, 3 containers sharing {os.cpu_count()} cores\n")
    print("| implementation | jobs at once | seconds | jobs/s | end -> `done` median (max) |")
    print("|---|---|---|---|---|")
    for label, r in (("`MPIScheduler`, rank 0 + 2 workers", mpi), ("`LocalScheduler()`, one container", local)):
        print(f"| {label} | {r['slots']} | {r['seconds']:.2f} | {ns.jobs / r['seconds']:.0f} | "
              f"{r['median_ms']:.1f} ms ({r['max_ms']:.1f} ms) |")
    print(f"\nMPI / local time: {mpi['seconds'] / local['seconds']:.2f}x")
    if ns.json:
        with open(ns.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
