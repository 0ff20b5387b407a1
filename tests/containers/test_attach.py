"""``attach(ids)`` on real daemons: jobs submitted by one process, followed by another, killed by a
third (``tests/containers/attach_process.py``, each step a Python process of its own).

For each DRMS: one process submits ``exit 0``, ``exit 3``, a held ``sleep 300`` and a ``sleep 300``
and exits once the first two ended and the last runs; a second attaches to the four (two ended
already, one held, one running) and follows them; a third attaches to the held and the running
job and kills them (``kill_job``); the second must see the true ends (``killed_by_user``,
``aborted_before_running``), and a fourth, attaching after all ended, too; an id the DRMS never had
raises ``UnknownJobError``. Slurm (22.05, 24.11), OpenPBS, Torque and HTCondor run from the host through the
prefix bridge the pytest plugin uses for a DRMS; DRMAA (SGE, slurm-drmaa) inside the cluster, where
libdrmaa is. One cluster at a time (2 cores). Skipped with the reason when Docker, an image or its
upstream source (OpenPBS, Torque, slurm-drmaa) is missing.

Run with ``pytest -m drms tests/containers/test_attach.py -s``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from image_clusters import Clusters, one_at_a_time  # tests/containers/image_clusters.py

from soma_schedulers import constants as C
from soma_schedulers.testing import docker_harness as dh

pytestmark = pytest.mark.drms

HERE = Path(__file__).resolve().parent
STEPS = HERE / "attach_process.py"
#: cluster -> where the processes run: "host" (the prefix bridge) or "inside" (DRMAA).
CLUSTERS = {"slurm": "host", "slurm-24.11": "host", "openpbs": "host", "torque": "host", "htcondor": "host",
            "sge": "inside", "slurm-drmaa": "inside"}
UNKNOWN = "999999"


clusters = one_at_a_time()


class Steps:
    """Runs attach_process.py steps, each in a new process: on the host or in the controller."""

    def __init__(self, cluster: dh.DrmsCluster, where: str) -> None:
        self.cluster = cluster
        if where == "host":
            config = {"type": cluster.spec.scheduler_type, "prefix": cluster.command_prefix}
            self.argv = [sys.executable, str(STEPS), json.dumps(config)]
        else:
            work = cluster.make_workdir("attach-drmaa-scripts")
            config = {"type": "drmaa", "tmp_dir": work}
            self.argv = ["docker", "exec", "-i", "-u", cluster.spec.user, "-w", cluster.shared_dir,
                         "-e", f"PYTHONPATH={dh.SOURCE_MOUNT}", "-e", "PYTHONDONTWRITEBYTECODE=1", cluster.name,
                         "python3", f"{dh.SOURCE_MOUNT}/{STEPS.relative_to(HERE.parents[1])}", json.dumps(config)]

    def run(self, *args: str, check: bool = True) -> dict[str, Any]:
        proc = subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=180, check=False)
        ok = proc.returncode == 0 or (not check and proc.returncode == 1 and '{"error"' in proc.stdout)
        assert ok, f"{args[0]}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
        merged: dict[str, Any] = {}
        for report in reports(proc.stdout):
            merged.update(report)
        return merged

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.argv, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def until_recorded(cluster: dh.DrmsCluster, job_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while cluster.exec(["qacct", "-j", job_id], user=cluster.spec.user)[0] != 0:
        assert time.monotonic() < deadline, f"no accounting record of job {job_id} after {timeout:g} s"
        time.sleep(0.5)


def reports(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def next_report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(30)
        assert proc.stderr is not None
        raise AssertionError(f"the follower ended (exit {proc.returncode}): {proc.stderr.read()[-3000:]}")
    report: dict[str, Any] = json.loads(line)
    assert "error" not in report, report
    return report


def ends(report: dict[str, list[Any]], ids: list[str]) -> list[tuple[Any, ...]]:
    return [tuple(report[i][:3]) for i in ids]


DONE0 = (C.DONE, C.FINISHED_REGULARLY, 0)
DONE3 = (C.DONE, C.FINISHED_REGULARLY, 3)
KILLED = (C.FAILED, C.USER_KILLED, None)
NOT_RUN = (C.FAILED, C.EXIT_NOTRUN, None)


@pytest.mark.parametrize("name", list(CLUSTERS))
def test_jobs_of_other_processes(clusters: Clusters, name: str) -> None:
    cluster = clusters.get(name)
    steps = Steps(cluster, CLUSTERS[name])
    t0 = time.monotonic()
    ids = steps.run("submit")["ids"]
    exit0, exit3, held, sleep = ids
    if name == "sge":  # its accounting file gets a record up to flush_time (1 s here) after the end
        until_recorded(cluster, exit3)
    t_submit = time.monotonic() - t0

    follower = steps.start("follow", *ids)
    try:
        attached = next_report(follower)
        got = attached["attached"]
        assert ends(got, [exit0, exit3]) == [DONE0, DONE3], got  # ended before: from the DRMS's records
        assert got[held][0] == C.USER_ON_HOLD and got[sleep][0] == C.RUNNING, got
        t1 = time.monotonic()
        steps.run("kill", held, sleep)  # a third process
        final = next_report(follower)["ends"]
        t_end = time.monotonic() - t1
        follower.wait(30)
    finally:
        follower.kill()
    assert ends(final, ids) == [DONE0, DONE3, NOT_RUN, KILLED], final

    # a fourth process, once every job ended: ends from the DRMS's history/accounting alone
    after = steps.run("report", *ids)
    late = [i for i in ids if name == "sge" and i == held]  # SGE keeps no record of it: see below
    assert ends(after["attached"], [i for i in ids if i not in late]) == [
        e for i, e in zip(ids, [DONE0, DONE3, NOT_RUN, KILLED], strict=True) if i not in late], after
    for i in late:
        # SGE writes no accounting record for a job deleted before it ran: it is among qmaster's
        # finished jobs, and is taken as never run when still without a record 30 s after attach
        assert after["attached"][i][0] == C.UNDETERMINED, after
    kind, job_id, message = after["unknown"]
    assert (kind, job_id) == ("UnknownJobError", UNKNOWN) and f"does not know job {UNKNOWN}" in message, after
    print(f"\n{name}: submit {t_submit:.1f} s; attach of 4 jobs {attached['seconds']:.2f} s; kill by another "
          f"process -> both ends seen {t_end:.1f} s; total {time.monotonic() - t0:.1f} s; unknown id: {message}")


#: cluster -> (how to submit ``exit 3`` as the test user, how to make the DRMS forget the ended job (as
#: root; None: wait), what the error says). One each: Slurm without accounting (squeue forgets an
#: ended job MinJobAge s after its end: 30 s in the image, measured 48 s with slurmctld's purge
#: period), OpenPBS whose history of the job is purged (qdel -x), Torque with keep_completed lowered,
#: HTCondor whose history file is emptied (as root: what a rotation does to the oldest jobs).
FORGETTING = {
    "slurm-noacct": (["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "exit 3"], None, "MinJobAge"),
    "openpbs": (["sh", "-c", "echo 'exit 3' | qsub -o /dev/null -e /dev/null"], ["qdel", "-x"], "job_history"),
    "torque": (["sh", "-c", "echo 'exit 3' | qsub -o /dev/null -e /dev/null"], None, "keep_completed"),
    # the job id comes last, as $0 of sh -c: unused
    "htcondor": (["sh", "-c", r"""printf '%s\n' 'executable = /bin/sh' "arguments = \"-c 'exit 3'\"" queue """
                  r"""| condor_submit -terse - | cut -d' ' -f1"""],
                 ["sh", "-c", 'truncate -s 0 "$(condor_config_val HISTORY)"'], "MAX_HISTORY_LOG"),
}
#: Clusters whose forgetting command runs as root (the others' as the test user).
FORGET_AS_ROOT = frozenset({"htcondor"})


@pytest.mark.parametrize("name", list(FORGETTING))
def test_jobs_the_drms_forgot(clusters: Clusters, name: str) -> None:
    """Attached while the DRMS keeps it: its end; once the DRMS forgot it: UnknownJobError saying when
    this DRMS forgets ended jobs."""
    cluster = clusters.get(name)
    submit, forget, says = FORGETTING[name]
    if name == "torque":
        rc, out = cluster.exec(["qmgr", "-c", "set server keep_completed = 5"])
        assert rc == 0, out
    rc, out = cluster.exec(submit, user=cluster.spec.user, workdir=cluster.shared_dir)
    assert rc == 0, out
    job_id = out.strip().splitlines()[-1]
    steps = Steps(cluster, "host")
    t0 = time.monotonic()
    while True:
        kept = steps.run("report", job_id)["attached"][job_id]
        if kept[0] in C.END_STATES or time.monotonic() - t0 > 60:
            break
        time.sleep(0.5)
    assert tuple(kept[:3]) == DONE3, kept
    if forget is not None:
        rc, out = cluster.exec([*forget, job_id], user="root" if name in FORGET_AS_ROOT else cluster.spec.user)
        assert rc == 0, out
    t1 = time.monotonic()
    while True:
        gone = steps.run("report", job_id, check=False)
        if "error" in gone or time.monotonic() - t1 > 150:
            break
        time.sleep(2)
    kind, message = gone["error"]
    assert kind == "UnknownJobError" and f"does not know job {job_id}" in message and says in message, gone
    print(f"\n{name}: job {job_id} attached with its end, then forgotten {time.monotonic() - t1:.0f} s later: "
          f"{message}")
