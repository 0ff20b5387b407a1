"""Bulk submission: 1,000 *different* jobs through job arrays, against a one-call-per-job loop.

Each job has its own argv, environment and stdout file. Measured in one run, on each DRMS asked
for (default: Slurm 22.05 and 24.11):

(Ours are measured as a long-lived scheduler is used: its transport is up, through one ``true``
run before the clock starts; what it asks the DRMS, ``MaxArraySize`` included, is timed.)

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

``--drms sge``: SGE through DRMAA (``DrmaaScheduler``), measured inside the SGE container, where
libdrmaa is (as ``bench_drmaa.py`` does): ours with arrays (one ``runBulkJobs``) against ours with
``ARRAYS = never`` (a ``runJob`` loop, one script file each: the ratio of the last line), a raw
``qsub -h`` loop in the container, one status poll of the held tasks, and the same jobs (not held)
from submission until all ended.

    python benchmarks/bench_arrays.py [--drms slurm --drms slurm-24.11 --drms sge] [--jobs 1000] [--sw-sample 100]

(From a checkout: ``PYTHONPATH=.`` so that the containers get this very code.)
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
from typing import Any

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


def _until(check: Callable[[], bool], limit: float = 1800.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not end in time")
        time.sleep(0.5)


def _timed_submission(s: Any, jobs: list[Job]) -> tuple[float, list[str]]:
    """Seconds ``s.job_submission(jobs)`` took, and the ids (every job must be taken)."""
    t0 = time.perf_counter()
    ids = s.job_submission(jobs)
    seconds = time.perf_counter() - t0
    assert None not in ids, s.last_submission_errors
    return seconds, ids


def report(drms: str, n: int, tool: str, t_ours: float, calls: int, t_raw: float, t_never: float, t_poll: float,
           e2e_ours: float, e2e_raw: float, more: list[str] | None = None) -> list[str]:
    """The Markdown section of one DRMS, ending with the one-line summary."""
    return [
        f"## {drms}: {n} different jobs (own argv, env, stdout)\n",
        "| measurement | time | ratio to ours with arrays |", "|---|---|---|",
        f"| ours, arrays (`ARRAYS=auto`), kept shell | {t_ours:.3f} s, {calls} DRMS call(s) | 1x |",
        f"| raw `{tool}` loop inside the container | {t_raw:.2f} s | {t_raw / t_ours:.0f}x slower |",
        f"| ours, `ARRAYS=never`, kept shell | {t_never:.2f} s | {t_never / t_ours:.0f}x slower |",
        *(more or []),
        f"| one status poll of the {n} held tasks | {t_poll * 1000:.0f} ms | |",
        f"| submission to all ended, ours (arrays) | {e2e_ours:.1f} s | 1x |",
        f"| submission to all ended, raw loop | {e2e_raw:.1f} s | {e2e_raw / e2e_ours:.1f}x slower |",
        f"\narrays {drms}: submit {n} jobs ours {t_ours:.3f} s, raw loop {t_raw:.2f} s, ratio {t_raw / t_ours:.0f}x\n",
    ]


def _timed_held_poll(s: Any, ids: list[str]) -> float:
    """Seconds one status poll of the held ``ids`` took (every one must be held)."""
    t0 = time.perf_counter()
    held = s.get_jobs_status(ids)
    seconds = time.perf_counter() - t0
    assert set(held.values()) == {"user_on_hold"}, set(held.values())
    return seconds


def _end_to_end(s: Any, n: int, out: str) -> float:
    """Seconds from submitting the ``n`` jobs (not held) through ``s`` until all ended; checks their
    exit and the last one's output."""
    t0 = time.perf_counter()
    ids = s.job_submission(_jobs(n, out, hold=False))
    _until(lambda: all(v in END for v in s.get_jobs_status(ids).values()))
    seconds = time.perf_counter() - t0
    infos = s.get_jobs_exit_info(ids)
    bad = [i for i, e in infos.items() if e[:2] != ("finished_regularly", 0)]
    assert not bad, [infos[i] for i in bad[:3]]
    with open(f"{out}/{n - 1}.out") as fh:
        sample_out = fh.read()
    assert sample_out == f"job {n - 1} it's\n", sample_out
    return seconds


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
            sched = SlurmScheduler(SchedulerConfig(
                bridge=BridgeConfig(mode="prefix", prefix=tuple(prefix), shells=shells), status_cache_seconds=0.5,
                arrays=arrays))
            # a long-lived scheduler's transport is up already (the kept shell starts with a docker exec)
            sched.runner.run(["true"])
            return sched

        def cancel_all() -> None:
            subprocess.run([*prefix, "scancel", "--me"], capture_output=True)
            time.sleep(1)

        # -- submission of n held jobs ------------------------------------------------------------
        s = ours()
        calls = s.runner.calls
        t_ours, ids = _timed_submission(s, _jobs(n, shared, hold=True))
        calls = s.runner.calls - calls
        t_poll = _timed_held_poll(s, ids)
        cancel_all()
        t_raw = _raw_loop(prefix, n, shared, hold=True)
        cancel_all()
        t_never, _ = _timed_submission(ours("never"), _jobs(n, shared, hold=True))
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
        e2e_ours = _end_to_end(ours(), n, shared)
        t0 = time.perf_counter()
        _raw_loop(prefix, n, shared, hold=False)
        _until(lambda: not subprocess.run([*prefix, "squeue", "-h", "--me"], capture_output=True,
                                          text=True).stdout.strip())
        e2e_raw = time.perf_counter() - t0

        rows += report(drms, n, "sbatch", t_ours, calls, t_raw, t_never, t_poll, e2e_ours, e2e_raw, [
            f"| ours, arrays, over `docker exec` | {t_exec:.3f} s | (transport of the next row) |",
            f"| Soma-Workflow 6.x over `docker exec` ({sw_sample} jobs, scaled; {sw_note}) | {t_sw_scaled:.1f} s "
            f"| {t_sw_scaled / t_exec:.0f}x slower than ours over `docker exec` |"])
    finally:
        cluster.stop()
    return "\n".join(rows)


#: The DRMAA clusters (``--drms``): measured from inside, where libdrmaa is.
DRMAA_CLUSTERS = ("sge",)


def _qsub_loop(n: int, out: str, hold: bool) -> float:
    """A shell loop of one ``qsub`` per job (here, in the SGE container); its seconds."""
    flag = "-h " if hold else ""
    loop = (f'i=0; while [ $i -lt {n} ]; do qsub {flag}-terse -b y -v SOMA_N=$i -o {shlex.quote(out)}/raw$i.out '
            f'-j y /bin/echo "job $i" "it\'s" >/dev/null || exit 1; i=$((i+1)); done')
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", loop], check=True)
    return time.perf_counter() - t0


def inside_drmaa(n: int) -> int:
    """The DRMAA measurements, run inside the cluster (``--inside-drmaa``); prints its report."""
    from soma_schedulers.schedulers.drmaa_scheduler import DrmaaScheduler

    shared = os.environ.get("BENCH_DIR") or tempfile.mkdtemp()
    out = tempfile.mkdtemp(prefix="bench-arrays-", dir=shared)
    os.chmod(out, 0o755)
    user = os.environ.get("USER", "alice")

    def ours(arrays: str = "auto") -> DrmaaScheduler:
        return DrmaaScheduler(SchedulerConfig(status_cache_seconds=0.5, arrays=arrays,
                                              options={"tmp_dir": f"{shared}/drmaa-scripts"}))

    def delete_all() -> None:
        subprocess.run(["qdel", "-u", user], capture_output=True)
        time.sleep(1)

    s = ours()
    implementation = s.implementation
    t0 = time.perf_counter()
    ids = s.job_submission(_jobs(n, out, hold=True))
    t_ours = time.perf_counter() - t0
    assert None not in ids, s.last_submission_errors
    t0 = time.perf_counter()
    held = s.get_jobs_status(ids)  # type: ignore[arg-type]
    t_poll = time.perf_counter() - t0
    assert set(held.values()) == {"user_on_hold"}, set(held.values())
    delete_all()
    s.clean()
    never = ours("never")
    t0 = time.perf_counter()
    never_ids = never.job_submission(_jobs(n, out, hold=True))
    t_never = time.perf_counter() - t0
    assert None not in never_ids, never.last_submission_errors
    delete_all()
    never.clean()
    t_raw = _qsub_loop(n, out, hold=True)
    delete_all()

    s = ours()
    e2e_ours = _end_to_end(s, n, out)
    s.clean()

    print(f"## sge (DRMAA, {implementation}): {n} different jobs (own argv, env, stdout)\n")
    print("| measurement | time | ratio to ours with arrays |")
    print("|---|---|---|")
    print(f"| ours, arrays (`ARRAYS=auto`): `runBulkJobs` | {t_ours:.3f} s | 1x |")
    print(f"| ours, `ARRAYS=never`: a `runJob` loop | {t_never:.2f} s | {t_never / t_ours:.0f}x slower |")
    print(f"| raw `qsub -h` loop in the container | {t_raw:.2f} s | {t_raw / t_ours:.0f}x slower |")
    print(f"| one status poll of the {n} held tasks ({n} `jobStatus`) | {t_poll * 1000:.0f} ms | |")
    print(f"| submission to all ended, ours (arrays) | {e2e_ours:.1f} s | |")
    print(f"\narrays sge-drmaa: submit {n} jobs ours {t_ours:.3f} s, runJob loop {t_never:.2f} s, "
          f"ratio {t_never / t_ours:.0f}x\n", flush=True)
    return 0


def bench_drmaa(drms: str, n: int) -> int:
    """Run :func:`inside_drmaa` in cluster ``drms`` (its report goes to stdout)."""
    from soma_schedulers.testing.incontainer import run_in_cluster

    def command(cluster: docker_harness.DrmsCluster) -> list[str]:
        return ["env", f"BENCH_DIR={cluster.shared_dir}", "python3",
                f"{docker_harness.SOURCE_MOUNT}/benchmarks/bench_arrays.py", "--inside-drmaa", "--jobs", str(n)]

    return run_in_cluster(drms, command, lambda line: print(line, file=sys.stderr))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--drms", action="append", default=[])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--sw-sample", type=int, default=100)
    p.add_argument("--inside-drmaa", action="store_true", help="(run in a DRMAA cluster's controller)")
    a = p.parse_args()
    if a.inside_drmaa:
        return inside_drmaa(a.jobs)
    rc = 0
    for d in a.drms or ["slurm", "slurm-24.11"]:
        if d in DRMAA_CLUSTERS:
            rc = bench_drmaa(d, a.jobs) or rc
        else:
            print(bench(d, a.jobs, a.sw_sample), flush=True)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
