"""What the Soma-Workflow import hook costs a Python start-up that never imports Soma-Workflow.

Builds this package's wheel, installs it into a fresh venv (pip compiles the .pyc files, as for any
user), then times ``python -c pass`` with the installed ``soma_schedulers_somawf.pth`` and with it
moved aside, interleaved, and reads ``python -X importtime`` for the hook module. Also the cost the
finder adds to every later import (one string comparison), timed in-process.

    python benchmarks/bench_somawf_hook.py [--runs 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PTH = "soma_schedulers_somawf.pth"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hook-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns("build", "*.egg-info", ".git", ".venv", ".nox",
                                                                  "__pycache__", "*_cache", "src", "dist"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", f"{tmp}/dist", str(src)],
                       check=True, cwd=tmp)
        subprocess.run([sys.executable, "-m", "venv", f"{tmp}/venv"], check=True)
        python = f"{tmp}/venv/bin/python"
        wheel = next(Path(tmp, "dist").glob("soma_schedulers-*.whl"))
        subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True)
        site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        importtime = []
        for _ in range(20):
            out = subprocess.run([python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True,
                                 env=env).stderr
            line = next(x for x in out.splitlines() if x.endswith("_soma_schedulers_somawf_hook"))
            importtime.append(int(line.split("|")[1]))
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(2 * args.runs):
            with_pth = i % 2 == 0
            (site / PTH).rename(site / (PTH if with_pth else PTH + ".off")) if (site / PTH).exists() else \
                (site / (PTH + ".off")).rename(site / (PTH if with_pth else PTH + ".off"))
            t0 = time.perf_counter()
            subprocess.run([python, "-c", "pass"], env=env, check=True)
            times[with_pth].append(time.perf_counter() - t0)
        finder = subprocess.run([python, "-c", (
            "import sys, time, importlib\n"
            "names = [m for m in sys.stdlib_module_names if not m.startswith('_') and m not in sys.modules][:150]\n"
            "f = sys.meta_path[0]\n"
            "t0 = time.perf_counter()\n"
            "for _ in range(10000):\n"
            "    for n in ('json', 'os.path', 'email.parser'): f.find_spec(n, None)\n"
            "print((time.perf_counter() - t0) / 30000 * 1e9)")], capture_output=True, text=True, env=env, check=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print("## The Soma-Workflow import hook, without Soma-Workflow (wheel install, fresh venv)\n")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| `python -X importtime`: `_soma_schedulers_somawf_hook` (median of 20) | "
          f"{statistics.median(importtime)} µs, nothing nested |")
    print(f"| `python -c pass`, median of {args.runs} interleaved runs each | with the .pth {med[True]:.2f} ms, "
          f"without {med[False]:.2f} ms (difference {med[True] - med[False]:+.2f} ms) |")
    print(f"| the finder's cost per later import of another module | {float(finder.stdout):.0f} ns |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
