"""Slurm behind libdrmaa (slurm-drmaa 1.1.6, seen on Slurm 22.05 and 24.11): its native
specification, finding a lost submission by name (``squeue --name``, ``sacct --name``) and
completing every end from Slurm's accounting (:mod:`..slurm_accounting`).

slurm-drmaa gives no resource usage (zeros), reports a time limit as SIGTERM, and assumes exit 0
for a job that ran and left slurmctld before it was polled. So an ended job also gets one ``sacct``
(for all the jobs that ended in a poll): start, usage and Slurm's end state come from the
accounting record, which the job waits for (as its last live state) at most
:data:`ACCOUNTING_GRACE` seconds; DRMAA's exit code is kept (sacct drops the high bit of an exit
code) unless it is slurm-drmaa's assumed 0. Without accounting, DRMAA's report is used alone and
there is no usage.

Job arrays (``runBulkJobs``): tasks ``<array>_<i>`` run with ``$SLURM_ARRAY_TASK_ID`` from 1
(slurm-drmaa takes ``runBulkJobs(jt, 0, 0, 0)`` for a single job). A pending task cancelled alone
vanishes from Slurm without a record while slurm-drmaa keeps reporting its last state:
:meth:`SlurmFamily.vanished` asks ``squeue -r`` about the arrays of such tasks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import ClassVar

from ... import constants as C
from ...errors import CommandError, CommandNotFoundError
from ...polled import Observation
from ...scripts import LAUNCH_ERROR_EXIT
from ..slurm_accounting import ABORTED, SacctJob, complete_lines, query_sacct, run_sacct
from .attach import SlurmAttached
from .family import Family

__all__ = ["ACCOUNTING_GRACE", "DEFAULT_MAX_ARRAY_SIZE", "SACCT_FIELDS", "SlurmFamily", "sacct_fields"]

#: Seconds an ended slurm-drmaa job waits for its Slurm accounting record (it lags 0.2-2.5 s).
ACCOUNTING_GRACE = 10.0
#: The sacct fields of an ended job.
SACCT_FIELDS = ("JobIDRaw", "State", "ExitCode", "Start", "ElapsedRaw", "TotalCPU", "MaxRSS", "NodeList")
#: Slurm's default MaxArraySize (task indices 0 to 1000).
DEFAULT_MAX_ARRAY_SIZE = 1001


def sacct_fields(ids: Sequence[str], fields: Sequence[str]) -> tuple[str, ...]:
    """``fields`` for a ``sacct`` about ``ids``: ``JobID`` first when an id is an array task's
    (``12_3``: its record's JobID; its JobIDRaw is the task's own job id)."""
    return ("JobID", *fields[1:]) if any("_" in i for i in ids) else tuple(fields)


class SlurmFamily(Family):
    """Slurm: ``--nodes``/``--partition``, jobs found by name, every end completed from ``sacct``."""

    key = "slurm"
    drms = "Slurm"
    parallel_template = "--nodes={nodes_number} --ntasks-per-node={cpu_per_node}"
    queue_template = "--partition={queue}"
    forgetting = "Slurm forgets an ended job MinJobAge seconds after its end unless it keeps accounting"
    findable = True
    attached_type: ClassVar[type[SlurmAttached]] = SlurmAttached
    task_index = "SLURM_ARRAY_TASK_ID"
    first_task = 1  # runBulkJobs(jt, 0, 0, 0) is slurm-drmaa's single job: arrays start at 1

    def job_named(self, name: str, since: float) -> str | None:
        """Slurm's job (or array: its own id) named ``name``: in the controller (``squeue``, ended
        ones for MinJobAge), else in the accounting (``sacct``; none without accounting storage)."""
        runner = self.host.runner
        live = complete_lines(runner.run(["squeue", "-h", "-t", "all", f"--name={name}", "-o", "%A"]).stdout)
        if live:
            return live[0].strip()
        hours = int((time.monotonic() - since) // 3600) + 1
        out = run_sacct(runner, (), "JobID", select=["-X", f"--name={name}", "-S", f"now-{hours}hours"])
        ended = complete_lines(out or "")
        return ended[-1].strip().partition("_")[0] if ended else None

    def max_array_size(self) -> int:
        """``MaxArraySize`` of ``scontrol show config`` less one (tasks are numbered from 1, below
        MaxArraySize); its default, 1001, when the answer cannot be read."""
        try:
            out = self.host.runner.run(["scontrol", "show", "config"]).stdout
        except CommandError as exc:
            if self.host.logger:
                self.host.logger.warning("cannot read MaxArraySize (%s): assuming %d", exc, DEFAULT_MAX_ARRAY_SIZE)
            out = ""
        found = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
        return max(0, (int(found.group(1)) if found else DEFAULT_MAX_ARRAY_SIZE) - self.first_task)

    def task_id(self, array_id: str, index: int) -> str:
        """slurm-drmaa names task ``index`` of array ``array_id`` ``<array_id>_<index>``."""
        return f"{array_id}_{index}"

    def delete_named(self, name: str) -> list[str]:
        return ["scancel", f"--name={name}"]

    def complete_ends(self, ids: Sequence[str], reaped: dict[str, Observation]) -> dict[str, Observation]:
        """Every reaped end of ``ids`` completed from ``sacct`` (slurm-drmaa's usage, zeros, is
        dropped); a job waits for its record at most :data:`ACCOUNTING_GRACE` seconds. Array tasks
        this scheduler cancelled while pending that vanished are ended too (:meth:`vanished`)."""
        ended = {i: reaped.pop(i) for i in ids if i in reaped}
        for obs in ended.values():
            obs.usage = None  # slurm-drmaa's are zeros
        result = self.accounted(ended, ACCOUNTING_GRACE, self._sacct, self._apply)
        for job_id in self.vanished([i for i in ids if i not in reaped and i not in result]):
            result[job_id] = Observation(C.DONE, ended=True, cancelled=True, started=False)
        return result

    def vanished(self, ids: Sequence[str]) -> list[str]:
        """The array tasks of ``ids`` this scheduler cancelled while pending that Slurm no longer
        lists (``squeue -r``, one call): Slurm drops such a task without a record, and slurm-drmaa
        keeps reporting its last state. A task that had started is listed (CANCELLED)."""
        host = self.host
        cancelled = [i for i in ids if "_" in i and i in host.terminated
                     and host.last_status(i) in C.WAITING_STATES]
        if not cancelled:
            return []
        arrays = sorted({i.partition("_")[0] for i in cancelled})
        try:
            out = host.runner.run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(arrays), "-o", "%i"],
                                  check=False)
        except CommandError as exc:
            if host.logger:
                host.logger.warning("cannot ask squeue about the cancelled tasks %s: %s", " ".join(cancelled), exc)
            return []
        text = out.stdout + out.stderr
        if out.returncode and "Invalid job id" not in text:
            return []  # cannot tell: the next poll asks again
        if out.returncode == 0 and out.stdout and not out.stdout.endswith("\n"):
            return []  # cut short: a task may be in the missing part
        listed = {line.strip() for line in complete_lines(out.stdout)} if out.returncode == 0 else set()
        return [i for i in cancelled if i not in listed]

    def _sacct(self, ids: list[str]) -> dict[str, SacctJob]:
        """The accounting records of the jobs among ``ids`` that are no longer live."""
        try:
            jobs = query_sacct(self.host.runner, ids, sacct_fields(ids, SACCT_FIELDS))
        except CommandNotFoundError:
            jobs = None
        self.accounting = jobs is not None
        return {i: job for i, job in (jobs or {}).items() if job["State"] and not job.live}

    def _apply(self, job_id: str, obs: Observation, job: SacctJob) -> None:
        """Start, usage and Slurm's end state from an accounting record.

        DRMAA's exit code (read from slurmctld) is kept: sacct drops the high bit of an exit
        code (``exit 143`` reads ``15:0``). It is replaced only when slurm-drmaa said exit 0
        and accounting says otherwise: slurm-drmaa assumes exit 0 for a job that ran and left
        slurmctld before it was polled. Our own kills stay cancelled.
        """
        state = job.state
        code, sig = job.exit()
        obs.started = job.started()
        if obs.started:
            obs.usage = job.usage()
        if job_id in self.host.terminated:
            return
        if state == "CANCELLED":
            obs.cancelled = True
        elif state in ABORTED:
            obs.aborted = f"Slurm ended the job: {state}"
        elif (obs.exit_code == 0 and obs.term_sig is None and not obs.cancelled
              and (state != "COMPLETED" or code or sig)):
            obs.exit_code, obs.term_sig = code, sig
            obs.launch_error = self.host.launch_error(job_id) if code == LAUNCH_ERROR_EXIT else None
