"""OpenPBS's and Torque's own life events against the real daemons (issue 18; docs/contract.md,
"Life events"; what each does: docs/pbs.md, "Life events"; the settings: the images' READMEs).

* ``qrerun`` by an administrator while the job runs (jobs are rerunnable by default on both):
  ``queued_active`` again (scheduling is turned off for the while, so the queued state lasts),
  then the **second** run's end (:func:`~soma_schedulers.testing.life_events.rerun_command`: exit 7);
* the time limit (``-l walltime=00:00:05`` on a long sleep): ``failed`` / ``aborted``,
  ``get_job_error`` names the walltime;
* the MOM killed (``kill -9``) with the job's processes on the node running it (``c1`` or ``c2``
  in the cluster layouts), then restarted 25 s later. OpenPBS's restarted MOM requeues the job:
  the rerun's end. Torque's records exit status 0 for the lost job: the backend, which saw the
  MOM stopped while the job ran, reports ``failed`` / ``aborted``, never ``done`` with 0.
* the same MOM left dead: OpenPBS's server requeues the job after ``node_fail_requeue`` seconds
  (10 here) and it runs on the other node: the rerun's end; Torque keeps the job ``R``: the
  backend says ``undetermined``, then ``failed`` / ``aborted`` after ``undetermined_timeout``.

Every event runs on the clusters ``SOMA_EVENTS_PBS`` names (comma-separated, default
``openpbs-cluster,torque-cluster``: one at a time; the single-container ``openpbs`` and ``torque``
work too, their one node being the server's). Skipped with the reason when Docker, the images or their upstream sources are missing. Each test
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
from image_clusters import run_as_root, start_or_skip  # tests/containers/image_clusters.py

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers.pbspro_scheduler import PBSProScheduler, TorqueScheduler
from soma_schedulers.testing import docker_harness as dh
from soma_schedulers.testing.life_events import Tally, Watch, rerun_command, runs_of, submit_one

pytestmark = pytest.mark.drms

CLUSTERS = [c for c in os.environ.get("SOMA_EVENTS_PBS", "openpbs-cluster,torque-cluster").split(",") if c]
#: The end of a rerun_command job whose last run was its second: exit 7.
RERUN_END = (C.DONE, C.FINISHED_REGULARLY, 7, None)
#: How each flavour restarts a MOM (as root, on its node: the default recovery of running jobs).
MOM = {"openpbs": "/opt/pbs/sbin/pbs_mom", "torque": "pbs_mom"}


@pytest.fixture(scope="module", params=CLUSTERS)
def cluster(request: pytest.FixtureRequest) -> Iterator[dh.DrmsCluster]:
    started = start_or_skip(request.param)
    yield started
    started.stop()


def _flavour(cluster: dh.DrmsCluster) -> str:
    return cluster.spec.name.removesuffix("-cluster")


def _scheduler(cluster: dh.DrmsCluster, undetermined_timeout: float = 120.0, **options: str) -> PBSProScheduler:
    cls = TorqueScheduler if _flavour(cluster) == "torque" else PBSProScheduler
    return cls(SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix)),
                               status_cache_seconds=0.0, undetermined_timeout=undetermined_timeout,
                               options=options))



def _root(cluster: dh.DrmsCluster, script: str, container: object | None = None) -> str:
    return run_as_root(cluster, script, container, login=True)


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


def test_qrerun_by_administrator(cluster: dh.DrmsCluster) -> None:
    """``qrerun`` of a running job: queued again, then the second run's end (exit 7)."""
    work = Path(cluster.make_workdir(f"rerun-{uuid.uuid4().hex[:8]}"))
    counter = work / "runs"
    with _scheduler(cluster) as sched:
        job_id = submit_one(sched, Job(command=rerun_command(counter, 600, 7)))
        watch = Watch(sched, job_id)
        _wait_run(watch, counter, 1)
        _root(cluster, "qmgr -c 'set server scheduling = False'")
        try:
            _root(cluster, f"qrerun {job_id}")
            watch.until(lambda s: s == C.QUEUED_ACTIVE, 120, what="queued again")
            for _ in range(3):  # the first run's exit status is shown meanwhile: still queued
                assert watch.poll() == C.QUEUED_ACTIVE
                time.sleep(0.5)
        finally:
            _root(cluster, "qmgr -c 'set server scheduling = True'")
        watch.until_ended(timeout=180)
        end = watch.end()
    ok = end[:4] == RERUN_END and _ended_once(watch)
    _report(cluster, "qrerun", end[:4], ok, watch)
    assert watch.saw_again_after_running(), watch.changes
    assert runs_of(counter) == 2
    assert end[:4] == RERUN_END, (end, _records(cluster, job_id))
    assert _ended_once(watch), watch.changes


def test_walltime_limit(cluster: dh.DrmsCluster) -> None:
    """``-l walltime=00:00:05`` on a 600 s sleep: ``failed`` / ``aborted``, the reason names walltime."""
    with _scheduler(cluster) as sched:
        job_id = submit_one(sched, Job(command=["sleep", "600"], native_specification="-l walltime=00:00:05"))
        watch = Watch(sched, job_id)
        started = time.monotonic()
        watch.until_ended(timeout=180)
        took = time.monotonic() - started
        end = watch.end()
    ok = end[:2] == (C.FAILED, C.EXIT_ABORTED) and "walltime" in (end[4] or "")
    _report(cluster, "walltime", end, ok, watch)
    assert end[:2] == (C.FAILED, C.EXIT_ABORTED), (end, _records(cluster, job_id))
    assert "walltime" in (end[4] or ""), end
    assert C.RUNNING in watch.statuses and took < 120, (watch.changes, took)


#: Seconds a killed MOM stays dead before its restart.
SILENCE = 25.0


def _node_state(cluster: dh.DrmsCluster, node: str) -> str:
    flag = "-v " if _flavour(cluster) == "openpbs" else ""
    out = cluster.exec(["bash", "-lc", f"pbsnodes {flag}{node}"])[1]
    return next((ln.split("=", 1)[1].strip() for ln in out.splitlines() if ln.strip().startswith("state =")), "")


def _session_known(sched: PBSProScheduler, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """The job's attributes once they show its session (the MOM reports it after the start)."""
    deadline = time.monotonic() + timeout
    while True:
        attrs = sched.get_job_extended_status(job_id)
        if "session_id" in attrs and "exec_host" in attrs:
            return attrs
        assert time.monotonic() < deadline, f"no session_id for job {job_id} after {timeout:.0f} s: {attrs}"
        time.sleep(0.5)


def test_mom_killed_with_its_job_then_restarted(cluster: dh.DrmsCluster) -> None:
    """The MOM running the job is ``kill -9``ed with the job's processes, then restarted
    :data:`SILENCE` s later: OpenPBS reruns the job (its end is the rerun's); Torque records
    exit status 0 for it, which the backend must not report as ``done``."""
    flavour = _flavour(cluster)
    work = Path(cluster.make_workdir(f"mom-{uuid.uuid4().hex[:8]}"))
    counter = work / "runs"
    # Torque: pbsnodes every 2 s at most (OPTION_MOM_LOST_AFTER / 4), a MOM silent for 16 s stopped
    with _scheduler(cluster, mom_lost_after="8") as sched:
        job_id = submit_one(sched, Job(command=rerun_command(counter, 600, 7)))
        watch = Watch(sched, job_id)
        _wait_run(watch, counter, 1)
        attrs = _session_known(sched, job_id)
        node = str(attrs["exec_host"]).split("/", 1)[0]
        session = int(attrs["session_id"])
        container = cluster.containers[cluster.hostnames.index(node)]
        _root(cluster, f"pkill -9 -x pbs_mom; pkill -9 -s {session}; true", container=container)
        # OpenPBS's server says the node is down within seconds; Torque's may keep it free (the
        # torque-cluster's did for minutes): the MOM stays dead SILENCE s, polled meanwhile
        silent_until = time.monotonic() + SILENCE
        while time.monotonic() < silent_until:
            watch.poll()
            time.sleep(1)
        states = _node_state(cluster, node)
        _root(cluster, MOM[flavour], container=container)
        watch.until_ended(timeout=240)
        end = watch.end()
        if flavour == "torque":
            expected = end[:2] == (C.FAILED, C.EXIT_ABORTED) and node in (end[4] or "")
        else:
            expected = end[:4] == RERUN_END and runs_of(counter) == 2
        ok = expected and _ended_once(watch)
        _report(cluster, "mom-killed", end, ok, watch)
        records = _records(cluster, job_id)
    print(f"node {node} while its MOM was dead: state {states}")
    assert end[:4] != (C.DONE, C.FINISHED_REGULARLY, 0, None), (end, records)
    if flavour == "torque":
        assert "exit_status = 0" in records, records  # what Torque records: the backend's reason
        assert end[:2] == (C.FAILED, C.EXIT_ABORTED), (end, records)
        assert f"its MOM on {node}" in (end[4] or "") and "exit status 0" in (end[4] or ""), end
        assert runs_of(counter) == 1
    else:
        assert end[:4] == RERUN_END, (end, records)
        assert runs_of(counter) == 2
    assert _ended_once(watch), watch.changes


def test_mom_lost_for_good(cluster: dh.DrmsCluster) -> None:
    """The MOM running the job killed with its processes and left dead. OpenPBS: the server
    requeues the job after ``node_fail_requeue`` s (set to 10 here; 310 by default) and it runs
    again on the other node: the rerun's end. Torque keeps the job ``R`` (12 min measured): the
    backend says ``undetermined`` once it sees the MOM stopped, then ``failed`` / ``aborted``
    after ``undetermined_timeout`` (30 s here)."""
    flavour = _flavour(cluster)
    if flavour == "openpbs" and len(cluster.containers) < 2:
        pytest.skip("OpenPBS reruns the job on another node: a layout with two MOMs")
    work = Path(cluster.make_workdir(f"lost-{uuid.uuid4().hex[:8]}"))
    counter = work / "runs"
    if flavour == "openpbs":
        _root(cluster, "qmgr -c 'set server node_fail_requeue = 10'")
    container = None
    try:
        with _scheduler(cluster, undetermined_timeout=30.0, mom_lost_after="8") as sched:
            job_id = submit_one(sched, Job(command=rerun_command(counter, 600, 7)))
            watch = Watch(sched, job_id)
            _wait_run(watch, counter, 1)
            attrs = _session_known(sched, job_id)
            node = str(attrs["exec_host"]).split("/", 1)[0]
            container = cluster.containers[cluster.hostnames.index(node)]
            _root(cluster, f"pkill -9 -x pbs_mom; pkill -9 -s {int(attrs['session_id'])}; true", container=container)
            watch.until_ended(timeout=240)
            end = watch.end()
            rerun_on = str(sched.get_job_extended_status(job_id).get("exec_host", ""))
        if flavour == "openpbs":
            ok = end[:4] == RERUN_END and runs_of(counter) == 2
        else:
            ok = end[:2] == (C.FAILED, C.EXIT_ABORTED) and f"MOM on {node}" in (end[4] or "")
        _report(cluster, "mom-lost", end, ok and _ended_once(watch), watch)
        print(f"first run on {node}, then on {rerun_on}; undetermined for {watch.longest_undetermined:.0f} s")
        if flavour == "openpbs":
            assert end[:4] == RERUN_END, (end, _records(cluster, job_id))
            assert runs_of(counter) == 2 and not rerun_on.startswith(node), rerun_on
        else:
            assert end[:2] == (C.FAILED, C.EXIT_ABORTED), (end, _records(cluster, job_id))
            assert f"MOM on {node}" in (end[4] or "") and "for 30 s" in (end[4] or ""), end
            assert watch.saw_again_after_running(C.UNDETERMINED) and runs_of(counter) == 1, watch.changes
        assert _ended_once(watch), watch.changes
    finally:
        if flavour == "openpbs":
            _root(cluster, "qmgr -c 'set server node_fail_requeue = 310'")
        if container is not None:
            _root(cluster, MOM[flavour], container=container)
