"""Tools for the tests of the DRMS's own life events (issue 18; docs/contract.md, "Life events").

A life event is something the batch system does to a job on its own: it requeues or preempts it,
ends it at its time limit, loses the node it ran on, or forgets it with its whole state. The tests
make each event happen on demand in the real daemons (tests/containers/test_events_*.py) and check
the end state the contract gives. What they share is here:

* :func:`rerun_command`: a job that knows which run it is in (a counter file it increments), sleeps
  through its first run (so the event can hit it while it runs) and exits with a chosen code from
  its second run on, so "the end is the last run's" can be told from "the first run's";
* :class:`Watch`: one job's statuses as they changed, polled until it ends, with the exit info, the
  DRMS's reason (``get_job_error``) and how long the job stayed ``undetermined``;
* :class:`Tally`: the events x DRMS counts (jobs, wrong end states) printed for the README.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import constants as C
from ..job import Job
from ..scheduler import Scheduler

__all__ = ["RERUN_SCRIPT", "Tally", "Watch", "rerun_command", "runs_of", "submit_one"]

logger = logging.getLogger(__name__)

#: ``sh -c`` text of :func:`rerun_command`: $1 the counter file, $2 the first run's sleep, $3 the
#: later runs' exit code. The counter is written before the sleep, so a test can wait for it.
RERUN_SCRIPT = ('n=$(cat "$1" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$1"; '
                'if [ "$n" -gt 1 ]; then exit "$3"; fi; sleep "$2"; exit 0')


def rerun_command(counter: str | Path, first_sleep: int = 600, later_exit: int = 7) -> list[str]:
    """The argv of a job whose first run writes 1 to ``counter`` and sleeps ``first_sleep`` s (then
    exits 0), and whose later runs write their number and exit ``later_exit`` at once."""
    return ["/bin/sh", "-c", RERUN_SCRIPT, "sh", str(counter), str(first_sleep), str(later_exit)]


def runs_of(counter: str | Path) -> int:
    """How many runs of a :func:`rerun_command` job began (0 when none did yet)."""
    try:
        return int(Path(counter).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def submit_one(scheduler: Scheduler, job: Job) -> str:
    """Submit ``job`` alone and return its id (AssertionError with the DRMS's reason if refused)."""
    [job_id] = scheduler.job_submission([job])
    assert job_id is not None, getattr(scheduler, "last_submission_errors", None)
    return job_id


@dataclass
class Watch:
    """One job's statuses, in the order they changed, polled through ``scheduler``."""

    scheduler: Scheduler
    job_id: str
    #: Each status change: (seconds since the watch began, status).
    changes: list[tuple[float, str]] = field(default_factory=list)
    #: The longest stretch (s) the job stayed ``undetermined``.
    longest_undetermined: float = 0.0
    _start: float = field(default_factory=time.monotonic)
    _undetermined_since: float | None = None

    @property
    def statuses(self) -> list[str]:
        """The statuses in the order they were seen (each change once)."""
        return [s for _, s in self.changes]

    @property
    def last(self) -> str | None:
        """The last status seen, None before the first poll."""
        return self.changes[-1][1] if self.changes else None

    def poll(self) -> str:
        """Ask once; record a change; return the status."""
        status = self.scheduler.get_job_status(self.job_id)
        now = time.monotonic()
        if status != self.last:
            self.changes.append((round(now - self._start, 1), status))
            logger.info("job %s: %s", self.job_id, status)
        if status == C.UNDETERMINED:
            self._undetermined_since = self._undetermined_since or now
            self.longest_undetermined = max(self.longest_undetermined, now - self._undetermined_since)
        else:
            self._undetermined_since = None
        return status

    def until(self, condition: Callable[[str], bool], timeout: float, poll: float = 0.5, what: str = "") -> str:
        """Poll until ``condition(status)`` holds; AssertionError naming ``what`` and the statuses
        seen after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.poll()
            if condition(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"job {self.job_id}: not {what or 'as expected'} after {timeout:.0f} s; "
                                     f"statuses seen {self.changes}")
            time.sleep(poll)

    def until_ended(self, timeout: float, poll: float = 0.5) -> str:
        """Poll until the job is in an end state; return it."""
        return self.until(lambda s: s in C.END_STATES, timeout, poll, what="ended")

    def end(self) -> tuple[str, str | None, int | None, int | None, str | None]:
        """(status, exit status, exit value, signal, the DRMS's reason) as the scheduler gives them."""
        exit_status, value, sig, _usage = self.scheduler.get_job_exit_info(self.job_id)
        get_error = getattr(self.scheduler, "get_job_error", None)  # not in the abstract API
        return (self.scheduler.get_job_status(self.job_id), exit_status, value, sig,
                get_error(self.job_id) if get_error is not None else None)

    def saw_again_after_running(self, status: str = C.QUEUED_ACTIVE) -> bool:
        """Whether ``status`` was seen after ``running`` (a requeued job shows queued again)."""
        seen = self.statuses
        return C.RUNNING in seen and status in seen[seen.index(C.RUNNING) + 1:]


@dataclass
class Tally:
    """Events x DRMS counts of one test run: jobs, and jobs that ended in a wrong state."""

    rows: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def add(self, drms: str, event: str, jobs: int, wrong: int) -> None:
        """Count ``jobs`` jobs of ``event`` on ``drms``, ``wrong`` of them with a wrong end state."""
        row = self.rows.setdefault((drms, event), [0, 0])
        row[0] += jobs
        row[1] += wrong

    def lines(self) -> list[str]:
        """One ``LIFE-EVENT drms=... event=... jobs=N wrong=M`` line per row (grep-able in CI logs)."""
        return [f"LIFE-EVENT drms={d} event={e} jobs={n} wrong={w}" for (d, e), (n, w) in sorted(self.rows.items())]
