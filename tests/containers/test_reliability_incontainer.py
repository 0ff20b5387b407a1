"""Reliability of the DRMAA (SGE 8.1.9, slurm-drmaa) and MPI backends, which run inside their clusters (issue 8).

The tests themselves are ``tests/containers/reliability_inside.py``, run in the controller as
alice with ``PYTHONPATH=/src`` (libdrmaa and mpi4py exist only there); this file starts each
cluster (one at a time), runs them, restarts the SGE daemons at the right moment (as root, from
here), and fails with the inside run's output when it fails:

* 200 jobs through DrmaaScheduler while 20 % of the DRMAA calls fail, hang or lose their answer;
* 50 jobs in flight while ``sge_qmaster``, then ``sge_execd``, restart;
* 2,000 jobs from 8 threads through DrmaaScheduler on SGE and through MPIScheduler (3 ranks);
* the 200 jobs under DRMAA faults again on slurm-drmaa, where its source is (it skips otherwise).

``SOMA_RELIABILITY_JOBS`` (200), ``SOMA_LOAD_JOBS`` (2000) and ``SOMA_SGE_LOAD_JOBS`` (default: the
same) change the counts. On 2 cores the file takes about 5 minutes, 3 of them the 2,000 SGE jobs.
"""

from __future__ import annotations

import time

import pytest
from image_clusters import Clusters, one_at_a_time  # tests/containers/image_clusters.py
from inside_run import Inside, root  # tests/containers/inside_run.py

pytestmark = pytest.mark.drms

#: Root shell commands restarting the SGE daemons of the all-in-one container (host "sge") the way
#: an administrator does: the queue is disabled first (running jobs go on, queued ones wait) and no
#: job is being delivered (state t): SGE 8.1.9 leaves a job whose delivery a daemon restart cut in
#: state t for good (seen here, twice). Then sge_qmaster restarts (qconf -km) and the execd
#: registers again (its queue leaves state u, about 30 s), then sge_execd restarts (SIGTERM: its jobs
#: go on; the ends of those that finished meanwhile reach qmaster up to about a minute later), and
#: the queue is enabled again.
_UNTIL = "for i in $(seq {n}); do {cond} && break; sleep 0.2; done; {cond} || exit 1"
_NO_DELIVERY = "! qstat -u '*' -s r | awk 'NR > 2 && $5 ~ /t/' | grep -q ."
_EXECD_KNOWN = "! qstat -f -qs u | grep -q 'all.q@'"
RESTART_QMASTER = "; ".join([
    "set -e", "qmod -d all.q", _UNTIL.format(n=300, cond=_NO_DELIVERY), "qconf -km",
    _UNTIL.format(n=100, cond="! pgrep -x sge_qmaster >/dev/null"), "sleep 3", "/usr/sbin/sge_qmaster",
    _UNTIL.format(n=300, cond="qstat >/dev/null 2>&1"), _UNTIL.format(n=600, cond=_EXECD_KNOWN)])
RESTART_EXECD = "; ".join([
    "set -e", "pkill -x sge_execd", _UNTIL.format(n=100, cond="! pgrep -x sge_execd >/dev/null"), "sleep 2",
    "/usr/sbin/sge_execd", "sleep 5", _UNTIL.format(n=600, cond=_EXECD_KNOWN), "qmod -e all.q"])


clusters = one_at_a_time()


def test_sge_200_jobs_under_20_percent_drmaa_faults(clusters: Clusters) -> None:
    Inside(clusters.get("sge"), "test_sge_200_jobs_under_20_percent_drmaa_faults").wait(900)


def test_sge_daemon_restarts_with_50_jobs_in_flight(clusters: Clusters) -> None:
    cluster = clusters.get("sge")
    run = Inside(cluster, "test_sge_daemon_restarts_with_50_jobs_in_flight")
    try:
        run.wait_for_file("submitted", 120)
        time.sleep(1.0)  # some jobs running, the others queued
        qmaster = root(cluster, RESTART_QMASTER)
        execd = root(cluster, RESTART_EXECD)
        (run.work / "restarted").write_text(f"sge_qmaster down and up again in {qmaster:.1f} s, "
                                            f"then sge_execd in {execd:.1f} s")
    except BaseException:
        run.stop()
        raise
    run.wait(600)


def test_sge_load_2000_jobs_8_threads(clusters: Clusters) -> None:
    Inside(clusters.get("sge"), "test_sge_load_2000_jobs_8_threads").wait(1800)


def test_mpi_load_2000_jobs_8_threads(clusters: Clusters) -> None:
    Inside(clusters.get("mpi"), "test_mpi_load_2000_jobs_8_threads", mpi=True).wait(1800)


def test_slurm_drmaa_200_jobs_under_20_percent_drmaa_faults(clusters: Clusters) -> None:
    """slurm-drmaa builds from its upstream source: without it this test skips, saying so."""
    Inside(clusters.get("slurm-drmaa"), "test_slurm_drmaa_200_jobs_under_20_percent_drmaa_faults").wait(900)
