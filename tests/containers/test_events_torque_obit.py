"""Torque's MOM loses the end of a job's stage-out: the job still ends ``done`` with its own code.

The torque-cluster stall of issue 18 (docs/pbs.md): a MOM sends a job's obit only when it reaps
the stage-out child it forked (``ji_momsubt``); one run in about 40 of 100 quick jobs never got
that match, and the job stayed ``R``. Torque sends the stage-out and obit again for a job still
exiting ``$prologalarm`` seconds later (``check_exiting_jobs``); the image sets it to 30 s (300 by
default; containers/torque/README.md). Made to happen on demand here: the job stages a file out
to a FIFO on the MOMs (``qsub -W stageout=``), so the stage-out child blocks in ``cp``; the FIFO
is then removed, so only a second stage-out can end the job.

Torque builds from its upstream source: without it this test skips, saying so.
"""

from __future__ import annotations

import time
import uuid

import pytest
from image_clusters import module_clusters  # tests/containers/image_clusters.py

from soma_schedulers import BridgeConfig, Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers import pbspro_scheduler as pbs
from soma_schedulers.testing import docker_harness as dh
from soma_schedulers.testing.life_events import Tally, Watch

pytestmark = pytest.mark.drms

cluster = module_clusters("torque-cluster")

#: The image's $prologalarm: the MOM's second try comes this long after the job's exit processing.
PROLOGALARM = 30.0


def _moms(c: dh.DrmsCluster) -> list[object]:
    return [ctr for ctr in c.containers if ctr is not c.controller]


def _stageout_on_a_mom(c: dh.DrmsCluster, job_id: str) -> bool:
    return any(f"job[{job_id}]  state=STAGEOUT" in c.exec(["momctl", "-d", "3"], container=m)[1] for m in _moms(c))


def test_a_lost_stageout_child_still_ends_done_with_its_code(cluster: dh.DrmsCluster) -> None:
    fifo = f"/tmp/soma-lost-stageout-{uuid.uuid4().hex[:8]}"
    for mom in _moms(cluster):
        cluster.exec(["mkfifo", fifo], user="alice", container=mom)
    sched = pbs.TorqueScheduler(SchedulerConfig(bridge=BridgeConfig(mode="prefix", prefix=tuple(cluster.command_prefix))))
    tally = Tally()
    try:
        # a stage-out of a file the job writes to the FIFO: the backend's own -o/-e are /dev/null
        src = f"{fifo}.src"
        job = Job(command=["/bin/sh", "-c", f"echo out > {src}; exit 5"],
                  native_specification=f"-W stageout={src}@torqueserver:{fifo}")
        [job_id] = sched.job_submission([job])
        assert job_id is not None, sched.last_submission_errors
        watch = Watch(sched, job_id)
        deadline = time.monotonic() + 60
        while not _stageout_on_a_mom(cluster, job_id):  # its stage-out child is blocked in cp
            assert time.monotonic() < deadline, f"job {job_id} never reached STAGEOUT; statuses {watch.changes}"
            watch.poll()
            time.sleep(0.5)
        blocked_at = time.monotonic()
        for mom in _moms(cluster):  # that child never ends now; only a second stage-out can
            cluster.exec(["rm", "-f", fifo], container=mom)
        watch.until_ended(timeout=PROLOGALARM + 60)
        took = time.monotonic() - blocked_at
        status, exit_status, value, sig, reason = watch.end()
        print(f"job {job_id}: {watch.changes}, ended {took:.1f} s after its stage-out child blocked; "
              f"{status} {exit_status} {value} {sig} {reason!r}")
        wrong = (status, exit_status, value, sig) != (C.DONE, C.FINISHED_REGULARLY, 5, None)
        tally.add("torque-cluster", "stage-out child lost (obit sent again)", 1, int(wrong))
        assert not wrong, (status, exit_status, value, sig, reason)
        assert took > PROLOGALARM - 10, f"ended {took:.1f} s after the block: the event did not happen"
    finally:
        for line in tally.lines():
            print(line)
        sched.clean()
