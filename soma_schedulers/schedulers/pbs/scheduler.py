"""The ``pbspro`` and ``torque`` scheduler types: jobs through ``qsub``, ``qstat`` and ``qdel``.

Every difference between OpenPBS and Torque is a fact of the scheduler's :class:`.PBSDialect`,
chosen once: :class:`PBSProScheduler` takes ``OPTION_FLAVOUR``, else detects it from ``qstat
--version``; :class:`TorqueScheduler` speaks Torque. Package overview: :mod:`..pbs`.
"""

from __future__ import annotations

import atexit
import json
import re
import shlex
import threading
import time
import uuid
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

from ... import constants as C
from ...arrays import array_script, chunk_sizes
from ...batch import CommandLineScheduler, Observation
from ...config import BridgeConfig, SchedulerConfig
from ...errors import CommandError, DRMError, SubmissionError, UnknownJobError
from ...job import Job
from ...runner import CommandRunner
from ...scheduler import CAPABILITIES, OPTIONAL_CAPABILITIES
from ...scripts import build_script
from .dialects import DIALECTS, TORQUE, PBSDialect, read_version
from .momcheck import LostJobs, mom_reports, mother_superior, node_states
from .observe import job_observation, launch_report
from .parse import (
    JOB_ID,
    TOKEN_VAR,
    UNKNOWN_JOB,
    carries_token,
    complete_records,
    job_name,
    lookup,
    parse_qstat_text,
)

__all__ = ["PBSProScheduler", "TorqueScheduler"]

_VARIABLES_ITEM = re.compile(r"-v\s*(\S.*)", re.S)
#: ``qdel``'s answer for a job the server does not have (not one that ended).
_NO_SUCH_JOB = re.compile(r"Unknown Job Id|nonexistent job id", re.I)

# -- out_of_container_command: the seed's static method --------------------------------------------

_static_runner: CommandRunner | None = None
_static_lock = threading.Lock()


def _close_static_runner() -> None:
    if _static_runner is not None:
        _static_runner.close()


class PBSProScheduler(CommandLineScheduler):
    """Submit and follow jobs with ``qsub``, ``qstat`` and ``qdel`` (PBS Pro/OpenPBS or Torque,
    told apart by ``OPTION_FLAVOUR`` or ``qstat --version``)."""

    scheduler_type = "pbspro"
    capabilities = CAPABILITIES | OPTIONAL_CAPABILITIES  # qsub refuses unknown queues, bad directives
    probe_command: ClassVar[str] = "qstat"
    #: The dialect every instance of the class speaks; None: ``OPTION_FLAVOUR``, else detected.
    pinned_dialect: ClassVar[PBSDialect | None] = None

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(config)
        opts = self.config.options
        forced = str(opts.get("flavour", opts.get("flavor", ""))).strip().lower() or None
        if forced is not None and forced not in DIALECTS:
            raise DRMError(f"OPTION_FLAVOUR must be {' or '.join(DIALECTS)}, not {forced!r}")
        pinned = self.pinned_dialect
        if pinned is not None and forced not in (None, pinned.name):
            raise DRMError(f"the {self.scheduler_type} type speaks {pinned.drms_name}: OPTION_FLAVOUR "
                           f"{forced!r} contradicts it (use the type {forced})")
        self._dialect: PBSDialect | None = pinned or (DIALECTS[forced] if forced else None)
        self._version: tuple[str, str] | None = None
        #: Seconds after ``qdel`` before a job still running is deleted by force
        #: (``OPTION_FORCE_KILL_AFTER``; OpenPBS's default ``kill_delay`` is 10 s).
        self.force_kill_after = float(opts.get("force_kill_after", 15.0))
        #: Beyond this many ids a poll lists every job (``OPTION_MAX_NAMED_IDS``; default: the
        #: dialect's :attr:`~.PBSDialect.max_named_ids`).
        self._max_named_ids: int | None = int(opts["max_named_ids"]) if "max_named_ids" in opts else None
        # This class's own per-job state (the base's job table has its own lock).
        self._state_lock = threading.RLock()
        self._attrs: dict[str, dict[str, Any]] = {}
        self._cancelled_at: dict[str, float] = {}
        self._forced: set[str] = set()
        self._jobs: dict[str, Job] = {}
        self._max_array_size: int | None = None
        self._made_at: dict[str, float] = {}  # array tasks -> when qsub made them (Torque shows them later)
        #: Running jobs their MOM lost (Torque): ended after ``OPTION_MOM_LOST_AFTER`` s (default 60;
        #: 0 turns the check off) missing from the MOM's reports; ``pbsnodes`` every 15 s at most.
        lost_after = float(opts.get("mom_lost_after", 60.0))
        self._lost = LostJobs(lost_after, every=min(15.0, lost_after / 4)) if lost_after > 0 else None

    # -- the seed's extra API --------------------------------------------------------------------
    @staticmethod
    def out_of_container_command() -> list[str]:
        """The prefix that takes ``qsub``/``qstat``/``qdel`` out of the container, or ``[]``.

        Soma-Workflow's static method, built on the shared runner's detection
        (``docs/contract.md``): ``[]`` when ``qstat`` is on PATH or no container marker is
        found; otherwise ``ssh`` (BatchMode, a private ControlMaster socket) to
        ``$SOMA_SCHEDULERS_BRIDGE_HOST`` (default ``localhost``). An instance uses its own
        configured bridge (``scheduler.runner.prefix``).
        """
        global _static_runner
        with _static_lock:
            if _static_runner is None:
                _static_runner = CommandRunner(BridgeConfig(mode="auto"), probe_command="qstat")
                atexit.register(_close_static_runner)
            return _static_runner.prefix

    def get_pbs_version(self) -> tuple[str, str]:
        """``(implementation, version)``: ``("pbspro", "23.06.06")`` or ``("torque", "6.1-dev")``
        (``qstat --version``, asked once)."""
        if self._version is None:
            result = self.runner.run(["qstat", "--version"], check=False)
            dialect, version = read_version(result.stdout + "\n" + result.stderr)
            self._version = (dialect.name, version)
            if self.logger:
                self.logger.info("PBS flavour %s, version %s", *self._version)
        return self._version

    @property
    def dialect(self) -> PBSDialect:
        """The implementation spoken: pinned by the class, ``OPTION_FLAVOUR``, else detected once."""
        if self._dialect is None:
            self._dialect = DIALECTS[self.get_pbs_version()[0]]
        return self._dialect

    @property
    def flavour(self) -> str:
        """``"pbspro"`` or ``"torque"``: the name of :attr:`dialect`."""
        return self.dialect.name

    def get_job_extended_status(self, scheduler_job_id: str) -> dict[str, Any]:
        """The job's full ``qstat -f`` attributes as a dict (OpenPBS's JSON shape for both flavours).

        A job of this instance answers from the batched poll; any other id is asked directly.
        """
        try:
            self.fresh_records([scheduler_job_id])
        except UnknownJobError:
            pass  # not one of ours
        else:
            with self._state_lock:
                attrs = self._attrs.get(scheduler_job_id)
            if attrs is not None:
                copy: dict[str, Any] = json.loads(json.dumps(attrs))
                return copy
        jobs = self._qstat([scheduler_job_id])
        attrs = lookup(jobs, scheduler_job_id)
        if attrs is None:
            raise UnknownJobError(scheduler_job_id)
        return attrs

    # -- submission --------------------------------------------------------------------------------
    def qsub_argv(self, job: Job) -> list[str]:
        """The ``qsub`` command line for ``job`` (the script goes on stdin)."""
        argv = ["qsub", "-o", "/dev/null", "-e", "/dev/null"]
        if job.name:
            argv += ["-N", job_name(job.name)]
        if job.queue:
            argv += ["-q", job.queue]
        if job.hold:
            argv.append("-h")
        info = job.parallel_job_info
        if info:
            nodes = int(info.get("nodes_number", 1) or 1)
            cpus = int(info.get("cpu_per_node", 1) or 1)
            argv += self.dialect.resources(nodes, cpus, str(info.get("config_name", "")))
        return argv

    def _split_variables(self, job: Job) -> tuple[list[str], list[str]]:
        """The native specification without its ``-v`` items, and the variables of those."""
        items, variables = [], []
        for item in self.native_specification_for(job):
            m = _VARIABLES_ITEM.fullmatch(item.strip())
            if m:
                variables.append(m.group(1).strip())
            else:
                items.append(item)
        return items, variables

    def job_script(self, job: Job, directives: bool = True) -> str:
        """The job script: the native specification as ``#PBS`` lines first (``-v`` goes to qsub's
        command line, with the token; ``directives=False``: none, for a task of an array)."""
        lines = [f"#PBS {item}" for item in self._split_variables(job)[0]] if directives else []
        return build_script(job, lines, report=launch_report(self.dialect.launch_mark_job))

    def submit_one(self, job: Job) -> str:
        job_id = self._qsub(self.qsub_argv(job), job, self.job_script(job), "the job")
        with self._state_lock:
            self._jobs[job_id] = job
        return job_id

    def _qsub(self, argv: list[str], job: Job, script: str, what: str) -> str:
        """``argv`` (a qsub of ``job``'s settings) with ``script`` on stdin and the token; the id."""
        token = uuid.uuid4().hex
        variables = [*self._split_variables(job)[1], f"{TOKEN_VAR}={token}"]
        argv = [*argv, "-v", ",".join(variables)]

        def job_id_of(out: str) -> str | None:
            return out.strip() if JOB_ID.fullmatch(out.strip()) else None

        def refused(exc: CommandError) -> SubmissionError:
            # Torque's messages name neither the queue nor the bad directive: say what was asked.
            asked = [f"queue {job.queue}"] if job.queue else []
            spec = self.native_specification_for(job)
            asked += [f"native specification {' '.join(spec)}"] if spec else []
            detail = " ".join((exc.stderr.strip() or str(exc)).split())
            return SubmissionError(
                f"qsub refused {what}: {detail[:1000]}" + (f" ({'; '.join(asked)})" if asked else "")
            )

        # surrogateescape: a str made from non-UTF-8 bytes (os.fsdecode) gives those bytes back
        return self.submit_with_token(argv, script.encode("utf-8", "surrogateescape"), token, job_id_of, refused)

    # -- job arrays ------------------------------------------------------------------------------------
    def array_key(self, job: Job) -> Hashable | None:
        """Jobs with the same qsub options but the name, directives and ``-v`` variables share arrays."""
        argv = self.qsub_argv(job)
        if "-N" in argv:
            del argv[argv.index("-N"):argv.index("-N") + 2]
        items, variables = self._split_variables(job)
        return (tuple(argv), tuple(items), tuple(variables))

    def max_array_size(self) -> int:
        """The server's cap (the dialect's :attr:`~.PBSDialect.max_array_attribute`, read once with
        ``qmgr -c "list server"``; its default when unreadable)."""
        if self._max_array_size is None:
            dialect = self.dialect
            try:
                out = self.runner.run(["qmgr", "-c", "list server"]).stdout
            except CommandError as exc:
                if self.logger:
                    self.logger.warning("cannot read %s (%s): assuming %d", dialect.max_array_attribute, exc,
                                        dialect.default_max_array_size)
                return dialect.default_max_array_size
            cap = dialect.max_array_size_in(out)
            self._max_array_size = cap if cap >= dialect.min_array_size else 0  # 0: no arrays
            if cap < dialect.min_array_size and self.logger:
                self.logger.warning("%s = %d: no job arrays on this server", dialect.max_array_attribute, cap)
        return self._max_array_size

    def array_chunks(self, jobs: Sequence[Job]) -> list[int]:
        """Arrays whose script stays under the dialect's :attr:`~.PBSDialect.max_array_script_bytes`."""
        return chunk_sizes([len(self.job_script(job, directives=False).encode("utf-8", "surrogateescape")) + 16
                            for job in jobs], self.dialect.max_array_script_bytes)

    def submit_array(self, jobs: Sequence[Job]) -> list[str]:
        """One ``qsub -J 0-N`` (Torque ``-t``) whose script runs task n's own job script (see
        :mod:`soma_schedulers.arrays`); fewer jobs than the dialect's smallest array go one by one.
        The array takes the jobs' name when they all have the same (Torque appends ``-<index>``)."""
        dialect = self.dialect
        if len(jobs) < dialect.min_array_size:
            return [self.submit_one(job) for job in jobs]
        argv = self.qsub_argv(jobs[0])
        if "-N" in argv:
            del argv[argv.index("-N"):argv.index("-N") + 2]
        if len({job.name for job in jobs}) == 1 and jobs[0].name:
            argv += ["-N", job_name(jobs[0].name)]
        argv += dialect.array_argv(len(jobs))
        directives = [f"#PBS {item}" for item in self._split_variables(jobs[0])[0]]
        script = array_script([self.job_script(job, directives=False) for job in jobs], dialect.array_index,
                              directives=directives)
        array_id = self._qsub(argv, jobs[0], script, f"the array of {len(jobs)} jobs")
        ids = [dialect.task_id(array_id, n) for n in range(len(jobs))]
        with self._state_lock:
            self._jobs.update(zip(ids, jobs, strict=True))
            if dialect.tasks_appear_within:
                self._made_at.update(dict.fromkeys(ids, time.monotonic()))
        return ids

    def job_with_token(self, token: str) -> str | None:
        """The id of the job whose ``Variable_List`` carries ``token``: every job is listed
        (OpenPBS: with its history)."""
        dialect = self.dialect
        result = self.runner.run(dialect.qstat_argv([]), check=False)
        if result.returncode != 0 and result.stderr.strip():
            raise CommandError(result.argv, result.returncode, result.stderr, result.stdout)
        jobs = dialect.read_listing(result.stdout)
        return next((job_id for job_id, attrs in jobs.items() if carries_token(attrs, token)), None)

    # -- polling -------------------------------------------------------------------------------------
    def qstat_argv(self, ids: Sequence[str]) -> list[str]:
        """The one ``qstat`` of a poll: the ids named, or every job beyond ``max_named_ids``."""
        dialect = self.dialect
        limit = dialect.max_named_ids if self._max_named_ids is None else self._max_named_ids
        tasks = any(dialect.array_of(i) for i in ids)
        return dialect.qstat_argv(list(ids) if len(ids) <= limit else [], tasks)

    def _qstat(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        result = self.runner.run(self.qstat_argv(ids), check=False)
        if result.returncode != 0:
            # Unknown (purged) ids are reported one line each; the others are still printed.
            others = [ln for ln in result.stderr.splitlines() if ln.strip() and not UNKNOWN_JOB.search(ln)]
            if others or not result.stderr.strip():
                raise CommandError(result.argv, result.returncode, result.stderr, result.stdout)
        try:
            return self.dialect.read_status(result.stdout)
        except ValueError as exc:
            text_argv = self.dialect.text_form(result.argv)
            if text_argv is None:
                raise
            if self.logger:
                self.logger.warning("qstat JSON unreadable (%s): asking for the text form", exc)
            text = self.runner.run(text_argv, check=False)
            return complete_records(text.stdout, parse_qstat_text(text.stdout))

    def query_jobs(self, ids: Sequence[str]) -> dict[str, Observation]:
        dialect = self.dialect
        # OpenPBS: a task's launch-error mark is its array's: the arrays are asked too (same qstat)
        arrays = {i: dialect.array_of(i) for i in ids} if dialect.marks_array else {}
        jobs = self._qstat([*ids, *dict.fromkeys(a for a in arrays.values() if a)])
        result: dict[str, Observation] = {}
        for job_id in ids:
            attrs = lookup(jobs, job_id)
            if attrs is None:
                continue
            array_id = arrays.get(job_id)
            marked = (lookup(jobs, array_id) or {}) if array_id else None
            obs = job_observation(attrs, dialect, marked)
            if obs.ended:
                self._after_mom_outage(job_id, obs)
            if obs.launch_error is not None:
                # OpenPBS keeps one mark per array (the last task's): it may be another task's reason
                obs.launch_error = (self._launch_message(job_id, obs.launch_error) if marked is None else
                                    f"the command could not be started (the last launch error of its array: "
                                    f"{obs.launch_error}; the job's stderr says why)")
            with self._state_lock:
                self._attrs[job_id] = attrs
                self._made_at.pop(job_id, None)
                if obs.ended:
                    self._jobs.pop(job_id, None)
                    self._cancelled_at.pop(job_id, None)
                    self._forced.discard(job_id)
            result[job_id] = obs
        result.update(self._unseen_tasks([i for i in ids if i not in result and dialect.array_of(i)]))
        result.update(self._lost_by_mom(result))
        self._on_stopped_moms(result)
        self._force_lingering(result)
        return result

    def _lost_by_mom(self, observations: Mapping[str, Observation]) -> dict[str, Observation]:
        """The running jobs their MOM no longer runs (:mod:`.momcheck`), as ended ``aborted``."""
        now = time.monotonic()
        if self._lost is None or not self.dialect.reports_mom_jobs or not self._lost.due(now):
            return {}
        with self._state_lock:
            running = {i: mother_superior(self._attrs[i].get("exec_host")) for i, obs in observations.items()
                       if obs.status == C.RUNNING and str(self._attrs.get(i, {}).get("job_state")) == "R"}
        hosts = {i: h for i, h in running.items() if h}
        if not hosts:
            return {}
        result = self.runner.run(["pbsnodes", *sorted(set(hosts.values()))], check=False)
        if result.returncode != 0:
            if self.logger:
                self.logger.warning("pbsnodes failed (%s): running jobs not checked against their MOMs",
                                    result.stderr.strip() or result.returncode)
            return {}
        lost = self._lost.check(hosts, mom_reports(result.stdout), now, node_states(result.stdout))
        ended = {}
        for job_id, reason in lost.items():  # the end is logged with its reason (record_end)
            with self._state_lock:
                for state in (self._jobs, self._cancelled_at, self._made_at):
                    state.pop(job_id, None)
            ended[job_id] = Observation(C.DONE, ended=True, started=True, aborted=reason)
        return ended

    def _on_stopped_moms(self, observations: dict[str, Observation]) -> None:
        """Running jobs whose MOM the last check saw stopped are ``undetermined`` (left out of
        ``observations``), then ``failed`` / ``aborted`` after ``undetermined_timeout``: Torque keeps
        such a job ``R`` as long as the MOM is away (measured: 12 min), deciding nothing."""
        if self._lost is None:
            return
        with self._state_lock:
            nodes = {i: mother_superior(self._attrs.get(i, {}).get("exec_host"))
                     for i, obs in observations.items() if obs.status == C.RUNNING and not obs.ended}
        for job_id, node in nodes.items():
            how = self._lost.stopped(node, time.monotonic())
            if how is not None:
                del observations[job_id]
                self.mark_undetermined([job_id], f"{self.dialect.drms_name}'s MOM on {node} {how} while the "
                                                 "server still shows the job running (the server decides "
                                                 "nothing until the MOM is back)")

    def _after_mom_outage(self, job_id: str, obs: Observation) -> None:
        """An ended job whose MOM was seen down while it ran, with the exit status the dialect's
        restarted MOM makes up (:attr:`~.PBSDialect.exit_status_after_mom_restart`): ``aborted``,
        its real end unknown."""
        outage = self._lost.outage(job_id) if self._lost is not None else None
        made_up = self.dialect.exit_status_after_mom_restart
        if outage is None or made_up is None or obs.exit_code != made_up or obs.cancelled or obs.launch_error:
            return
        obs.exit_code = None
        obs.aborted = (f"{self.dialect.drms_name} recorded exit status {made_up}, but {outage}: a MOM restarted "
                       f"while its job runs records {made_up} whatever the job did (node failure; the job's "
                       "real end is unknown)")

    def _unseen_tasks(self, ids: Sequence[str]) -> dict[str, Observation]:
        """What array tasks ``qstat`` did not show are: deleted by us (a task deleted before it was
        made never shows: ended), or not made yet (Torque, shortly after ``qsub``: waiting)."""
        now = time.monotonic()
        result = {}
        with self._state_lock:
            for job_id in ids:
                if job_id in self._cancelled_at:
                    result[job_id] = Observation(C.DONE, ended=True, cancelled=True)
                    for state in (self._made_at, self._cancelled_at, self._jobs):
                        state.pop(job_id, None)
                elif now - self._made_at.get(job_id, float("-inf")) < self.dialect.tasks_appear_within:
                    job = self._jobs.get(job_id)
                    result[job_id] = Observation(C.USER_ON_HOLD if job is not None and job.hold else C.QUEUED_ACTIVE)
        return result

    def drms_name(self) -> str:
        return self.dialect.drms_name

    def forgetting(self) -> str:
        return self.dialect.forgetting

    def _launch_message(self, job_id: str, kind: str) -> str:
        with self._state_lock:
            job = self._jobs.get(job_id)
        path = None
        if job is not None:
            path = {
                "command not found": job.command[0],
                "cannot change to working directory": job.working_directory,
                "cannot read stdin file": job.stdin,
                "cannot write stdout file": job.stdout_file,
                "cannot write stderr file": job.stderr_file,
            }.get(kind)
        return f"{kind} {path}" if path else kind

    # -- cancel ----------------------------------------------------------------------------------------
    def cancel_job(self, job_id: str) -> None:
        with self._state_lock:
            self._cancelled_at.setdefault(job_id, time.monotonic())
        try:
            self.runner.run(["qdel", job_id], retry=False)
        except CommandError as exc:
            if not UNKNOWN_JOB.search(exc.stderr):
                raise
            unmade = self.dialect.delete_unmade(job_id)  # a Torque task not made yet
            if unmade is not None and _NO_SUCH_JOB.search(exc.stderr):
                self.runner.run(unmade, retry=False)
            # else it ended meanwhile: the next poll tells how

    def _force_lingering(self, observations: Mapping[str, Observation]) -> None:
        """``qdel`` by force, once, the jobs still running ``force_kill_after`` s after their ``qdel``."""
        now = time.monotonic()
        with self._state_lock:
            lingering = [
                i for i, t in self._cancelled_at.items()
                if i not in self._forced and now - t > self.force_kill_after
                and i in observations and observations[i].status == C.RUNNING
            ]
            self._forced.update(lingering)
        force = list(self.dialect.force_delete)
        for job_id in lingering:
            if self.logger:
                self.logger.warning("job %s still running %g s after qdel: qdel %s",
                                    job_id, self.force_kill_after, shlex.join(force))
            try:
                self.runner.run(["qdel", *force, job_id], retry=False)
            except CommandError as exc:
                if self.logger and not UNKNOWN_JOB.search(exc.stderr):
                    self.logger.warning("forced qdel of job %s: %s", job_id, exc)

    def clean(self) -> None:
        super().clean()
        with self._state_lock:
            self._attrs.clear()
            self._jobs.clear()
            self._cancelled_at.clear()
            self._forced.clear()
            self._made_at.clear()
        if self._lost is not None:
            self._lost.forget()

    def __repr__(self) -> str:
        prefix = shlex.join(self.runner.prefix) if self.runner.prefix else "local"
        spoken = self._dialect.name if self._dialect is not None else "flavour not detected yet"
        return f"<{type(self).__name__} {spoken} via {prefix}>"


class TorqueScheduler(PBSProScheduler):
    """The ``torque`` type: the same implementation, speaking Torque (nothing detected)."""

    scheduler_type = "torque"
    pinned_dialect = TORQUE
