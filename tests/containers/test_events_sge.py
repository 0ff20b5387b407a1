"""SGE's own life events through DrmaaScheduler (issue 18; docs/contract.md, "Life events").

The tests are ``tests/containers/events_sge_inside.py``, run in the controller as alice (libdrmaa
exists only there, and alice has no sudo); this file starts each cluster (one at a time), runs
them, and does the root actions from here when the inside run says its jobs run (a file
handshake, see that module): ``qmod -rj`` (requeue), killing ``sge_execd`` and the job's processes
on the exec host running it, then restarting it. The settings each event needs are in
containers/sge/README.md ("Life events"). On 2 loaded cores the file takes about 2 minutes:
40 s on ``sge`` (requeue, time limit), 80 s on ``sge-cluster`` (execd lost: SGE takes about 55 s
to requeue).
"""

from __future__ import annotations

import time

import pytest
from image_clusters import Clusters, one_at_a_time  # tests/containers/image_clusters.py
from inside_run import Inside, root  # tests/containers/inside_run.py

from soma_schedulers.testing import docker_harness as dh

pytestmark = pytest.mark.drms

INSIDE = f"{dh.SOURCE_MOUNT}/tests/containers/events_sge_inside.py"

clusters = one_at_a_time()


def run_inside(cluster: dh.DrmsCluster, test: str) -> Inside:
    return Inside(cluster, test, script=INSIDE, env={"SOMA_EVENTS_DRMS": cluster.spec.name},
                  workdir_var="SOMA_EVENTS_DIR")


def test_sge_requeue_by_admin(clusters: Clusters) -> None:
    cluster = clusters.get("sge")
    run = run_inside(cluster, "test_requeue_by_admin")
    try:
        ids = run.wait_for_file("running", 180).split()
        for job_id in ids:  # qmod exits 0 when it refuses (a job not rerunnable)
            rc, out = cluster.exec(["qmod", "-rj", job_id])
            assert rc == 0 and f"rescheduling of job {job_id}" in out, out
        (run.work / "acted").write_text(f"qmod -rj {' '.join(ids)}")
    except BaseException:
        run.stop()
        raise
    run.wait(600)


def test_sge_time_limit(clusters: Clusters) -> None:
    run_inside(clusters.get("sge"), "test_time_limit_and_foreign_signal").wait(600)


#: ``max_unheard`` (an execd silent this long is unknown; default 5 min) and ``reschedule_unknown``
#: (rerunnable jobs of an unknown host are requeued after this; default 0: never), set for the
#: execd-lost test only (see containers/sge/README.md, "Life events").
SHORT_UNKNOWN = "s/^max_unheard .*/max_unheard 0:0:20/; s/^reschedule_unknown .*/reschedule_unknown 0:0:30/"
DEFAULT_UNKNOWN = "s/^max_unheard .*/max_unheard 0:5:0/; s/^reschedule_unknown .*/reschedule_unknown 0:0:0/"
KILL_EXECD = "pkill -9 -x sge_execd; pkill -9 -x sge_shepherd; pkill -9 -u alice; ! pgrep -x sge_execd"
START_EXECD = ("/usr/sbin/sge_execd; for i in $(seq 300); do qstat -f -qs u | grep -q all.q@$(hostname) || exit 0; "
               "sleep 0.2; done; exit 1")


def qconf_sed(cluster: dh.DrmsCluster, sed: str) -> None:
    root(cluster, f"SGE_SED='{sed}' EDITOR=/usr/local/bin/sge-edit qconf -mconf")


def test_sge_execd_lost(clusters: Clusters) -> None:
    cluster = clusters.get("sge-cluster")
    exec1 = next(c for c in cluster.containers if c.name.endswith("-exec1"))
    qconf_sed(cluster, SHORT_UNKNOWN)
    run = run_inside(cluster, "test_execd_lost")
    try:
        ids = run.wait_for_file("running", 180).split()
        rc, out = cluster.exec(["qstat", "-s", "r", "-u", "*"])
        on_exec1 = {line.split()[0] for line in out.splitlines() if "all.q@exec1" in line}
        assert rc == 0 and on_exec1 >= set(ids), f"the jobs {ids} do not all run on exec1:\n{out}"
        took = root(cluster, KILL_EXECD, container=exec1)
        t0 = time.monotonic()
        (run.work / "acted").write_text(f"sge_execd and jobs {' '.join(ids)} killed on exec1 in {took:.1f} s")
        run.wait_for_file("rerun-ended", 300)
        took = root(cluster, START_EXECD, container=exec1)
        (run.work / "restarted").write_text(f"sge_execd restarted {time.monotonic() - t0:.0f} s after its kill, "
                                            f"known again in {took:.1f} s")
    except BaseException:
        run.stop()
        raise
    finally:
        qconf_sed(cluster, DEFAULT_UNKNOWN)
    run.wait(600)
