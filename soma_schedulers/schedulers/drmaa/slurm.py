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
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from ...errors import CommandNotFoundError
from ...polled import Observation
from ...scripts import LAUNCH_ERROR_EXIT
from ..slurm_accounting import ABORTED, SacctJob, complete_lines, query_sacct, run_sacct
from .attach import SlurmAttached
from .family import Family

__all__ = ["ACCOUNTING_GRACE", "SACCT_FIELDS", "SlurmFamily"]

#: Seconds an ended slurm-drmaa job waits for its Slurm accounting record (it lags 0.2-2.5 s).
ACCOUNTING_GRACE = 10.0
#: The sacct fields of an ended job.
SACCT_FIELDS = ("JobIDRaw", "State", "ExitCode", "Start", "ElapsedRaw", "TotalCPU", "MaxRSS", "NodeList")


class SlurmFamily(Family):
    """Slurm: ``--nodes``/``--partition``, jobs found by name, every end completed from ``sacct``."""

    key = "slurm"
    drms = "Slurm"
    parallel_template = "--nodes={nodes_number} --ntasks-per-node={cpu_per_node}"
    queue_template = "--partition={queue}"
    forgetting = "Slurm forgets an ended job MinJobAge seconds after its end unless it keeps accounting"
    findable = True
    attached_type: ClassVar[type[SlurmAttached]] = SlurmAttached

    def job_named(self, name: str, since: float) -> str | None:
        """Slurm's job named ``name``: in the controller (``squeue``, ended ones for MinJobAge), else
        in the accounting (``sacct``; none without accounting storage)."""
        runner = self.host.runner
        live = complete_lines(runner.run(["squeue", "-h", "-t", "all", f"--name={name}", "-o", "%i"]).stdout)
        if live:
            return live[0].strip()
        hours = int((time.monotonic() - since) // 3600) + 1
        out = run_sacct(runner, (), "JobIDRaw", select=["-X", f"--name={name}", "-S", f"now-{hours}hours"])
        ended = complete_lines(out or "")
        return ended[-1].strip() if ended else None

    def delete_named(self, name: str) -> list[str]:
        return ["scancel", f"--name={name}"]

    def complete_ends(self, ids: Sequence[str], reaped: dict[str, Observation]) -> dict[str, Observation]:
        """Every reaped end of ``ids`` completed from ``sacct`` (slurm-drmaa's usage, zeros, is
        dropped); a job waits for its record at most :data:`ACCOUNTING_GRACE` seconds."""
        ended = {i: reaped.pop(i) for i in ids if i in reaped}
        for obs in ended.values():
            obs.usage = None  # slurm-drmaa's are zeros
        return self.accounted(ended, ACCOUNTING_GRACE, self._sacct, self._apply)

    def _sacct(self, ids: list[str]) -> dict[str, SacctJob]:
        """The accounting records of the jobs among ``ids`` that are no longer live."""
        try:
            jobs = query_sacct(self.host.runner, ids, SACCT_FIELDS)
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
