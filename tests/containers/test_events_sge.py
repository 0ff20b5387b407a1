"""SGE's own life events through DrmaaScheduler (issue 18; docs/contract.md, "Life events").

The tests are ``tests/containers/events_sge_inside.py``, run in the controller as alice (libdrmaa
exists only there, and alice has no sudo); this file starts each cluster (one at a time), runs
them, and does the root actions from here when the inside run says its jobs run (a file
handshake, see that module): ``qmod -rj`` (requeue), killing ``sge_execd`` and the job's processes
on the exec host running it, then restarting it. The settings each event needs are in
containers/sge/README.md ("Life events").
"""

from __future__ import annotations

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
        took = root(cluster, "; ".join(["set -e", *(f"qmod -rj {i}" for i in ids)]))
        (run.work / "acted").write_text(f"qmod -rj {' '.join(ids)} in {took:.1f} s")
    except BaseException:
        run.stop()
        raise
    run.wait(600)


def test_sge_time_limit(clusters: Clusters) -> None:
    run_inside(clusters.get("sge"), "test_time_limit_and_foreign_signal").wait(600)

