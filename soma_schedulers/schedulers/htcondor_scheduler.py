"""HTCondor through its command-line tools (type ``htcondor``, alias ``condor``).

Submission: ``condor_submit -terse -`` with the submit description on stdin. The job's command is
``/bin/sh -c`` decoding the job script of :func:`~soma_schedulers.scripts.build_script`, which
travels base64 in the job's environment: nothing is written to disk, and no byte of the job's argv,
paths or environment meets HTCondor's argument quoting (:data:`.htcondor_ads.RUNNER`). A token in
the job's ``+SomaToken`` attribute finds a submission whose answer was lost (``condor_q
-constraint``). Bulk: one ``condor_submit`` of a list of different jobs (``queue SomaJob,SomaName
from (...)``, one row per job), ids ``Cluster.Proc``.

Polling: one ``condor_q -json`` for every unfinished job, plus one ``condor_history -json`` for
those no longer in the queue. Cancelling: ``condor_rm``. A job script that cannot start its
command sets ``SomaLaunchError`` with ``condor_chirp`` (the job has ``+WantIOProxy``) and exits 127,
so launch errors are reported as ``aborted`` rather than as the program's exit code.

Life events (containers/htcondor/README.md, "Life events"): a vacated or evicted job is
``queued_active`` again and ends as its last run; a job HTCondor holds (``allowed_job_duration``
holds, it does not remove) is ``system_on_hold`` until released or removed; a job a policy removes
(``periodic_remove``) is ``aborted`` with its ``RemoveReason`` and, when HTCondor held it first, the
hold's reason (``LastHoldReason``: the limit it exceeded).
"""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

from .. import constants as C
from ..batch import CommandLineScheduler, Observation
from ..config import SchedulerConfig
from ..errors import CommandError, SubmissionError
from ..job import Job
from ..scripts import build_script
from .htcondor_ads import (
    ATTRIBUTES,
    LAUNCH_ATTR,
    TOKEN_ATTR,
    ad_id,
    encode_script,
    job_id_of,
    observation,
    parse_ads,
    safe_name,
    started,
    submit_header,
)

__all__ = ["DEFAULT_MAX_BULK", "HTCondorScheduler"]

#: Jobs per ``condor_submit`` of a bulk submission (option ``max_bulk``).
DEFAULT_MAX_BULK = 1000
#: Where Debian (and HTCondor's own packages) install ``condor_chirp``.
CHIRP = "/usr/libexec/condor/condor_chirp"
_ID = re.compile(r"\d+\.\d+")


class HTCondorScheduler(CommandLineScheduler):
    """Submit and follow jobs with ``condor_submit``, ``condor_q``, ``condor_history`` and ``condor_rm``."""

    scheduler_type = "htcondor"
    probe_command: ClassVar[str] = "condor_q"

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(config)
        self.max_bulk = int(self.config.options.get("max_bulk", DEFAULT_MAX_BULK))
        self.chirp = str(self.config.options.get("chirp", CHIRP))
        self._hold_logged: set[str] = set()

    def drms_name(self) -> str:
        return "HTCondor"

    def forgetting(self) -> str:
        return ("condor_history keeps ended jobs until they are rotated out of the schedd's history files "
                "(MAX_HISTORY_LOG, 20 MB each, and MAX_HISTORY_ROTATIONS, 2 backups, by default)")

    # -- submission ---------------------------------------------------------------------------------
    def job_script(self, job: Job) -> str:
        """The job script; its report sets ``SomaLaunchError`` (base64 of the reason) on the job."""
        report = (f'{shlex.quote(self.chirp)} set_job_attr {LAUNCH_ATTR} '
                  '"\\"$(printf %s "$soma_reason" | base64 -w0)\\"" >/dev/null 2>&1')
        return build_script(job, report=report)

    def cpus(self, job: Job) -> int:
        """``request_cpus`` of ``job``: nodes times CPUs per node of its parallel settings."""
        info = job.parallel_job_info or {}
        return max(1, int(info.get("nodes_number", 1)) * int(info.get("cpu_per_node", 1)))

    def array_key(self, job: Job) -> Hashable | None:
        """Jobs that share the submit-description header (hold, CPUs, native specification) go
        in one ``condor_submit``."""
        return (job.hold, self.cpus(job), tuple(self.native_specification_for(job)))

    def max_array_size(self) -> int:
        return self.max_bulk

    def submit_one(self, job: Job) -> str:
        token = uuid.uuid4().hex
        lines = submit_header(token, job.hold, self.cpus(job), self.native_specification_for(job))
        lines += [f"batch_name = {safe_name(job.name)}",
                  f'environment = "SOMA_JOB={encode_script(self.job_script(job))}"', "queue", ""]
        return f"{self._submit(lines, token, 'the job')}.0"

    def submit_array(self, jobs: Sequence[Job]) -> list[str]:
        """One ``condor_submit`` of every job, each with its own script and name (``queue from``)."""
        token = uuid.uuid4().hex
        first = jobs[0]
        lines = submit_header(token, first.hold, self.cpus(first), self.native_specification_for(first))
        lines += ["batch_name = $(SomaName)", 'environment = "SOMA_JOB=$(SomaJob)"', "queue SomaJob,SomaName from ("]
        lines += [f"{encode_script(self.job_script(job))},{safe_name(job.name)}" for job in jobs]
        lines += [")", ""]
        cluster = self._submit(lines, token, f"the {len(jobs)} jobs")
        return [f"{cluster}.{n}" for n in range(len(jobs))]

    def _submit(self, lines: list[str], token: str, what: str) -> str:
        """Run ``condor_submit -terse -`` with the description ``lines``; the new ClusterId."""
        def refused(exc: CommandError) -> SubmissionError:
            return SubmissionError(f"condor_submit refused {what}: {exc.stderr.strip() or exc}")

        return self.submit_with_token(["condor_submit", "-terse", "-"], "\n".join(lines).encode("ascii"),
                                      token, job_id_of, refused)

    def job_with_token(self, token: str) -> str | None:
        """The ClusterId of the submission carrying ``token``: ``condor_q``, then ``condor_history``."""
        where = f'{TOKEN_ATTR} == "{token}"'
        for command in ("condor_q", "condor_history"):
            argv = [command, "-json", "-attributes", "ClusterId,ProcId", "-constraint", where]
            if command == "condor_q":
                argv.insert(1, "-allusers")
            for ad in parse_ads(self.runner.run(argv).stdout):
                if isinstance(ad.get("ClusterId"), int):
                    return str(ad["ClusterId"])
        return None

    # -- polling ---------------------------------------------------------------------------------------
    def query_jobs(self, ids: Sequence[str]) -> dict[str, Observation]:
        return self._observe(ids)

    def observe_attached(self, ids: Sequence[str]) -> dict[str, Observation]:
        return self._observe([i for i in ids if _ID.fullmatch(i)])

    def _ads(self, command: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The ads of ``ids`` (by ``Cluster.Proc``) that ``command`` lists: one call, constraint on
        their clusters."""
        clusters = sorted({int(i.partition(".")[0]) for i in ids}, key=int)
        argv = [command, "-json", "-attributes", ",".join(ATTRIBUTES),
                "-constraint", f"member(ClusterId, {{{', '.join(map(str, clusters))}}})"]
        if command == "condor_q":
            argv.insert(1, "-allusers")
        result = self.runner.run(argv)
        try:
            ads = parse_ads(result.stdout)
        except ValueError as exc:  # cut short: the poll is retried, never half believed
            raise CommandError(argv, result.returncode, f"unreadable answer ({exc})") from None
        wanted = set(ids)
        found: dict[str, dict[str, Any]] = {}
        for ad in ads:
            job_id = ad_id(ad)
            if job_id in wanted:
                found[job_id] = ad
        return found

    def _observe(self, ids: Sequence[str]) -> dict[str, Observation]:
        """One ``condor_q`` for ``ids``, one ``condor_history`` for those it no longer lists."""
        ids = [i for i in ids if _ID.fullmatch(i)]
        if not ids:
            return {}
        result: dict[str, Observation] = {}
        for job_id, ad in self._ads("condor_q", ids).items():
            obs = observation(ad)
            if ad.get("JobStatus") == 3:  # removal under way: it ends when the schedd is done with it
                obs = Observation(C.RUNNING if started(ad) else C.QUEUED_ACTIVE, owner=obs.owner)
            elif obs.status == C.SYSTEM_ON_HOLD and job_id not in self._hold_logged and self.logger:
                self._hold_logged.add(job_id)
                self.logger.warning("job %s held by HTCondor: %s", job_id, ad.get("HoldReason"))
            result[job_id] = obs
        gone = [i for i in ids if i not in result]
        if gone:
            for job_id, ad in self._ads("condor_history", gone).items():
                result[job_id] = observation(ad)
        return result

    # -- cancel -----------------------------------------------------------------------------------------
    def cancel_job(self, job_id: str) -> None:
        self.runner.run(["condor_rm", job_id])

    def on_end(self, job_id: str) -> None:
        self._hold_logged.discard(job_id)

    def __repr__(self) -> str:
        prefix = shlex.join(self.runner.prefix) if self.runner.prefix else "local"
        return f"<HTCondorScheduler via {prefix}>"
