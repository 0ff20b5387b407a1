"""Bulk submission: 1,000 *different* jobs through job arrays, against a one-call-per-job loop.

Each job has its own argv, environment and stdout file. Measured in one run, on each DRMS asked
for (default: Slurm 22.05 and 24.11):

* ours with arrays (``ARRAYS = auto``, the default; commands on a kept shell, ``BRIDGE_SHELLS``);
* the raw command line: a loop of one ``sbatch --hold --export --output --wrap`` per job, run
  *inside* the DRMS container (no transport at all: the strictest baseline);
* ours with ``ARRAYS = never`` (one ``sbatch`` per job, same transport as ours);
* Soma-Workflow 6.x's SlurmScheduler (one script file and one ``sbatch`` per job, through
  ``docker exec`` wrappers on PATH; measured on ``--sw-sample`` jobs and scaled), with ours over
  the same ``docker exec`` for the ratio;
* then the same 1,000 jobs (not held) from submission until all ended, ours against the raw loop
  (which waits until ``squeue`` lists none of them).

It ends with one line per DRMS: ``arrays <drms>: submit 1000 jobs ours <t> s, raw loop <t> s,
ratio <r>x``.

    python benchmarks/bench_arrays.py [--drms slurm --drms slurm-24.11] [--jobs 1000] [--sw-sample 100]
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
from collections.abc import Callable

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler
from soma_schedulers.testing import docker_harness

END = ("done", "failed")


def _jobs(n: int, out: str, hold: bool) -> list[Job]:
    return [Job(command=["/bin/echo", f"job {i}", "it's"], env={"SOMA_N": str(i)}, stdout_file=f"{out}/{i}.out",
                hold=hold) for i in range(n)]


def _raw_loop(prefix: list[str], n: int, out: str, hold: bool) -> float:
    """A shell loop of one sbatch per job, inside the container; its own seconds (date +%s.%N)."""
    flag = "--hold " if hold else ""
    loop = (f't0=$(date +%s.%N); i=0; while [ $i -lt {n} ]; do sbatch --parsable {flag}'
            f'--export=ALL,SOMA_N=$i --output={shlex.quote(out)}/raw$i.out '
            f'--wrap "/bin/echo \\"job $i\\" it\\\\\'s" >/dev/null || exit 1; i=$((i+1)); done; '
            'echo "$t0 $(date +%s.%N)"')
    res = subprocess.run([*prefix, "sh", "-c", loop], capture_output=True, text=True, check=True)
    t0, t1 = (float(x) for x in res.stdout.split())
    return t1 - t0


def _until(check: Callable[[], bool], limit: float = 900.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not end in time")
        time.sleep(0.5)


def _wrappers(prefix: list[str], where: str) -> None:
    for cmd in ("sbatch", "squeue", "sacct", "scancel", "scontrol"):
        path = os.path.join(where, cmd)
        with open(path, "w") as fh:
            # sbatch: Soma-Workflow's script file is made 0600 by this (root) process; the DRMS user
            # in the container must read it
            readable = 'for a; do last=$a; done; [ -f "$last" ] && chmod a+r "$last"\n' if cmd == "sbatch" else ""
            fh.write(f"#!/bin/sh\n{readable}exec {shlex.join(prefix)} {cmd} \"$@\"\n")
        os.chmod(path, stat.S_IRWXU)


class _SWJob:
    """The EngineJob fields Soma-Workflow's SlurmScheduler reads."""

    def __init__(self, job: Job) -> None:
        self.job, self.name, self.env = job, f"j{job.env['SOMA_N']}", dict(job.env or {})
        self.is_engine_execution, self.parallel_job_info, self.native_specification = False, None, None
        self.priority, self.queue, self.join_stderrout, self.stdin = 0, None, False, None

    def plain_command(self) -> list[str]:
        return list(self.job.command)

    def plain_stdout(self) -> str | None:
        return self.job.stdout_file

    def plain_stderr(self) -> str:
        return f"{self.job.stdout_file}.err"  # Soma-Workflow's Slurm backend needs one

    def plain_stdin(self) -> None:
        return None

    def plain_working_directory(self) -> None:
        return None


def _soma_workflow(prefix: list[str], jobs: list[Job], shared: str) -> tuple[float, str]:
    """Soma-Workflow 6.x submitting ``jobs`` one by one; seconds, and a note."""
    try:
        from soma_workflow.schedulers.slurm_scheduler import SlurmScheduler as SWSlurm  # type: ignore[import-not-found]
    except ImportError as exc:
        return float("nan"), f"not installed ({exc})"
    with tempfile.TemporaryDirectory() as bindir:
        _wrappers(prefix, bindir)
        old = os.environ["PATH"]
        os.environ["PATH"] = bindir + os.pathsep + old
        tempfile.tempdir = shared  # its script files: where the DRMS container sees them
        try:
            sw = SWSlurm(None, tmp_file_path=shared)
            t0 = time.perf_counter()
            got = sw.job_submission([_SWJob(j) for j in jobs])
            seconds = time.perf_counter() - t0
        finally:
            os.environ["PATH"] = old
            tempfile.tempdir = None
    failed = [g for g in got if g is None or isinstance(g, tuple)]
    return seconds, f"{len(failed)} failed: {failed[0]!r}" if failed else "all submitted"


def bench(drms: str, n: int, sw_sample: int) -> str:
    cluster = docker_harness.start_cluster(drms, log=lambda s: print(s, file=sys.stderr))
    rows: list[str] = []
    try:
        prefix, shared = list(cluster.command_prefix), cluster.shared_dir

        def ours(arrays: str = "auto", shells: bool = True) -> SlurmScheduler:
            return SlurmScheduler(SchedulerConfig(
                bridge=BridgeConfig(mode="prefix", prefix=tuple(prefix), shells=shells), status_cache_seconds=0.5,
                arrays=arrays))

        def cancel_all() -> None:
            subprocess.run([*prefix, "scancel", "--me"], capture_output=True)
            time.sleep(1)

        # -- submission of n held jobs ------------------------------------------------------------
        s = ours()
        t0 = time.perf_counter()
        ids = s.job_submission(_jobs(n, shared, hold=True))
        t_ours = time.perf_counter() - t0
        assert None not in ids, s.last_submission_errors
        calls = s.runner.calls
        t0 = time.perf_counter()
        held = s.get_jobs_status(ids)  # type: ignore[arg-type]
        t_poll = time.perf_counter() - t0
        assert set(held.values()) == {"user_on_hold"}, set(held.values())
        cancel_all()
        t_raw = _raw_loop(prefix, n, shared, hold=True)
        cancel_all()
        never = ours("never")
        t0 = time.perf_counter()
        never_ids = never.job_submission(_jobs(n, shared, hold=True))
        t_never = time.perf_counter() - t0
        assert None not in never_ids
        cancel_all()
        sample = _jobs(sw_sample, shared, hold=True)
        t_sw, sw_note = _soma_workflow(prefix, sample, shared)
        t_sw_scaled = t_sw * n / sw_sample
        cancel_all()
        exec_ours = ours(shells=False)
        t0 = time.perf_counter()
        assert None not in exec_ours.job_submission(_jobs(n, shared, hold=True))
        t_exec = time.perf_counter() - t0
        cancel_all()

        # -- n jobs from submission until all ended -------------------------------------------------
        s = ours()
        t0 = time.perf_counter()
        ids = s.job_submission(_jobs(n, shared, hold=False))
        _until(lambda: all(v in END for v in s.get_jobs_status(ids).values()))  # type: ignore[arg-type]
        e2e_ours = time.perf_counter() - t0
        infos = s.get_jobs_exit_info(ids)  # type: ignore[arg-type]
        bad = [i for i, e in infos.items() if e[:2] != ("finished_regularly", 0)]
        assert not bad, [infos[i] for i in bad[:3]]
        sample_out = open(f"{shared}/{n - 1}.out").read()
        assert sample_out == f"job {n - 1} it's\n", sample_out
        t0 = time.perf_counter()
        _raw_loop(prefix, n, shared, hold=False)
        _until(lambda: not subprocess.run([*prefix, "squeue", "-h", "--me"], capture_output=True,
                                          text=True).stdout.strip())
        e2e_raw = time.perf_counter() - t0

        rows.append(f"## {drms}: {n} different jobs (own argv, env, stdout)\n")
        rows.append("| measurement | time | ratio to ours with arrays |")
        rows.append("|---|---|---|")
        rows.append(f"| ours, arrays (`ARRAYS=auto`), kept shell | {t_ours:.3f} s, {calls} DRMS call(s) | 1x |")
        rows.append(f"| raw `sbatch` loop inside the container | {t_raw:.2f} s | {t_raw / t_ours:.0f}x slower |")
        rows.append(f"| ours, `ARRAYS=never`, kept shell | {t_never:.2f} s | {t_never / t_ours:.0f}x slower |")
        rows.append(f"| ours, arrays, over `docker exec` | {t_exec:.3f} s | (transport of the next row) |")
        rows.append(f"| Soma-Workflow 6.x over `docker exec` ({sw_sample} jobs, scaled; {sw_note}) "
                    f"| {t_sw_scaled:.1f} s | {t_sw_scaled / t_exec:.0f}x slower than ours over `docker exec` |")
        rows.append(f"| one status poll of the {n} held tasks | {t_poll * 1000:.0f} ms | |")
        rows.append(f"| submission to all ended, ours (arrays) | {e2e_ours:.1f} s | 1x |")
        rows.append(f"| submission to all ended, raw loop | {e2e_raw:.1f} s | {e2e_raw / e2e_ours:.1f}x slower |")
        rows.append(f"\narrays {drms}: submit {n} jobs ours {t_ours:.3f} s, raw loop {t_raw:.2f} s, "
                    f"ratio {t_raw / t_ours:.0f}x\n")
    finally:
        cluster.stop()
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--drms", action="append", default=[])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--sw-sample", type=int, default=100)
    a = p.parse_args()
    reports = [bench(d, a.jobs, a.sw_sample) for d in a.drms or ["slurm", "slurm-24.11"]]
    print("\n".join(reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
