"""Slurm's own life events against the real daemons (issue 18; docs/contract.md, "Life events").

Each test makes one event happen on demand (the settings are in containers/slurm/README.md, "Life
events") and checks the end state the contract gives:

* requeue by an administrator (``scontrol requeue``) and preemption (``PreemptMode=REQUEUE``, a
  job of partition ``high`` takes the node of a job of ``low``): ``queued_active`` again, then the
  **last** run's end (:func:`~soma_schedulers.testing.life_events.rerun_command`: exit 7 on run 2);
* the time limit (``--time``): ``failed`` / ``aborted``, ``get_job_error`` says ``TIMEOUT``;
* the controller restarted with its state wiped (ids start again): a job tracked before never takes
  the record of the new job given its id, and the new job gets its own end;
* slurmd killed with the job's processes on a compute node: Slurm requeues the
  job (``NODE_FAIL``, ``JobRequeue``): the rerun's end, never the lost run's, never undetermined
  for good.

All of them run on one cluster, ``slurm-cluster`` (a controller and compute nodes c1, c2), their
jobs started together so that Slurm's waits overlap (about 3 minutes in all);
``SOMA_EVENTS_SLURM`` (comma-separated cluster names) picks others: ``slurm-24.11-cluster``, or a
single container (``slurm``, ``slurm-24.11``: the node test then skips). Each test prints its
``LIFE-EVENT`` line (:class:`~soma_schedulers.testing.life_events.Tally`).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from image_clusters import run_as_root, start_or_skip  # tests/containers/image_clusters.py

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler
from soma_schedulers.testing import docker_harness as dh
from soma_schedulers.testing.life_events import Tally, Watch, rerun_command, runs_of, submit_one

pytestmark = pytest.mark.drms

CLUSTERS = [c for c in os.environ.get("SOMA_EVENTS_SLURM", "slurm-cluster").split(",") if c]
#: slurm-cluster only, set by the node test: a node whose slurmd does not answer is DOWN after
#: about twice this (Slurm's default, 300 s, is too long for a test).
SLURMD_TIMEOUT = 15
#: Kill a compute node's slurmd and the job's processes, as a node crash would.
NODE_CRASH = "pkill -9 -x slurmd; pkill -9 -x slurmstepd; pkill -9 -u alice; true"
#: Start a (dynamic) compute node's slurmd again, as the image's entrypoint does.
NODE_BACK = '/usr/sbin/slurmd --conf-server slurmctl -Z --conf "CPUs=${SLURM_CPUS:-16} RealMemory=${SLURM_REALMEMORY:-8192}"'
#: The end of a rerun_command job whose last run was its second: exit 7.
RERUN_END = (C.DONE, C.FINISHED_REGULARLY, 7, None)


@pytest.fixture(scope="module", params=CLUSTERS)
def cluster(request: pytest.FixtureRequest) -> Iterator[dh.DrmsCluster]:
    """The cluster; with compute nodes apart, ``SlurmdTimeout`` made short for the node test."""
    c = start_or_skip(request.param)
    if len(c.containers) > 1:
        _root(c, f"echo SlurmdTimeout={SLURMD_TIMEOUT} >> /etc/slurm/slurm.conf && scontrol reconfigure")
    yield c
    c.stop()


def _scheduler(cluster: dh.DrmsCluster, undetermined_timeout: float = 120.0) -> SlurmScheduler:
    return SlurmScheduler(SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix)),
                                          status_cache_seconds=0.0, undetermined_timeout=undetermined_timeout))



def _root(cluster: dh.DrmsCluster, script: str, container: object | None = None) -> str:
    return run_as_root(cluster, script, container, login=False)


def _records(cluster: dh.DrmsCluster, job_id: str) -> str:
    """Every accounting record of ``job_id`` (``-D``: each run of a requeued job, each job given the id)."""
    return _root(cluster, f"sacct -n -P -D -j {job_id} -o JobIDRaw,State,ExitCode,Submit,Start,End,NodeList,Comment")


def _report(drms: str, event: str, end: tuple[object, ...], expected: tuple[object, ...] | set[tuple[object, ...]],
            watch: Watch) -> None:
    ok = end in expected if isinstance(expected, set) else end == expected
    tally = Tally()
    tally.add(drms, event, 1, 0 if ok else 1)
    print(f"\n{drms} {event}: statuses {watch.changes}, end {end}")
    print("\n".join(tally.lines()))


def _drms(cluster: dh.DrmsCluster) -> str:
    return cluster.spec.name


def _release(cluster: dh.DrmsCluster, watch: Watch) -> None:
    """Once the requeued job shows ``queued_active``, poll until Slurm lets it start, then have it
    scheduled at once. Slurm holds a requeued batch job back (Reason ``BeginTime``) until its
    credential has expired (``cred_expire``, 120 s by default): a job an administrator starts
    sooner (``StartTime=now``) fails to launch (``Job credential revoked``, ``FAILED`` 1:0). Past
    its BeginTime it would wait for the next periodic scheduling pass (up to a minute more):
    ``StartTime=now`` then spares the test that wait."""
    watch.until(lambda s: s == C.QUEUED_ACTIVE, 120, what="queued again")
    left = _root(cluster, f'b=$(squeue -h -j {watch.job_id} -o %S); echo $(( $(date -d "$b" +%s) - $(date +%s) ))')
    until = time.monotonic() + max(0, int(left.strip())) + 2
    watch.until(lambda s: time.monotonic() > until or s != C.QUEUED_ACTIVE, 300, what="past its BeginTime")
    if watch.last == C.QUEUED_ACTIVE:
        _root(cluster, f"scontrol update JobId={watch.job_id} StartTime=now")


def _wait_run(watch: Watch, counter: Path, run: int, timeout: float = 120.0) -> None:
    """Until the job runs its ``run``-th run (its counter says so) and the scheduler says running."""
    watch.until(lambda s: s == C.RUNNING and runs_of(counter) >= run, timeout, what=f"running run {run}")


def _rerun_ended(cluster: dh.DrmsCluster, event: str, watch: Watch, counter: Path) -> str:
    """Wait for the end of a requeued :func:`rerun_command` job; check it is its second run's (exit
    7) and that it showed ``queued_active`` after ``running``; return its accounting records."""
    watch.until_ended(timeout=300)
    end = watch.end()
    _report(_drms(cluster), event, end[:4], RERUN_END, watch)
    records = _records(cluster, watch.job_id)
    print(records)
    assert watch.saw_again_after_running(), watch.changes
    assert runs_of(counter) == 2, (end, records)
    assert end[:4] == RERUN_END, (end, records)
    return records


@dataclass
class Started:
    """The jobs of the requeue, time limit and preemption tests, started together so that their
    waits overlap (Slurm holds a requeued job back two minutes, the time limit takes one and a half).
    The node's CPUs: 1 for ``limited`` (partition ``high``: never preempted, and only in ``high``
    where it takes no one's place), 1 for ``requeued`` (``debug``), the others for ``low`` (partition
    ``low``). Once ``requeued`` is requeued, ``high`` (partition ``high``, as many CPUs as ``low``)
    can only start by preempting ``low``: the time limit's job is in no lower tier, and the requeued
    job waits. They run on the last compute node; with nodes apart (``slurm-cluster``), the node
    test's job (``lost``) runs on the first, and its node is lost once it runs."""

    sched: SlurmScheduler
    counters: dict[str, Path]
    watches: dict[str, Watch]
    #: The node the ``lost`` job ran on.
    lost_node: str


@pytest.fixture(scope="module")
def started(cluster: dh.DrmsCluster) -> Iterator[Started]:
    work = Path(cluster.make_workdir(f"events-{uuid.uuid4().hex[:8]}"))
    counters = {name: work / name for name in ("requeued", "low", "lost")}
    nodes = sorted(set(_root(cluster, "sinfo -h -N -p debug -o %N").split()))
    on = f"--nodelist={nodes[-1]}"
    cpus = int(_root(cluster, f"sinfo -h -N -n {nodes[-1]} -o %c").split()[0])
    with _scheduler(cluster) as sched:
        jobs = {
            "limited": Job(command=["sleep", "600"], queue="high", native_specification=["--time=1", on]),
            "requeued": Job(command=rerun_command(counters["requeued"], 600, 7), native_specification=on),
            "low": Job(command=rerun_command(counters["low"], 600, 7), queue="low",
                       native_specification=[f"--cpus-per-task={cpus - 2}", on]),
        }
        if len(nodes) > 1:
            jobs["lost"] = Job(command=rerun_command(counters["lost"], 600, 7), native_specification=f"--nodelist={nodes[0]}")
        watches = {name: Watch(sched, submit_one(sched, job)) for name, job in jobs.items()}
        for name in ("requeued", "low", "lost")[:len(jobs) - 1]:
            _wait_run(watches[name], counters[name], 1)
        if "lost" in jobs:
            _root(cluster, NODE_CRASH, container=cluster.containers[cluster.hostnames.index(nodes[0])])
        _root(cluster, f"scontrol requeue {watches['requeued'].job_id}")
        watches["requeued"].until(lambda s: s == C.QUEUED_ACTIVE, 120, what="queued again")
        high = Job(command=["sleep", "5"], queue="high", native_specification=[f"--cpus-per-task={cpus - 2}", on])
        watches["high"] = Watch(sched, submit_one(sched, high))
        watches["low"].until(lambda s: s != C.RUNNING, 120, what="preempted")
        yield Started(sched, counters, watches, nodes[0])


def test_requeue_by_administrator(cluster: dh.DrmsCluster, started: Started) -> None:
    """``scontrol requeue`` of a running job: queued again, then the second run's end (exit 7)."""
    watch, counter = started.watches["requeued"], started.counters["requeued"]
    _release(cluster, watch)
    records = _rerun_ended(cluster, "requeue", watch, counter)
    assert records.count(f"{watch.job_id}|") >= 2, records  # the first run's REQUEUED record and the last run's


def test_time_limit(cluster: dh.DrmsCluster, started: Started) -> None:
    """``--time=1`` (Slurm's unit: minutes) on a job that sleeps 10 min: failed / aborted, and the
    error says ``TIMEOUT``. Slurm checks the limits about every 30 s (``OverTimeLimit=0``): the end
    comes 60 to 95 s after the start."""
    watch = started.watches["limited"]
    watch.until_ended(timeout=240, poll=1.0)
    status, exit_status, _value, _sig, error = watch.end()
    _report(_drms(cluster), "time_limit", (status, exit_status), (C.FAILED, C.EXIT_ABORTED), watch)
    elapsed = _root(cluster, f"sacct -n -X -P -j {watch.job_id} -o ElapsedRaw").strip()
    print(f"ran {elapsed} s: {error}")
    assert (status, exit_status) == (C.FAILED, C.EXIT_ABORTED), (status, exit_status, error,
                                                                 _records(cluster, watch.job_id))
    assert error is not None and "TIMEOUT" in error, error
    assert 55 <= int(elapsed) <= 150, elapsed


def test_preemption_requeues(cluster: dh.DrmsCluster, started: Started) -> None:
    """The job of partition ``low`` is preempted by the one of ``high`` (``PreemptMode=REQUEUE``):
    queued again while ``high``'s runs, then its second run's end."""
    watch, counter, high = started.watches["low"], started.counters["low"], started.watches["high"]
    high.until_ended(timeout=180)
    if watch.poll() not in C.END_STATES:
        _release(cluster, watch)
    records = _rerun_ended(cluster, "preemption", watch, counter)
    assert high.end()[:3] == (C.DONE, C.FINISHED_REGULARLY, 0), high.end()
    assert "PREEMPTED" in records, records  # the first run's record


def test_node_lost_mid_job(cluster: dh.DrmsCluster, started: Started) -> None:
    """slurmd and the job's processes killed on the first compute node mid-job: running until Slurm
    decides (the node DOWN after ``SlurmdTimeout``, the run recorded ``NODE_FAIL``), then queued
    again (``JobRequeue=1``: batch jobs are requeued), slurmd back on the node (``ReturnToService=2``),
    then the rerun's end."""
    if "lost" not in started.watches:
        pytest.skip(f"{cluster.spec.name} has no compute node apart from its controller (slurm-cluster has)")
    watch = started.watches["lost"]
    watch.until(lambda s: s != C.RUNNING, 4 * SLURMD_TIMEOUT + 60, what="no longer running")
    _root(cluster, NODE_BACK, container=cluster.containers[cluster.hostnames.index(started.lost_node)])
    _release(cluster, watch)
    records = _rerun_ended(cluster, "node_lost", watch, started.counters["lost"])
    print(f"undetermined at most {watch.longest_undetermined:.0f} s")
    assert "NODE_FAIL" in records, records


#: Restart slurmctld with its state wiped (job ids start again at 1; slurmdbd keeps the records).
WIPE_STATE = """
scontrol shutdown slurmctld
for i in $(seq 100); do pgrep -x slurmctld >/dev/null || break; sleep 0.2; done
rm -rf /var/lib/slurm/slurmctld/*
/usr/sbin/slurmctld
"""
#: Until N nodes are up again (``{n}``).
NODES_UP = """
for i in $(seq 300); do
    [ "$(sinfo -h -N -p debug -t idle,mix,alloc -o %N 2>/dev/null | sort -u | wc -l)" -ge {n} ] && exit 0; sleep 0.2
done
sinfo -N; exit 1
"""


def _wipe_state(cluster: dh.DrmsCluster) -> None:
    """:data:`WIPE_STATE`; the compute nodes apart (dynamic nodes, which the wiped state no longer
    lists) register again when their slurmd restarts; then wait until every node is up."""
    nodes = len(set(_root(cluster, "sinfo -h -N -p debug -o %N").split()))
    _root(cluster, WIPE_STATE)
    for node in cluster.containers[1:]:
        _root(cluster, f"pkill -x slurmd; sleep 1; {NODE_BACK}", container=node)
    _root(cluster, NODES_UP.format(n=nodes))


def test_controller_state_lost_ids_given_again(cluster: dh.DrmsCluster) -> None:
    """slurmctld restarts with its state wiped while scheduler ``a`` follows a running job, a held
    one and an ended one; scheduler ``b`` then gets the running and held jobs' ids for new jobs.
    Seen on 22.05: slurmdbd marks the running job ``CANCELLED`` (``a``'s: failed / aborted), and has
    no record of the held one (``a``'s: failed / aborted after ``undetermined_timeout``).
    ``a``'s jobs never take ``b``'s records (``a`` is not polled until ``b``'s jobs run), ``b``'s
    jobs get their own ends, the ended job keeps its own, and attach of a reused id gives the new
    job whole."""
    # a: its held job has no record once the state is lost (slurmdbd had none for it): it ends
    # failed / aborted after undetermined_timeout, made short here
    with _scheduler(cluster, undetermined_timeout=15) as a, _scheduler(cluster) as b:
        ended = submit_one(a, Job(command=["sh", "-c", "exit 3"]))
        Watch(a, ended).until_ended(120)
        old = {"running": submit_one(a, Job(command=["sleep", "600"])), "held": submit_one(a, Job(command=["true"], hold=True))}
        Watch(a, old["running"]).until(lambda s: s == C.RUNNING, 120, what="running")
        assert a.get_job_status(old["held"]) == C.USER_ON_HOLD
        _wipe_state(cluster)
        first = int(min(old.values(), key=int))
        # ids start again at 1: jobs of no one's up to the first old id, then b's get the old ids
        _root(cluster, f"runuser -u alice -- sh -c 'while [ $(sbatch --parsable -H -o /dev/null --wrap true) -lt "
                       f"{first - 1} ]; do :; done; scancel -u alice'")
        new = {name: submit_one(b, Job(command=["sh", "-c", f"sleep 3; exit {code}"])) for name, code in
               (("running", 5), ("held", 6))}
        assert new == old, (new, old)  # the same ids
        watches = {f"a {name}": Watch(a, job_id) for name, job_id in old.items()}
        watches.update({f"b {name}": Watch(b, job_id) for name, job_id in new.items()})
        ends = {}
        for name, watch in watches.items():
            watch.until_ended(timeout=180)
            ends[name] = watch.end()
        with _scheduler(cluster) as c:
            c.attach([new["running"]])
            attached = Watch(c, new["running"]).end()
        ended_end = a.get_job_exit_info(ended)
    print("\n" + "\n".join(f"{name}: {watches[name].changes} -> {end}" for name, end in ends.items()))
    print(_records(cluster, f"{old['running']},{old['held']}"))
    expected = {"a running": (C.FAILED, C.EXIT_ABORTED), "a held": (C.FAILED, C.EXIT_ABORTED),
                "b running": (C.DONE, C.FINISHED_REGULARLY, 5), "b held": (C.DONE, C.FINISHED_REGULARLY, 6)}
    wrong = {name: ends[name] for name, want in expected.items() if ends[name][:len(want)] != want}
    tally = Tally()
    tally.add(_drms(cluster), "state_lost", len(expected) + 2, len(wrong) + (attached[:3] != expected["b running"])
              + (ended_end[:2] != (C.FINISHED_REGULARLY, 3)))
    print("\n".join(tally.lines()))
    assert not wrong, wrong
    assert attached[:3] == expected["b running"], attached
    assert ended_end[:2] == (C.FINISHED_REGULARLY, 3), ended_end
