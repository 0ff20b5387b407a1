"""Soma-Workflow's engine on Slurm: its own ``slurm`` type against ``soma_schedulers.slurm``, same run.

The same 200-job workflow (4 levels of 50 ``/bin/true`` jobs, each job after one of the level
before) runs through Soma-Workflow's real engine (light mode, one process per run, private HOME)
twice on one Slurm container: with Soma-Workflow 6.x's own ``SlurmScheduler`` and with ours. Both
reach Slurm the same way: ``sbatch``, ``squeue``, ``sacct``, ``scancel`` are shims on PATH that
count each call, then run the command in the container with ``docker exec -i -u alice`` (so the
transport is equal and every DRMS call is counted). Soma-Workflow's ``sbatch <script file>`` gets
its file (written on this host) on standard input instead, as the container cannot read it.

    python benchmarks/bench_somaworkflow.py [--drms slurm-24.11] [--levels 4] [--width 50] [--timeout 900]

Prints a Markdown table: wall time from submission to the workflow's end, DRMS calls by command,
and how the jobs ended as Soma-Workflow reports them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from soma_schedulers.testing import docker_harness

COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "sinfo", "scontrol")

DRIVER = r"""
import json, os, sys, time
from collections import Counter
from soma_workflow.client import Job, Workflow, WorkflowController
from soma_workflow.configuration import Configuration, LIGHT_MODE
scheduler_type, work, levels, width, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
os.makedirs(os.path.join(work, "out"), exist_ok=True)
config = Configuration("bench", LIGHT_MODE, scheduler_type, os.path.join(work, "db.sqlite"), os.path.join(work, "tr"))
wc = WorkflowController("bench", config=config)
jobs, deps, prev = [], [], None
for k in range(levels):
    level = [Job(command=["/bin/true"], name=f"j{k}_{i}", stdout_file=os.path.join(work, "out", f"{k}_{i}.out"),
                 stderr_file=os.path.join(work, "out", f"{k}_{i}.err")) for i in range(width)]
    if prev:
        deps += list(zip(prev, level))
    jobs += level
    prev = level
t0 = time.monotonic()
wf_id = wc.submit_workflow(Workflow(jobs=jobs, dependencies=deps))
try:
    wc.wait_workflow(wf_id, timeout=timeout)
    finished = True
except Exception as exc:
    finished = False
seconds = time.monotonic() - t0
ends = Counter(f"{s[1]}/{(s[3] or (None,))[0]}/{(s[3] or (None, None))[1]}"
               for s in wc.workflow_elements_status(wf_id)[0])
print(json.dumps({"seconds": seconds, "finished": finished, "ends": dict(ends)}), flush=True)
os._exit(0)
"""


def counting_shims(where: Path, container: str, shared: str, log: Path) -> None:
    """One bash shim per client command: count the call, then run it in the container as alice."""
    for cmd in COMMANDS:
        body = f'echo {cmd} >> {shlex.quote(str(log))}\n'
        run = f"docker exec -i -u alice -w {shlex.quote(shared)} {shlex.quote(container)} {cmd}"
        if cmd == "sbatch":  # sbatch FILE: the file is on this host; send it on stdin
            body += ('last="${@: -1}"\n'
                     f'if [ $# -gt 0 ] && [ -f "$last" ]; then exec {run} "${{@:1:$#-1}}" < "$last"; fi\n')
        path = where / cmd
        path.write_text(f"#!/bin/bash\n{body}exec {run} \"$@\"\n")
        path.chmod(0o755)


def one_run(scheduler_type: str, cluster: docker_harness.DrmsCluster, args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="bench-sw-", dir=cluster.shared_dir))
    work.chmod(0o777)
    (work / "out").mkdir(mode=0o777)
    (work / "out").chmod(0o777)
    bindir = Path(tempfile.mkdtemp(prefix="bench-sw-bin-"))
    home = Path(tempfile.mkdtemp(prefix="bench-sw-home-"))
    log = bindir / "calls.log"
    log.touch()
    counting_shims(bindir, cluster.name, cluster.shared_dir, log)
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(home),
           "PATH": f"{bindir}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", DRIVER, scheduler_type, str(work), str(args.levels), str(args.width),
                           str(args.timeout)], env=env, capture_output=True, text=True, timeout=args.timeout + 300,
                          umask=0, cwd=home)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{scheduler_type}: no result after {time.monotonic() - t0:.0f} s\n{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(lines[-1])
    result["calls"] = Counter(log.read_text().split())
    subprocess.run([*cluster.command_prefix, "scancel", "-u", "alice"], capture_output=True, check=False)
    return result


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--drms", default="slurm-24.11", help="cluster of the harness (default %(default)s)")
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--width", type=int, default=50)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    args = p.parse_args()
    cluster = docker_harness.start_cluster(args.drms, log=lambda s: print(s, file=sys.stderr))
    try:
        rows = [(t, one_run(t, cluster, args)) for t in ("slurm", "soma_schedulers.slurm")]
    finally:
        cluster.stop()
    n = args.levels * args.width
    print(f"## Soma-Workflow's engine, {n}-job workflow ({args.levels} levels of {args.width}), "
          f"{cluster.spec.image_tag}, same run\n")
    print("| scheduler type | wall time | DRMS calls | " + " | ".join(f"`{c}`" for c in COMMANDS) + " | ended as |")
    print("|---|---|---|" + "---|" * len(COMMANDS) + "---|")
    for name, r in rows:
        calls: Counter[str] = r["calls"]  # type: ignore[assignment]
        wall = f"{r['seconds']:.1f} s" + ("" if r["finished"] else " (did not finish)")
        ends = ", ".join(f"{v} {k}" for k, v in sorted(r["ends"].items()))  # type: ignore[attr-defined]
        print(f"| `{name}` | {wall} | {sum(calls.values())} | " + " | ".join(str(calls.get(c, 0)) for c in COMMANDS)
              + f" | {ends} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
