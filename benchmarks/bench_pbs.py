"""PBS (OpenPBS 23.06.06, Torque 6.1-dev): the cost of one status poll of many held jobs.

With ``--held`` held jobs in the test cluster, in one run: one status poll of all of them through
our PBSProScheduler (1 ``qstat``, its default mode), the same poll in both modes (naming every id,
OpenPBS with ``-E``; listing every job), and Soma-Workflow 6.x's PBSProScheduler asking job by
job (``qstat -x -f -F json ID`` on OpenPBS, ``qstat -x ID``, XML, on Torque). Every command, ours
and Soma-Workflow's (through qsub/qstat/qdel wrappers put on PATH), goes through the same
``docker exec`` into the cluster, so the ratios compare the implementations, not the transport.

    python benchmarks/bench_pbs.py [--drms openpbs,torque] [--held 300] [--sw-sample 0]
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import stat
import sys
import tempfile
import time
from typing import Any

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers.pbspro_scheduler import PBSProScheduler
from soma_schedulers.testing import docker_harness


def _wrappers(prefix: list[str], where: str) -> None:
    """qsub/qstat/qdel on PATH as thin wrappers over the bridge prefix (for Soma-Workflow)."""
    for cmd in ("qsub", "qstat", "qdel"):
        path = os.path.join(where, cmd)
        with open(path, "w") as fh:
            fh.write(f"#!/bin/sh\nexec {shlex.join(prefix)} {cmd} \"$@\"\n")
        os.chmod(path, stat.S_IRWXU)


def _soma_workflow(bindir: str) -> tuple[Any, str]:
    """Soma-Workflow's PBSProScheduler; its version check cannot parse Torque's '6.1-dev'."""
    from soma_workflow.schedulers.pbspro_scheduler import (  # type: ignore[import-not-found]
        PBSProScheduler as SWPBS,
    )

    try:
        return SWPBS(None, tmp_file_path=bindir), ""
    except ValueError as exc:

        class Patched(SWPBS):  # type: ignore[misc,valid-type]
            def get_pbs_version(self) -> tuple[str, str]:
                impl, version = super().get_pbs_version()
                return impl, version.split("-")[0]

        return Patched(None, tmp_file_path=bindir), f"its constructor fails on this version ({exc}): version check patched"


def _held(s: PBSProScheduler, n: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < n:
        batch = s.job_submission([Job(command=["/bin/true"], hold=True) for _ in range(min(100, n - len(ids)))])
        assert None not in batch, s.last_submission_errors
        ids += batch  # type: ignore[arg-type]
    return ids


def _poll(s: PBSProScheduler, ids: list[str]) -> tuple[float, int]:
    calls0 = s.runner.calls
    t0 = time.perf_counter()
    status = s.get_jobs_status(ids)
    took = time.perf_counter() - t0
    assert set(status.values()) == {C.USER_ON_HOLD}, set(status.values())
    return took, s.runner.calls - calls0


def bench(name: str, held: int, sw_sample: int) -> list[str]:
    cluster = docker_harness.start_cluster(name, log=lambda line: print(line, file=sys.stderr))
    try:
        prefix = list(cluster.command_prefix)
        bridge = BridgeConfig(mode="prefix", prefix=tuple(prefix))
        ours = PBSProScheduler(SchedulerConfig(bridge=bridge, status_cache_seconds=0))
        impl, version = ours.get_pbs_version()
        ids = _held(ours, held)
        _poll(ours, ids)  # warm-up (the first docker exec of a run is slower)
        ours_t, ours_calls = min(_poll(ours, ids) for _ in range(3))
        modes = {}
        for mode, limit in (("naming every id", str(10**9)), ("listing every job", "0")):
            other = PBSProScheduler(SchedulerConfig(bridge=bridge, status_cache_seconds=0,
                                                    options={"max_named_ids": limit}))
            for i in ids:
                other.track_job(i)
            modes[mode] = min(_poll(other, ids) for _ in range(3))[0]
        default = "naming every id" if ours.qstat_argv(ids)[-1] == ids[-1] else "listing every job"

        with tempfile.TemporaryDirectory() as bindir:
            _wrappers(prefix, bindir)
            path = os.environ["PATH"]
            os.environ["PATH"] = bindir + os.pathsep + path
            try:
                logging.getLogger("ljp.pbspro_scheduler").setLevel(logging.ERROR)
                sw, note = _soma_workflow(bindir)
                sample = ids[:sw_sample] if sw_sample else ids
                t0 = time.perf_counter()
                sw_status = {sw.get_job_status(i) for i in sample}
                sw_poll = (time.perf_counter() - t0) * len(ids) / len(sample)
            finally:
                os.environ["PATH"] = path
        scaled = f" (asked about {len(sample)}, scaled)" if len(sample) < len(ids) else ""
        rows = [
            f"| {impl} {version} ({name}): one status poll of {len(ids)} held jobs "
            f"| ours: {ours_t * 1000:.0f} ms, {ours_calls} `qstat` call ({default}) | Soma-Workflow 6.x: "
            f"{sw_poll:.1f} s, {len(ids)} `qstat` calls{scaled} | ours {sw_poll / ours_t:.0f}x faster |",
            f"| {impl}: our one `qstat` naming every id{' (`-E`)' if impl == 'pbspro' else ''} vs listing every job "
            f"| {modes['naming every id'] * 1000:.0f} ms | {modes['listing every job'] * 1000:.0f} ms "
            f"| {modes['naming every id'] / modes['listing every job']:.2f}x the time |",
        ]
        notes = [f"{name}: Soma-Workflow's statuses for held jobs: {sorted(sw_status)}"
                 + (f"; {note}" if note else "")]
        return rows + [f"NOTE {n}" for n in notes]
    finally:
        cluster.stop()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--drms", default="openpbs,torque")
    p.add_argument("--held", type=int, default=300)
    p.add_argument("--sw-sample", type=int, default=0,
                   help="ask Soma-Workflow about only this many jobs and scale (0: all)")
    a = p.parse_args()
    rows: list[str] = []
    skipped: list[str] = []
    for name in a.drms.split(","):
        try:
            rows += bench(name, a.held, a.sw_sample)
        except docker_harness.ImageUnavailable as exc:
            skipped.append(f"{name}: image unavailable: {exc}")
    if not any(r.startswith("|") for r in rows):
        print("; ".join(skipped), file=sys.stderr)
        return 2
    print("## PBS (OpenPBS, Torque) through `docker exec`, same cluster, same run\n")
    print("| measurement | ours | other | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        if r.startswith("|"):
            print(r)
    print()
    for r in rows:
        if r.startswith("NOTE "):
            print(f"- {r[5:]}")
    for s in skipped:
        print(f"- skipped {s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
