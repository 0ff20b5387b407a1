"""SGE's own life events through DrmaaScheduler (issue 18): run INSIDE the cluster, not collected on the host.

``tests/containers/test_events_sge.py`` starts the cluster and runs these as alice with
``PYTHONPATH=/src`` (libdrmaa exists only there); the root actions (``qmod -rj``, killing
``sge_execd``) are the host's, through a file handshake in ``$SOMA_EVENTS_DIR`` (a directory of the
cluster's shared directory): this side writes ``running`` (the job ids, once their first run
began), the host acts and writes ``acted``.

* requeue by an administrator (cluster ``sge``): rerunnable jobs (``-r y``) of
  :func:`~soma_schedulers.testing.life_events.rerun_command`, ``qmod -rj`` while they run;
* time limit (cluster ``sge``): ``-l h_rt=0:0:5`` on a long sleep; and a job killed with SIGKILL by
  someone else (not a limit), which stays ``finished_signal``;
* sge_execd lost (cluster ``sge-cluster``): ``sge_execd`` and the job's processes killed with
  SIGKILL on the host running it; a rerunnable job and one that is not.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from soma_schedulers import Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers.drmaa.attach import parse_qacct, qacct_argv
from soma_schedulers.testing.life_events import Tally, Watch, rerun_command, runs_of

WORK = Path(os.environ.get("SOMA_EVENTS_DIR", os.getcwd()))
DRMS = os.environ.get("SOMA_EVENTS_DRMS", "sge")
TALLY = Tally()


def drmaa_scheduler() -> Any:
    from soma_schedulers.schedulers.drmaa_scheduler import DrmaaScheduler

    cfg = SchedulerConfig(options={"tmp_dir": str(WORK / "drmaa-scripts")}, status_cache_seconds=0.2,
                          undetermined_timeout=120.0)
    return DrmaaScheduler(cfg)


def submit(sched: Any, command: list[str], native: str) -> str:
    [job_id] = sched.job_submission([Job(command=command, native_specification=native)])
    assert job_id, sched.last_submission_errors
    return str(job_id)


def hand_over(ids: list[str], timeout: float = 600) -> str:
    """Tell the host the jobs run (``running``), wait until it acted (``acted``: what it did)."""
    (WORK / "running").write_text(" ".join(ids))
    return from_host("acted", timeout)


def from_host(name: str, timeout: float = 600) -> str:
    """The host's file ``name`` once it wrote it."""
    deadline = time.monotonic() + timeout
    while not (WORK / name).exists():
        assert time.monotonic() < deadline, f"the host wrote no {name} after {timeout:.0f} s"
        time.sleep(0.2)
    return (WORK / name).read_text().strip()


def watch_all(watches: list[Watch], timeout: float) -> None:
    """Poll every job until each ended (AssertionError naming the others after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    pending = list(watches)
    while pending:
        pending = [w for w in pending if w.poll() not in C.END_STATES]
        assert time.monotonic() < deadline, {w.job_id: w.changes for w in pending}
        time.sleep(0.5)


def until_running(watches: list[Watch], counters: list[Path] | None = None, timeout: float = 120) -> None:
    """Until every job runs (and its first run wrote its counter)."""
    deadline = time.monotonic() + timeout
    for n, w in enumerate(watches):
        w.until(lambda s: s == C.RUNNING, max(1.0, deadline - time.monotonic()), what="running")
        while counters and runs_of(counters[n]) < 1:
            assert time.monotonic() < deadline, f"job {w.job_id}: its first run wrote no counter"
            time.sleep(0.2)


def last_qacct(job_id: str, runs: int, timeout: float = 60) -> dict[str, str]:
    """The record the backend reads from ``qacct -j ID`` (its last), once it has one per run
    (the accounting file is written ``flush_time`` after an end, 1 s in the image)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(qacct_argv(job_id), capture_output=True, text=True, check=False).stdout
        if len(re.findall(r"^=====", out, re.MULTILINE)) >= runs or time.monotonic() > deadline:
            return {k: v for k, v in parse_qacct(out).items() if k in ("failed", "exit_status", "start_time")}
        time.sleep(1)


def report(event: str, wrong: dict[str, Any], watches: list[Watch], started: float) -> None:
    TALLY.add(DRMS, event, len(watches), len(wrong))
    print(f"\n{DRMS} {event}: {len(watches)} jobs, wrong end states {len(wrong)}, "
          f"{time.monotonic() - started:.0f} s; statuses {[w.changes for w in watches]}")
    for line in TALLY.lines():
        print(line)


def test_requeue_by_admin() -> None:
    """``qmod -rj`` (the host's) on 3 rerunnable jobs in their first run: each shows queued again,
    then runs again, and ends with its second run's exit 7; qacct's last record is that run's."""
    t0 = time.monotonic()
    sched = drmaa_scheduler()
    counters = [WORK / f"requeue-{i}.count" for i in range(3)]
    ids = [submit(sched, rerun_command(c, first_sleep=600, later_exit=7), "-r y") for c in counters]
    watches = [Watch(sched, i) for i in ids]
    until_running(watches, counters)
    # qmod -rj within about a second of a job's start is lost by execd (seen once in 3 jobs): qmaster
    # writes a rescheduling record and shows the job Rq then Rr, but its first run goes on
    time.sleep(5)
    acted = hand_over(ids)
    watch_all(watches, 300)
    wrong: dict[str, Any] = {}
    for w, counter in zip(watches, counters, strict=True):
        end = w.end()
        record = last_qacct(w.job_id, runs=2)
        if (end[:4] != (C.DONE, C.FINISHED_REGULARLY, 7, None) or not w.saw_again_after_running()
                or runs_of(counter) != 2 or w.statuses[-2:] != [C.RUNNING, C.DONE]):
            wrong[w.job_id] = (end, w.changes, runs_of(counter))
        elif record.get("failed", "").split()[:1] != ["0"] or record.get("exit_status", "").split()[:1] != ["7"]:
            wrong[w.job_id] = ("qacct's last record is not the last run's", record)
    sched.clean()
    print(f"\nhost: {acted}")
    report("requeue", wrong, watches, t0)
    assert not wrong, wrong


def test_time_limit_and_foreign_signal() -> None:
    """Two jobs over ``h_rt`` end failed/aborted naming h_rt; one killed with SIGKILL by its owner
    from outside (no limit) ends finished_signal 9."""
    t0 = time.monotonic()
    sched = drmaa_scheduler()
    limited = [submit(sched, ["sleep", "600"], "-l h_rt=0:0:5") for _ in range(2)]
    pid_file = WORK / "killed.pid"
    killed = submit(sched, ["/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 600"], "")
    watches = [Watch(sched, i) for i in [*limited, killed]]
    until_running(watches)
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the job to kill wrote no pid"
        time.sleep(0.2)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    watch_all(watches, 300)
    wrong: dict[str, Any] = {}
    for w in watches[:2]:
        end = w.end()
        if end[:2] != (C.FAILED, C.EXIT_ABORTED) or "h_rt" not in str(end[4]):
            wrong[w.job_id] = (end, w.changes)
    end = watches[2].end()
    if end[:4] != (C.DONE, C.FINISHED_TERM_SIG, None, 9):
        wrong[killed] = (end, watches[2].changes)
    sched.clean()
    report("time-limit", wrong, watches, t0)
    assert not wrong, wrong


def test_execd_lost() -> None:
    """The host kills ``sge_execd`` and the jobs' processes on exec1, where a rerunnable job (run on
    exec1 if it can: ``-soft``) and a non-rerunnable one run. SGE marks the host unknown after
    ``max_unheard`` and requeues the rerunnable job after ``reschedule_unknown``: its rerun's end
    (exit 7). The other stays ``running`` (SGE says ``r``) until the host restarts the execd, then
    ends ``failed``/``aborted`` with SGE's reason (``failed 19 : before writing exit_status``)."""
    t0 = time.monotonic()
    sched = drmaa_scheduler()
    counter = WORK / "lost.count"
    rerun = submit(sched, rerun_command(counter, first_sleep=600, later_exit=7), "-r y -soft -l hostname=exec1")
    stays = submit(sched, ["sleep", "600"], "-r n -l hostname=exec1")
    watches = [Watch(sched, rerun), Watch(sched, stays)]
    until_running(watches, [counter, counter])
    acted = hand_over([rerun, stays])
    watches[0].until_ended(300)
    second = watches[1].poll()
    (WORK / "rerun-ended").write_text(second)
    watch_all(watches[1:], 300)
    wrong: dict[str, Any] = {}
    end = watches[0].end()
    if end[:4] != (C.DONE, C.FINISHED_REGULARLY, 7, None) or runs_of(counter) != 2 or not (
            watches[0].saw_again_after_running()):
        wrong[rerun] = (end, watches[0].changes, runs_of(counter))
    end = watches[1].end()
    if end[:2] != (C.FAILED, C.EXIT_ABORTED) or "failed 19" not in str(end[4]) or second != C.RUNNING:
        wrong[stays] = (end, watches[1].changes)
    sched.clean()
    print(f"\nhost: {acted}; {from_host('restarted')}")
    report("execd-lost", wrong, watches, t0)
    assert not wrong, wrong
