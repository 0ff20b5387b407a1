"""Local backend throughput and end-detection latency, as ratios measured in one run.

1,000 ``/bin/true`` jobs through our LocalScheduler, through Soma-Workflow 6.x's
LocalScheduler (PyPI ``soma-workflow``, default settings), and through a raw
``subprocess`` loop with our concurrency; plus the median delay between a
job's end and its status turning ``done``. Each measurement runs in its own
subprocess (Soma-Workflow's threads do not stop cleanly).

    python benchmarks/bench_local.py [--jobs 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TRUE = "/bin/true"


def ours(n: int) -> dict[str, float]:
    from soma_schedulers import Job
    from soma_schedulers.schedulers.local_scheduler import LocalScheduler

    sched = LocalScheduler()
    t0 = time.perf_counter()
    pending = set(sched.job_submission([Job(command=[TRUE]) for _ in range(n)]))
    while pending:  # poll the unfinished jobs every 5 ms, as the Soma-Workflow loop below does
        time.sleep(0.005)
        pending -= {i for i, s in sched.get_jobs_status(pending).items() if s == "done"}  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    sched.clean()
    return {"seconds": elapsed, "concurrency": sched.limit}


def ours_delay(samples: int) -> dict[str, float]:
    """Job writes its end time (the last thing it does); we take the time we see ``done``."""
    from soma_schedulers import Job
    from soma_schedulers.schedulers.local_scheduler import LocalScheduler

    delays = []
    with tempfile.TemporaryDirectory() as tmp, LocalScheduler() as sched:
        out = os.path.join(tmp, "t")
        code = "import time,sys; sys.stdout.write(repr(time.time()))"
        for _ in range(samples):
            sched.jobs_finished_event.clear()
            [jid] = sched.job_submission([Job(command=[sys.executable, "-S", "-c", code], stdout_file=out)])
            while sched.get_job_status(jid) != "done":  # type: ignore[arg-type]
                sched.jobs_finished_event.wait(1.0)
            seen = time.time()
            with open(out) as fh:
                ended = float(fh.read())
            delays.append(seen - ended)
    return {"median_ms": 1000 * statistics.median(delays), "max_ms": 1000 * max(delays)}


def raw(n: int, concurrency: int) -> dict[str, float]:
    counter = iter(range(n))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            subprocess.run([TRUE], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": time.perf_counter() - t0, "concurrency": concurrency}


class _StubJob:
    """The minimal EngineJob stand-in Soma-Workflow's LocalScheduler needs."""

    def __init__(self, i: int) -> None:
        self.job_id = i
        self.drmaa_id = str(i)
        self.priority = 0
        self.signal_end = True
        self.is_engine_execution = False
        self.parallel_job_info = None
        self.env = None
        self.name = f"j{i}"

    def plain_command(self) -> list[str]:
        return [TRUE]

    def plain_stdout(self) -> None:
        return None

    def plain_stderr(self) -> None:
        return None

    def plain_stdin(self) -> None:
        return None

    def plain_working_directory(self) -> None:
        return None


def soma_workflow(n: int) -> dict[str, float]:
    from soma_workflow.schedulers.local_scheduler import LocalScheduler  # type: ignore[import-not-found]

    sched = LocalScheduler()
    jobs = [_StubJob(i + 1) for i in range(n)]
    t0 = time.perf_counter()
    ids = sched.job_submission(jobs)
    pending = set(ids)
    while pending:
        for jid in list(pending):
            if sched.get_job_status(jid) == "done":
                pending.discard(jid)
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "version": __import__("soma_workflow").__version__ if hasattr(__import__("soma_workflow"), "__version__") else "6.x"}  # type: ignore[dict-item]


def _child(what: str, n: int, conc: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", what, "--jobs", str(n), "--concurrency", str(conc)],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}  # type: ignore[dict-item]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--delay-samples", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=0)
    p.add_argument("--child", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.child:
        if a.child == "ours":
            r = ours(a.jobs)
        elif a.child == "delay":
            r = ours_delay(a.jobs)
        elif a.child == "raw":
            r = raw(a.jobs, a.concurrency)
        else:
            r = soma_workflow(a.jobs)
        print(json.dumps(r))
        sys.stdout.flush()
        os._exit(0)
    res_ours = _child("ours", a.jobs, 0)
    conc = int(res_ours["concurrency"])
    res_raw = _child("raw", a.jobs, conc)
    res_sw = _child("soma_workflow", a.jobs, 0)
    res_delay = _child("delay", a.delay_samples, 0)
    rows = [
        ("ours: LocalScheduler()", res_ours.get("seconds")),
        (f"raw subprocess loop ({conc} threads)", res_raw.get("seconds")),
        ("Soma-Workflow 6.x LocalScheduler()", res_sw.get("seconds")),
    ]
    print(f"## Local backend: {a.jobs} x /bin/true, submission to all done (concurrency {conc})\n")
    print("| implementation | seconds | jobs/s |")
    print("|---|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} | {a.jobs / sec:.0f} |" if sec else f"| {name} | error: {res_sw.get('error')} | |")
    sw, us, rw = res_sw.get("seconds"), res_ours["seconds"], res_raw["seconds"]
    print()
    print(f"- ours / raw subprocess loop: **{us / rw:.2f}x** the time (target <= 1.3x)")
    if sw:
        print(f"- Soma-Workflow / ours: **{sw / us:.1f}x** faster (target >= 10x)")
    print(f"- end-detection delay over {a.delay_samples} jobs: median **{res_delay['median_ms']:.2f} ms**, "
          f"max {res_delay['max_ms']:.2f} ms (target median < 5 ms)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"ours": res_ours, "raw": res_raw, "soma_workflow": res_sw, "delay": res_delay}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
