"""What a DRMS family (the DRMS behind libdrmaa: SGE, Slurm, PBS) says of the ``drmaa`` backend.

DRMAA 1.0 leaves to each implementation what its native specification looks like, whether a
submission whose answer was lost can be found again, and how far the end it reports can be
believed. A :class:`Family` subclass answers these for one DRMS; the session picks the class once,
from ``drmaaImplementation``, when it opens (:func:`~.families.family_for`), and each scheduler
holds one instance of it, with the family's per-scheduler state (ends awaiting their accounting).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Protocol

from ... import constants as C
from ...job import Job
from ...polled import Observation
from ...runner import CommandRunner
from .attach import AttachedJobs

__all__ = ["Family", "FamilyHost"]

#: ``parallel_job_config`` keys given to a parallel job's environment.
_PARALLEL_ENV_KEYS = ("PARALLEL_ENV_MPI_BIN", "PARALLEL_ENV_NODE_FILE")


class FamilyHost(Protocol):
    """What a family needs from its scheduler (the ``DrmaaScheduler``)."""

    runner: CommandRunner
    logger: logging.Logger | None

    @property
    def terminated(self) -> Container[str]:
        """The jobs this scheduler terminated (``control(TERMINATE)``)."""

    def last_status(self, job_id: str) -> str | None:
        """The job's last recorded status (None when not followed)."""

    def launch_error(self, job_id: str) -> str | None:
        """Why the job's script could not start its command (None when it could)."""


class Family:
    """One DRMS behind libdrmaa (this base: a DRMS nothing more is known of)."""

    #: The family's key (``sge``, ``slurm``, ``pbs``) and the DRMS's name, for messages.
    key: ClassVar[str] = ""
    drms: ClassVar[str] = "the DRMS"
    #: Native specification of ``parallel_job_info`` (``{config_name}``, ``{nodes_number}``,
    #: ``{cpu_per_node}``, ``{max_node}``) and of a queue (``{queue}``).
    parallel_template: ClassVar[str] = ""
    queue_template: ClassVar[str] = "-q {queue}"
    #: When the DRMS forgets an ended job (said when attach cannot find one), or "".
    forgetting: ClassVar[str] = ""
    #: Whether a job can be found (and deleted) by its name: a submission's name then carries a
    #: token, and a ``runJob`` whose answer was lost is looked for instead of failing.
    findable: ClassVar[bool] = False
    #: How jobs of other sessions are observed (attach).
    attached_type: ClassVar[type[AttachedJobs]] = AttachedJobs
    #: The environment variable holding an array task's index (``runBulkJobs``), None: no arrays.
    task_index: ClassVar[str | None] = None
    #: The index of an array's first task (``runBulkJobs(jt, first, ...)``).
    first_task: ClassVar[int] = 1

    def __init__(self, host: FamilyHost) -> None:
        self.host = host
        #: Reaped ends waiting for their accounting record (until a deadline).
        self.awaiting: dict[str, tuple[Observation, float]] = {}
        #: Whether the accounting command answers (None: not asked yet).
        self.accounting: bool | None = None

    # -- native specification -----------------------------------------------------------------
    def parallel_items(self, job: Job, cfg: Mapping[str, str]) -> tuple[list[str], str | None, Job]:
        """Native-specification items, job category and job (with the parallel env) for a parallel
        job (``cfg``: the configured ``parallel_job_config``; its ``drmaa_native_specification``
        replaces :attr:`parallel_template`)."""
        info = job.parallel_job_info
        if not info:
            return [], None, job
        name = str(info.get("config_name", "native"))
        nodes = int(info.get("nodes_number", 1))
        cpus = int(info.get("cpu_per_node", 1))
        values = {
            "{config_name}": cfg.get(name, name),
            "{nodes_number}": str(nodes),
            "{cpu_per_node}": str(cpus),
            "{max_node}": str(nodes * cpus),
        }

        def fill(template: str) -> str:
            for key, value in values.items():
                template = template.replace(key, value)
            return template

        spec = fill(cfg.get("drmaa_native_specification") or self.parallel_template)
        category = fill(cfg["drmaa_job_category"]) if cfg.get("drmaa_job_category") else None
        penv = {k: cfg[k] for k in _PARALLEL_ENV_KEYS if cfg.get(k)}
        if penv:
            job = replace(job, env={**penv, **(job.env or {})})
        return [spec], category, job

    # -- submissions whose answer was lost -----------------------------------------------------
    def job_named(self, name: str, since: float) -> str | None:
        """The id of the job named ``name`` (live or ended, submitted at ``since``, monotonic), None
        when the DRMS has none; :class:`CommandError` when it cannot be asked. Only if ``findable``."""
        raise NotImplementedError(f"{self.drms} jobs cannot be looked for by name")

    def delete_named(self, name: str) -> list[str]:
        """The command deleting the job named ``name``. Only if ``findable``."""
        raise NotImplementedError(f"{self.drms} jobs cannot be deleted by name")

    # -- job arrays (runBulkJobs) ----------------------------------------------------------------
    def max_array_size(self) -> int:
        """How many tasks one array may hold (0: arrays not used). This base: none."""
        return 0

    def task_id(self, array_id: str, index: int) -> str:
        """The id DRMAA gives task ``index`` of the array (job) ``array_id``, for an array found by
        its name after ``runBulkJobs``'s answer was lost. Only if :attr:`task_index` is set."""
        raise NotImplementedError(f"{self.drms} arrays are not used through DRMAA")

    # -- ends -------------------------------------------------------------------------------------
    def awaits(self, job_id: str) -> bool:
        """Whether the job's end is reaped and waits for its accounting record."""
        return job_id in self.awaiting

    def complete_ends(self, ids: Sequence[str], reaped: dict[str, Observation]) -> dict[str, Observation]:
        """Take from ``reaped`` (the ends ``wait`` gave) those of ``ids`` the DRMS's accounting must
        complete, and give the Observations of those (and of ends awaited before) that can be
        given now: completed, or kept at their last live status while the record is awaited.
        This base takes none: DRMAA's report is believed."""
        return {}

    def ended_without_wait(self, job_id: str, failing_since: float) -> bool:
        """Whether a job whose ``wait`` has failed since ``failing_since`` (monotonic) is to be taken
        as ended, its end left for the accounting to complete. This base: never."""
        return False

    def attached_jobs(self, status: Callable[[str], str | None]) -> AttachedJobs:
        """How this scheduler observes the jobs it attaches (``status``: its ``jobStatus``)."""
        return self.attached_type(self.host.runner, status, self.host.logger)

    def clear(self) -> None:
        """Forget the awaited ends (the scheduler is cleaned)."""
        self.awaiting.clear()

    def accounted(self, ended: dict[str, Observation], grace: float,
                  fetch: Callable[[list[str]], Mapping[str, Any]],
                  apply: Callable[[str, Observation, Any], None]) -> dict[str, Observation]:
        """``ended`` and the ends awaited before, completed from their accounting records.

        ``fetch`` gives the records of the ids it is given (setting :attr:`accounting` False when
        there is no accounting); ``apply`` completes an Observation from one. A job without a
        record yet keeps its last live state, at most ``grace`` seconds; then, or without
        accounting, DRMAA's information is used as is.
        """
        deadline = time.monotonic() + grace
        for job_id, obs in ended.items():
            self.awaiting[job_id] = (obs, deadline)
        if not self.awaiting:
            return {}
        records = fetch(list(self.awaiting)) if self.accounting is not False else {}
        now = time.monotonic()
        result: dict[str, Observation] = {}
        for job_id, (obs, until) in list(self.awaiting.items()):
            record = records.get(job_id)
            if record is None and self.accounting is not False and now < until:
                result[job_id] = Observation(self.host.last_status(job_id) or C.RUNNING)
                continue
            del self.awaiting[job_id]
            if record is not None:
                apply(job_id, obs, record)
            result[job_id] = obs
        return result

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self.awaiting)} end(s) awaiting accounting>"
