"""One process of tests/containers/test_attach.py: it builds its own scheduler, does one step
and prints one JSON line per report, so that every step runs in a process of its own::

    python attach_process.py CONFIG submit           # the 4 jobs; prints their ids once 2 ended, 1 runs
    python attach_process.py CONFIG follow IDS...    # attach; report; wait for the ends; report
    python attach_process.py CONFIG kill IDS...      # attach, then kill_job each
    python attach_process.py CONFIG report IDS...    # attach; report at once (and try an unknown id)

CONFIG is JSON: ``{"type": "slurm", "prefix": [...]}`` (the prefix bridge the pytest plugin uses
for a DRMS) or ``{"type": "drmaa", "tmp_dir": ...}`` (inside the cluster, where libdrmaa is).
A report is ``{id: [status, exit_status, exit_value, term_sig, error]}``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from soma_schedulers import BridgeConfig, Job, SchedulerConfig, build_scheduler
from soma_schedulers import constants as C
from soma_schedulers.errors import DRMError, UnknownJobError
from soma_schedulers.scheduler import Scheduler

#: The job the DRMS never had (an id none of the test clusters reaches).
UNKNOWN_ID = "999999"
WAIT = 90.0


def scheduler(config: dict[str, Any]) -> Scheduler:
    if config["type"] == "drmaa":
        return build_scheduler("drmaa", SchedulerConfig(status_cache_seconds=0.5, options={"tmp_dir": config["tmp_dir"]}))
    bridge = BridgeConfig(mode="prefix", prefix=tuple(config["prefix"]), shells=True)
    return build_scheduler(config["type"], SchedulerConfig(bridge=bridge, status_cache_seconds=0.5))


def report(sched: Scheduler, ids: list[str]) -> dict[str, list[Any]]:
    statuses = sched.get_jobs_status(ids)
    error = getattr(sched, "get_job_error", lambda _id: None)
    return {i: [statuses[i], *sched.get_job_exit_info(i)[:3], error(i)] for i in ids}


def say(**items: Any) -> None:
    print(json.dumps(items), flush=True)


def wait(sched: Scheduler, ids: list[str], until: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not until(sched.get_jobs_status(ids)) and time.monotonic() < deadline:
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    config, step, ids = json.loads(argv[0]), argv[1], argv[2:]
    sched = scheduler(config)
    try:
        if step == "submit":
            jobs = [Job(command=["sh", "-c", "exit 0"], name="exit0"), Job(command=["sh", "-c", "exit 3"], name="exit3"),
                    Job(command=["sleep", "300"], name="held", hold=True), Job(command=["sleep", "300"], name="sleep")]
            ids = [str(i) for i in sched.job_submission(jobs)]
            assert "None" not in ids, getattr(sched, "last_submission_errors", None)
            wait(sched, ids, lambda s: s[ids[0]] in C.END_STATES and s[ids[1]] in C.END_STATES and s[ids[3]] == C.RUNNING)
            say(ids=ids, report=report(sched, ids))
        elif step in ("follow", "report"):
            t0 = time.monotonic()
            sched.attach(ids)
            say(attached=report(sched, ids), seconds=round(time.monotonic() - t0, 3))
            if step == "follow":
                wait(sched, ids, lambda s: all(v in C.END_STATES for v in s.values()))
                say(ends=report(sched, ids))
            else:
                try:
                    sched.attach([UNKNOWN_ID])
                    say(unknown=None)
                except UnknownJobError as exc:
                    say(unknown=[type(exc).__name__, exc.job_id, str(exc)])
        elif step == "kill":
            sched.attach(ids)
            for job_id in ids:
                sched.kill_job(job_id)
            say(killed=ids)
        else:
            raise SystemExit(f"unknown step {step!r}")
    except DRMError as exc:
        say(error=[type(exc).__name__, str(exc)])
        return 1
    finally:
        sched.clean()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
