"""One benchmark report: every benchmark, for every DRMS whose image is available.

Runs each ``benchmarks/bench_*.py`` as its own process, collects their Markdown
tables into ``benchmarks/results/report.md`` (ours vs Soma-Workflow 6.x vs the
raw command line, as ratios measured in the same run), with the polling-cost
chart ``benchmarks/results/polling.png``. A benchmark whose DRMS image cannot be
built here is listed with the reason instead of a table.

    python benchmarks/report.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def benches(quick: bool) -> list[tuple[str, list[str]]]:
    q = quick
    return [
        ("local backend", ["bench_local.py"] + (["--jobs", "300", "--delay-samples", "30"] if q else [])),
        ("Slurm 22.05", ["bench_slurm.py", "--drms", "slurm"] + (["--held", "100", "--submit", "50"] if q else [])),
        ("Slurm 24.11", ["bench_slurm.py", "--drms", "slurm-24.11"] + (["--held", "100", "--submit", "50"] if q else [])),
        ("polling cost", ["bench_polling.py", "--png", os.path.join(RESULTS, "polling.png")]
         + (["--sizes", "1,10,100"] if q else [])),
        ("DRMAA on SGE", ["bench_drmaa.py", "--cluster", "sge"] + (["--held", "100", "--rounds", "2"] if q else [])),
        ("DRMAA on Slurm", ["bench_drmaa.py", "--cluster", "slurm-drmaa"] + (["--held", "100", "--rounds", "2"] if q else [])),
        ("MPI", ["bench_mpi.py"] + (["--jobs", "200", "--samples", "20"] if q else [])),
        ("out-of-container bridge", ["bench_bridge.py"] + (["--calls", "10", "--rounds", "2"] if q else [])),
        ("PBS (OpenPBS, Torque)", ["bench_pbs.py"] + (["--held", "100"] if q else [])),
        ("bulk submission: job arrays", ["bench_arrays.py"] + (["--jobs", "200", "--sw-sample", "20"] if q else [])),
        ("PBS job arrays: 1,000 different jobs", ["bench_arrays_pbs.py"] + (["--jobs", "100"] if q else [])),
        ("conformance suite wall time, before/after", ["bench_suite.py"] + (["--quick"] if q else [])),
    ]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    a = p.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    parts = [f"# soma_schedulers benchmark report\n\n{datetime.datetime.now():%Y-%m-%d %H:%M}, "
             f"{os.cpu_count()} cores. Each section ran as its own process; ratios compare figures "
             "measured in the same run.\n"]
    failed = 0
    for title, argv in benches(a.quick):
        script = os.path.join(HERE, argv[0])
        if not os.path.exists(script):
            parts.append(f"\n## {title}\n\nnot run: {argv[0]} is missing\n")
            continue
        print(f"report: {title} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, script, *argv[1:]], capture_output=True, text=True)
        took = time.monotonic() - t0
        if proc.returncode == 0:
            body = proc.stdout.strip()
            heading = "" if body.startswith("## ") else f"## {title}\n\n"
            parts.append(f"\n{heading}{body}\n\n_({argv[0]}, {took:.0f} s)_\n")
        else:
            reason = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            unavailable = "ImageUnavailable" in proc.stderr or "unavailable" in reason.lower()
            failed += 0 if unavailable else 1
            parts.append(f"\n## {title}\n\n{'skipped' if unavailable else 'FAILED'}: {reason}\n")
    path = os.path.join(RESULTS, "report.md")
    with open(path, "w") as fh:
        fh.write("".join(parts))
    print("".join(parts))
    print(f"report written to {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
