"""HTCondor's own life events (issue 18; docs/contract.md, "Life events of the DRMS"), against
HTCondor 23.9.6: the personal pool (``htcondor``) and a central manager with 2 execute nodes
(``htcondor-cluster``), one at a time. The settings each event needs are in
containers/htcondor/README.md, "Life events":

* **vacated** (``condor_vacate_job`` by the owner, ``condor_vacate`` of the machine by root): HTCondor
  evicts the job and puts it back Idle (``JobStatus`` 1, ``NumJobStarts`` 1, ``LastVacateTime``); it
  runs again. The end is the second run's (exit 7), never the first run's;
* **startd lost** (``condor_startd``, the starter and the job killed with SIGKILL on the execute node
  running the job): the shadow cannot reach the starter again before the job's lease expires
  (``job_lease_duration = 20``), then the job is Idle and runs again (condor_master restarts the startd
  10 s later; the other node may take it). ``condor_off -fast -startd`` instead: the job is Idle at
  once and runs on the other node. The end is the rerun's;
* **time limit** (``allowed_job_duration = 5``): HTCondor 23.9 *holds* the job (``HoldReasonCode`` 46,
  "The job exceeded allowed job duration of 00:05"): ``system_on_hold``, not an end. With
  ``periodic_remove = HoldReasonCode =?= 46`` HTCondor removes it: ``failed``/``aborted``, and
  ``get_job_error`` names the limit (the hold reason the history ad keeps as ``LastHoldReason``).
  The classic walltime, ``periodic_remove = JobStatus == 2 && time() - JobCurrentStartDate > 5``,
  removes the running job: ``failed``/``aborted`` with the expression as the reason.

Each test prints its ``LIFE-EVENT`` line (:class:`~soma_schedulers.testing.life_events.Tally`).
About 70 s in all (the two pools started once each).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_clusters import Clusters, one_at_a_time  # tests/containers/image_clusters.py

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers.htcondor_ads import parse_ads
from soma_schedulers.schedulers.htcondor_scheduler import HTCondorScheduler
from soma_schedulers.testing import docker_harness as dh
from soma_schedulers.testing.life_events import Tally, Watch, rerun_command, runs_of

pytestmark = pytest.mark.drms

clusters = one_at_a_time()
TALLY = Tally()
#: The rerun's exit code (rerun_command): the first run sleeps, then would exit 0.
LATER_EXIT = 7
#: What the tests ask of the ads themselves (as alice), to say what HTCondor did.
WHAT = ("ClusterId,ProcId,JobStatus,NumJobStarts,RemoteHost,LastRemoteHost,LastVacateTime,VacateReason,"
        "HoldReason,HoldReasonCode,LastHoldReason,RemoveReason,ExitCode")
#: The schedd evaluates periodic_remove of held jobs every PERIODIC_EXPR_INTERVAL s (60 by default):
#: the time-limit test sets it to 2 in its pool (README, "Life events").
PERIODIC_CONF = "/etc/condor/config.d/95-life-events.conf"
#: A walltime of 5 s as a remove policy on the running job (no hold).
WALLTIME = "periodic_remove = JobStatus == 2 && time() - JobCurrentStartDate > 5"


@pytest.fixture(scope="module", autouse=True)
def _tally() -> Iterator[None]:
    yield
    print("\n" + "\n".join(TALLY.lines()))


def _scheduler(cluster: dh.DrmsCluster) -> HTCondorScheduler:
    return HTCondorScheduler(SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix)),
                                             status_cache_seconds=0.2, undetermined_timeout=120.0))


def _ad(cluster: dh.DrmsCluster, job_id: str) -> dict[str, object]:
    """The job's ad, from the queue or else from the history."""
    for command in (["condor_q", "-allusers"], ["condor_history"]):
        rc, out = cluster.exec([*command, "-json", "-attributes", WHAT, job_id], user="alice")
        assert rc == 0, out
        ads = parse_ads(out)
        if ads:
            return ads[0]
    return {}


def _started(watch: Watch, counter: Path, timeout: float = 120.0) -> None:
    """Wait until the job runs and its first run has begun (the counter written)."""
    watch.until(lambda s: s == C.RUNNING, timeout, what="running")
    deadline = time.monotonic() + timeout
    while runs_of(counter) < 1:
        assert time.monotonic() < deadline, f"job {watch.job_id}: its first run never began"
        time.sleep(0.2)


def _rerun_end_ok(watch: Watch, counter: Path) -> tuple[bool, str]:
    """Whether the job ended as its second run did (done, exit 7, the counter at 2)."""
    end = watch.end()
    ok = end[:4] == (C.DONE, C.FINISHED_REGULARLY, LATER_EXIT, None) and runs_of(counter) == 2
    return ok, f"end {end}, runs {runs_of(counter)}, statuses {watch.changes}"


def test_vacated_job_runs_again_and_ends_as_its_rerun(clusters: Clusters) -> None:
    """condor_vacate_job (the owner) and condor_vacate of the machine (root) while jobs run: each job is
    Idle again, runs again, and ends with its second run's exit code."""
    cluster = clusters.get("htcondor")
    work = Path(cluster.make_workdir("vacate"))
    counters = [work / "by-job", work / "by-machine"]
    how = [(["condor_vacate_job", "{id}"], "alice"), (["condor_vacate", "-fast", "-all"], "root")]
    wrong = 0
    with _scheduler(cluster) as sched:
        ids = sched.job_submission([Job(command=rerun_command(c, later_exit=LATER_EXIT)) for c in counters])
        assert None not in ids, sched.last_submission_errors
        watches = [Watch(sched, str(i)) for i in ids]
        for watch, counter in zip(watches, counters, strict=True):
            _started(watch, counter)
        for watch, counter, (argv, user) in zip(watches, counters, how, strict=True):
            rc, out = cluster.exec([a.format(id=watch.job_id) for a in argv], user=user)
            assert rc == 0, out
            watch.until(lambda s: s != C.RUNNING, 60, poll=0.2, what="out of running after the vacate")
            between = _ad(cluster, watch.job_id)
            watch.until_ended(120)
            ok, says = _rerun_end_ok(watch, counter)
            ad = _ad(cluster, watch.job_id)
            print(f"\n{argv[0]} {watch.job_id}: {says}\n  between the runs: {json.dumps(between)}\n"
                  f"  at the end: {json.dumps(ad)}")
            # HTCondor ran it twice, and the scheduler said nothing but the job's life meanwhile
            ok = ok and ad.get("NumJobStarts") == 2 and bool(ad.get("LastVacateTime"))
            ok = ok and set(watch.statuses) <= {C.QUEUED_ACTIVE, C.RUNNING, C.DONE}
            wrong += not ok
            assert ok, (says, ad)
    TALLY.add("htcondor", "requeue (condor_vacate)", len(counters), wrong)


def test_time_limit_holds_and_a_remove_policy_ends_it_aborted(clusters: Clusters) -> None:
    """allowed_job_duration: HTCondor holds the job (system_on_hold, not an end); with periodic_remove
    on that hold, the job ends failed/aborted and get_job_error names the limit."""
    cluster = clusters.get("htcondor")
    rc, out = cluster.exec(["sh", "-c", f"echo 'PERIODIC_EXPR_INTERVAL = 2' > {PERIODIC_CONF} && condor_reconfig -schedd"])
    assert rc == 0, out
    limit = ["allowed_job_duration = 5"]
    removed_at_hold = [*limit, "periodic_remove = HoldReasonCode =?= 46"]
    with _scheduler(cluster) as sched:
        ids = sched.job_submission([Job(command=["sleep", "300"], native_specification=removed_at_hold),
                                    Job(command=["sleep", "300"], native_specification=limit),
                                    Job(command=["sleep", "300"], native_specification=[WALLTIME])])
        assert None not in ids, sched.last_submission_errors
        removed, held, walltime = (Watch(sched, str(i)) for i in ids)
        # the classic walltime: the shadow removes the running job (no hold)
        walltime.until_ended(120)
        wall_end = walltime.end()
        print(f"\nperiodic_remove walltime: {walltime.job_id}: {wall_end}, statuses {walltime.changes}")
        wall_ok = wall_end[:2] == (C.FAILED, C.EXIT_ABORTED) and "PeriodicRemove" in str(wall_end[4])
        TALLY.add("htcondor", "time limit (periodic_remove walltime)", 1, int(not wall_ok))
        assert wall_ok and C.RUNNING in walltime.statuses, (wall_end, walltime.changes)
        removed.until_ended(120)
        end = removed.end()
        removed_ad = _ad(cluster, removed.job_id)
        print(f"removed at its hold: {removed.job_id}: {end}, statuses {removed.changes}\n  {json.dumps(removed_ad)}")
        ok = end[:2] == (C.FAILED, C.EXIT_ABORTED) and "allowed job duration" in str(end[4])
        # held only: the job stays system_on_hold (HTCondor waits for condor_release or condor_rm)
        held.until(lambda s: s == C.SYSTEM_ON_HOLD, 60, what="held at its limit")
        for _ in range(4):
            time.sleep(0.5)
            assert held.poll() == C.SYSTEM_ON_HOLD, held.changes
        held_ad = _ad(cluster, held.job_id)
        sched.kill_job(held.job_id)
        held.until_ended(60)
        held_end = held.end()
        print(f"held at its limit: {held.job_id}: {held.changes}, after kill_job {held_end}\n  {json.dumps(held_ad)}")
        held_ok = held_ad.get("HoldReasonCode") == 46 and held_end[0] == C.FAILED
        TALLY.add("htcondor", "time limit (allowed_job_duration + periodic_remove)", 1, int(not ok))
        TALLY.add("htcondor", "time limit (allowed_job_duration: held)", 1, int(not held_ok))
        assert ok, (end, removed.changes)
        assert removed_ad.get("NumJobStarts") == 1 and removed_ad.get("JobStatus") == 3, removed_ad  # it ran, once
        assert held_ok, (held_ad, held_end)


#: How the execute node running the job loses it: (the Tally's event, root shell on that node).
STARTD_LOSSES = (
    ("startd lost (kill -9)", "pkill -KILL -x condor_startd; pkill -KILL -x condor_starter; pkill -KILL -u alice; true"),
    ("startd off (condor_off -fast -startd)", "condor_off -fast -startd"),
)


@pytest.mark.parametrize(("event", "shell"), STARTD_LOSSES, ids=["kill-9", "condor_off"])
def test_startd_lost_mid_job_the_job_reruns(clusters: Clusters, event: str, shell: str) -> None:
    """The execute node running the job loses its startd: killed with the starter and the job
    (SIGKILL: once the job's lease, 20 s, expires the job is Idle and runs again, on the startd
    condor_master restarts or the other node), or turned off (``condor_off -fast``: the job is Idle at
    once and runs on the other node). Either way it ends as the rerun did."""
    cluster = clusters.get("htcondor-cluster")
    counter = Path(cluster.make_workdir(f"startd-{uuid.uuid4().hex[:8]}")) / "counter"
    with _scheduler(cluster) as sched:
        ids = sched.job_submission([Job(command=rerun_command(counter, later_exit=LATER_EXIT),
                                        native_specification=["job_lease_duration = 20"])])
        assert ids[0] is not None, sched.last_submission_errors
        watch = Watch(sched, ids[0])
        _started(watch, counter)
        host = str(_ad(cluster, watch.job_id).get("RemoteHost", "")).rpartition("@")[2].split(".")[0]
        node = dict(zip(cluster.hostnames, cluster.containers, strict=True)).get(host)
        assert node is not None, f"the job runs on {host!r}, not one of {cluster.hostnames}"
        rc, out = cluster.exec(["sh", "-c", shell], container=node)
        assert rc == 0, out
        t0 = time.monotonic()
        try:
            watch.until_ended(240)
        finally:
            if "condor_off" in shell:  # the node as it was for the next test
                cluster.exec(["condor_on", "-startd"], container=node)
        ok, says = _rerun_end_ok(watch, counter)
        ad = _ad(cluster, watch.job_id)
        print(f"\n{event} on {host}: job {watch.job_id} {says}; {time.monotonic() - t0:.0f} s to its end; "
              f"longest undetermined {watch.longest_undetermined:.1f} s\n  {json.dumps(ad)}")
    TALLY.add("htcondor-cluster", event, 1, int(not ok))
    assert ok, says
    assert ad.get("NumJobStarts") == 2, ad
    assert watch.longest_undetermined < 60, watch.changes
    if "condor_off" in shell:  # its node has no startd: the rerun ran on the other one
        assert not str(ad.get("LastRemoteHost", "")).endswith(f"@{host}"), ad
