"""OpenPBS's and Torque's own life events against the real daemons (issue 18; docs/contract.md,
"Life events"; what each does: docs/pbs.md, "Life events"; the settings: the images' READMEs).

* ``qrerun`` by an administrator while the job runs (jobs are rerunnable by default on both):
  ``queued_active`` again (scheduling is turned off for the while, so the queued state lasts),
  then the **second** run's end (:func:`~soma_schedulers.testing.life_events.rerun_command`: exit 7);
* the time limit (``-l walltime=00:00:05`` on a long sleep): ``failed`` / ``aborted``,
  ``get_job_error`` names the walltime;
* the MOM killed (``kill -9``) with the job's processes on the node running it, in the cluster
  layouts (server + MOMs ``c1``, ``c2``), then restarted once the server says the node is
  ``down``. OpenPBS's restarted MOM requeues the job: the rerun's end. Torque's records exit
  status 0 for the lost job: the backend, which saw the node down while the job ran, reports
  ``failed`` / ``aborted``, never ``done`` with 0.

``SOMA_EVENTS_PBS`` (comma-separated flavours, default ``openpbs,torque``) picks the flavours.
Skipped with the reason when Docker, the images or their upstream sources are missing. Each test
prints its ``LIFE-EVENT`` line (:class:`~soma_schedulers.testing.life_events.Tally`).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from image_clusters import start_or_skip  # tests/containers/image_clusters.py

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers.pbspro_scheduler import PBSProScheduler, TorqueScheduler
from soma_schedulers.testing import docker_harness as dh
from soma_schedulers.testing.life_events import Tally, Watch, rerun_command, runs_of

pytestmark = pytest.mark.drms

FLAVOURS = [f for f in os.environ.get("SOMA_EVENTS_PBS", "openpbs,torque").split(",") if f]
#: The end of a rerun_command job whose last run was its second: exit 7.
RERUN_END = (C.DONE, C.FINISHED_REGULARLY, 7, None)
#: How each flavour restarts a MOM (as root, on its node: the default recovery of running jobs).
MOM = {"openpbs": "/opt/pbs/sbin/pbs_mom", "torque": "pbs_mom"}


def _cluster(request: pytest.FixtureRequest) -> Iterator[dh.DrmsCluster]:
    cluster = start_or_skip(request.param)
    yield cluster
    cluster.stop()


single = pytest.fixture(scope="module", params=FLAVOURS)(_cluster)
multi = pytest.fixture(scope="module", params=[f"{f}-cluster" for f in FLAVOURS])(_cluster)


def _flavour(cluster: dh.DrmsCluster) -> str:
    return cluster.spec.name.removesuffix("-cluster")


def _scheduler(cluster: dh.DrmsCluster, **options: str) -> PBSProScheduler:
    cls = TorqueScheduler if _flavour(cluster) == "torque" else PBSProScheduler
    return cls(SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix)),
                               status_cache_seconds=0.0, undetermined_timeout=120.0, options=options))


def _submit(sched: PBSProScheduler, job: Job) -> str:
    [job_id] = sched.job_submission([job])
    assert job_id is not None, sched.last_submission_errors
    return job_id


def _root(cluster: dh.DrmsCluster, script: str, container: Any | None = None) -> str:
    rc, out = cluster.exec(["bash", "-lc", script], container=container)
    assert rc == 0, f"{script}: {out}"
    return out


def _records(cluster: dh.DrmsCluster, job_id: str) -> str:
    history = "" if _flavour(cluster) == "torque" else "-x"
    return cluster.exec(["bash", "-lc", f"qstat {history} -f {job_id}"])[1][-4000:]


def _report(cluster: dh.DrmsCluster, event: str, end: tuple[object, ...], ok: bool, watch: Watch) -> None:
    tally = Tally()
    tally.add(_flavour(cluster), event, 1, 0 if ok else 1)
    print(f"\n{cluster.spec.name} {event}: statuses {watch.changes}, end {end}")
    print("\n".join(tally.lines()))


def _wait_run(watch: Watch, counter: Path, run: int, timeout: float = 120.0) -> None:
    """Until the job runs its ``run``-th run (its counter says so) and the scheduler says running."""
    watch.until(lambda s: s == C.RUNNING and runs_of(counter) >= run, timeout, what=f"running run {run}")


def _ended_once(watch: Watch) -> bool:
    """Whether an end state was seen only as the last status (never the first run's end)."""
    return not any(s in C.END_STATES for s in watch.statuses[:-1])


def test_qrerun_by_administrator(single: dh.DrmsCluster) -> None:
    """``qrerun`` of a running job: queued again, then the second run's end (exit 7)."""
    work = Path(single.make_workdir(f"rerun-{uuid.uuid4().hex[:8]}"))
    counter = work / "runs"
    with _scheduler(single) as sched:
        job_id = _submit(sched, Job(command=rerun_command(counter, 600, 7)))
        watch = Watch(sched, job_id)
        _wait_run(watch, counter, 1)
        _root(single, "qmgr -c 'set server scheduling = False'")
        try:
            _root(single, f"qrerun {job_id}")
            watch.until(lambda s: s == C.QUEUED_ACTIVE, 120, what="queued again")
            for _ in range(3):  # the first run's exit status is shown meanwhile: still queued
                assert watch.poll() == C.QUEUED_ACTIVE
                time.sleep(0.5)
        finally:
            _root(single, "qmgr -c 'set server scheduling = True'")
        watch.until_ended(timeout=180)
        end = watch.end()
    ok = end[:4] == RERUN_END and _ended_once(watch)
    _report(single, "qrerun", end[:4], ok, watch)
    assert watch.saw_again_after_running(), watch.changes
    assert runs_of(counter) == 2
    assert end[:4] == RERUN_END, (end, _records(single, job_id))
    assert _ended_once(watch), watch.changes


def test_walltime_limit(single: dh.DrmsCluster) -> None:
    """``-l walltime=00:00:05`` on a 600 s sleep: ``failed`` / ``aborted``, the reason names walltime."""
    with _scheduler(single) as sched:
        job_id = _submit(sched, Job(command=["sleep", "600"], native_specification="-l walltime=00:00:05"))
        watch = Watch(sched, job_id)
        started = time.monotonic()
        watch.until_ended(timeout=180)
        took = time.monotonic() - started
        end = watch.end()
    ok = end[:2] == (C.FAILED, C.EXIT_ABORTED) and "walltime" in (end[4] or "")
    _report(single, "walltime", end, ok, watch)
    assert end[:2] == (C.FAILED, C.EXIT_ABORTED), (end, _records(single, job_id))
    assert "walltime" in (end[4] or ""), end
    assert C.RUNNING in watch.statuses and took < 120, (watch.changes, took)
