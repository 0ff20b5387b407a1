"""Grid Engine (SGE 8.1.9) behind libdrmaa: its native specification, finding a lost submission
by name (``qstat -j``, ``qacct -j``) and completing doubtful ends from its accounting file.

After an ``sge_qmaster`` restart libdrmaa reports every job whose end it missed as aborted, and
``wait`` can keep failing for a job once its event client is gone (``qconf -kec``): such ends are
completed from ``qacct -j ID``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

from ...errors import CommandError, CommandNotFoundError
from ...polled import Observation
from ...scripts import LAUNCH_ERROR_EXIT
from .attach import SgeAttached, end_record, qacct_argv
from .family import Family

__all__ = ["SGE_ACCOUNTING_EVERY", "SGE_ACCOUNTING_GRACE", "SGE_ACCOUNTING_SETTLE", "SGE_MAX_AJ_TASKS",
           "SGE_WAIT_FALLBACK", "SgeFamily", "apply_qacct"]

#: Seconds after ``runJob`` by which SGE has the accounting record of a job that ended at once.
SGE_ACCOUNTING_SETTLE = 3.0
#: Seconds an SGE job that DRMAA calls aborted waits for its accounting record (``qacct``). After
#: an ``sge_qmaster`` restart libdrmaa reports the jobs whose end it missed as aborted, and their
#: ends reach the accounting file 30 to 60 s after qmaster is back.
SGE_ACCOUNTING_GRACE = 180.0
#: Seconds an SGE job that DRMAA calls ended may keep failing ``wait`` before its end is taken
#: from the accounting file instead (libdrmaa's event client can be gone for good: ``qconf -kec``).
SGE_WAIT_FALLBACK = 10.0
#: Seconds between two ``qacct`` asks about the same waiting jobs.
SGE_ACCOUNTING_EVERY = 2.0
#: SGE's default ``max_aj_tasks`` (tasks per array), used when ``qconf -sconf`` cannot be read.
SGE_MAX_AJ_TASKS = 75000

_JOB_NUMBER = re.compile(r"^job_number:\s+(\d+)\s*$", re.MULTILINE)
_ACCT_NUMBER = re.compile(r"^jobnumber\s+(\d+)\s*$", re.MULTILINE)
#: qacct's ``failed`` code of a job that died of a signal SGE did not send (``assumedly after job``)
_SIGNALLED = "100"


def apply_qacct(job_id: str, obs: Observation, record: Mapping[str, str]) -> None:
    """Complete a doubtful SGE end from its accounting record: a job that ran and ended by itself
    (``failed 0``) gets its exit code (129-192: death by signal ``code - 128``, the shell's
    convention); a job DRMAA saw die of a signal keeps it when SGE did not send it (``failed 100 :
    assumedly after job``: from elsewhere), else SGE's reason makes it aborted (``failed 37 :
    qmaster enforced h_rt, h_cpu, or h_vmem limit``); any other end stays aborted, with SGE's reason."""
    failed = record.get("failed", "").split(":")[0].strip()
    if failed == _SIGNALLED and obs.term_sig is not None and not (obs.cancelled or obs.aborted):
        return
    code_text = record.get("exit_status", "").split()[0] if record.get("exit_status") else ""
    if failed == "0" and code_text.isdigit():
        code = int(code_text)
        obs.cancelled, obs.aborted, obs.started = False, None, True
        if 128 < code <= 192:
            obs.exit_code, obs.term_sig = None, code - 128
        else:
            obs.exit_code, obs.term_sig = code, None
        return
    if failed:
        obs.aborted = f"SGE accounting: failed {record['failed']}"


class SgeFamily(Family):
    """SGE: parallel environments (``-pe``), jobs found by name, doubtful ends from ``qacct``."""

    key = "sge"
    drms = "SGE"
    parallel_template = "-pe {config_name} {max_node}"
    queue_template = "-q {queue}"
    forgetting = ("SGE's accounting keeps every job that ran; one deleted before it ran is only listed among the "
                  "finished jobs, qstat -s z, the last finished_jobs ones")
    findable = True
    attached_type: ClassVar[type[SgeAttached]] = SgeAttached
    task_index = "SGE_TASK_ID"
    first_task = 1  # qsub -t 1-N: SGE numbers tasks from 1
    _qacct_at = float("-inf")

    def max_array_size(self) -> int:
        """``max_aj_tasks`` of ``qconf -sconf`` (0 there: no limit), its default when unreadable."""
        try:
            out = self.host.runner.run(["qconf", "-sconf"]).stdout
        except CommandError as exc:
            if self.host.logger:
                self.host.logger.warning("cannot read max_aj_tasks (%s): assuming %d", exc, SGE_MAX_AJ_TASKS)
            return SGE_MAX_AJ_TASKS
        found = re.search(r"^max_aj_tasks\s+(\d+)", out, re.M)
        limit = int(found.group(1)) if found else SGE_MAX_AJ_TASKS
        return limit or SGE_MAX_AJ_TASKS

    def task_id(self, array_id: str, index: int) -> str:
        """SGE's DRMAA names task ``index`` of job ``array_id`` ``<array_id>.<index>``."""
        return f"{array_id}.{index}"

    def job_named(self, name: str, since: float) -> str | None:
        """SGE's job named ``name``: live (``qstat -j``), else ended (``qacct -j``)."""
        live = self._ask(["qstat", "-j", name], _JOB_NUMBER, "do not exist")
        if live is not None:
            return live
        # Not in qmaster: never submitted, or ended already; an end is in the
        # accounting file about a second later.
        settle = SGE_ACCOUNTING_SETTLE - (time.monotonic() - since)
        if settle > 0 and time.monotonic() - since > 0.5:
            time.sleep(settle)
        return self._ask(["qacct", "-j", name], _ACCT_NUMBER, "not found", "accounting: No such file")

    def delete_named(self, name: str) -> list[str]:
        return ["qdel", name]

    def _ask(self, argv: list[str], found: re.Pattern[str], *absent: str) -> str | None:
        """The job number an SGE command prints, None when it says one of ``absent`` (qacct before any
        job ended: no accounting file yet); CommandError otherwise."""
        result = self.host.runner.run(argv, check=False)
        text = f"{result.stdout}\n{result.stderr}"
        match = found.search(result.stdout) if result.returncode == 0 else None
        if match:
            return match.group(1)
        if any(words in text for words in absent):
            return None
        raise CommandError(argv, result.returncode, result.stderr, result.stdout)

    def ended_without_wait(self, job_id: str, failing_since: float) -> bool:
        """After :data:`SGE_WAIT_FALLBACK` seconds of failing ``wait``, when qmaster answers that it
        no longer has the job (``qstat -j ID``)."""
        if time.monotonic() - failing_since < SGE_WAIT_FALLBACK:
            return False
        try:
            return self._ask(["qstat", "-j", job_id], _JOB_NUMBER, "do not exist") is None
        except CommandError:
            return False

    def complete_ends(self, ids: Sequence[str], reaped: dict[str, Observation]) -> dict[str, Observation]:
        """The doubtful ends (DRMAA calls them aborted, or gives no exit code, or a signal, for a job
        this scheduler did not kill) completed from ``qacct -j ID``, asked every few seconds, at most
        :data:`SGE_ACCOUNTING_GRACE` seconds (the job keeps its last live state meanwhile). A signal:
        libdrmaa says SIGKILL of a job SGE ended at its time limit (``h_rt``) too; only qacct's
        ``failed`` tells it from a signal sent from elsewhere."""
        terminated = self.host.terminated
        doubtful = {i: reaped.pop(i) for i in ids if i in reaped and i not in terminated
                    and (reaped[i].cancelled or reaped[i].aborted is not None or reaped[i].term_sig is not None)}
        if doubtful and self.host.logger:
            self.host.logger.warning("DRMAA says jobs %s were aborted or signalled: asking SGE's accounting",
                                     " ".join(sorted(doubtful)))
        return self.accounted(doubtful, SGE_ACCOUNTING_GRACE, self._qacct, self._apply)

    def _apply(self, job_id: str, obs: Observation, record: Mapping[str, str]) -> None:
        apply_qacct(job_id, obs, record)
        if obs.exit_code == LAUNCH_ERROR_EXIT:
            obs.launch_error = self.host.launch_error(job_id)

    def _qacct(self, ids: list[str]) -> dict[str, dict[str, str]]:
        """The accounting records of ``ids`` that SGE has written (one ``qacct -j`` each)."""
        now = time.monotonic()
        if now - self._qacct_at < SGE_ACCOUNTING_EVERY:
            return {}
        self._qacct_at = now
        records: dict[str, dict[str, str]] = {}
        for job_id in ids:
            try:
                result = self.host.runner.run(qacct_argv(job_id), check=False)
            except CommandNotFoundError:
                self.accounting = False
                return {}
            except CommandError as exc:
                if self.host.logger:
                    self.host.logger.warning("qacct -j %s: %s", job_id, exc)
                continue
            record = end_record(result.stdout, job_id) if result.returncode == 0 else None
            if record is not None:
                records[job_id] = record
        return records
