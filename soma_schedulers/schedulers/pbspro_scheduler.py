"""PBS Pro / OpenPBS and Torque through their command-line tools (types ``pbspro`` and ``torque``).

One implementation serves both flavours; :meth:`PBSProScheduler.get_pbs_version` tells them
apart from ``qstat --version`` (``pbs_version = 23.06.06`` or ``Version: 6.1-dev``).

Submission: ``qsub`` with the job script on stdin (nothing is written to disk). The script
starts with the native specification as ``#PBS`` lines; the job's own fields (name, queue,
parallel resources, hold) are ``qsub`` options and win over them. PBS's own output spool goes
to ``/dev/null``: the script opens the job's files itself. Every submission carries a token
(``-v SOMA_SCHEDULERS_TOKEN=<uuid>``, merged with a ``-v`` of the native specification: on the
command line it would replace theirs): when ``qsub``'s answer is lost (timeout, dropped
connection, output cut short) the job is looked for by its token in ``Variable_List``, so a
submission is never retried blindly and a job that was made is never left untracked.

Polling: ONE ``qstat`` per poll for every unfinished job. OpenPBS: ``qstat -x -f -F json -E
ids...`` (``-x``: finished jobs from the job history, ``-E``: one request for all ids); Torque:
its text ``qstat -f ids...`` (finished jobs stay there as ``C`` for ``keep_completed`` seconds;
Torque's ``-x`` means XML). Beyond ``max_named_ids`` ids (OpenPBS 1000, Torque 10: its qstat makes
a request per named id), every job is listed instead and filtered here.

End states, from the exit status the MOM records (``Exit_status``, Torque's ``exit_status``):

* none: the job never ran (deleted while queued or held);
* ``>= 256``: the MOM killed the job's session with signal ``status - 256`` (``qdel``: ours is
  ``killed_by_user``, anyone else's ``aborted``). OpenPBS also marks a deleted job with
  substate 91, whatever its status (after ``qdel`` the shell may report ``128 + s`` first);
* ``128 + s`` (s <= 64): the command died of signal ``s``. The MOM runs the script through the
  user's login shell, which reports a child's death by signal ``s`` as ``128 + s``: an exit code
  of 129-192 is therefore read as a signal (the shell convention);
* negative: PBS ended the job (``JOB_EXEC_*``: walltime, memory, cput limits, exec failure):
  ``aborted``;
* 127 with the launch-error mark: the script could not start the command. The script marks
  it by setting the job's ``Priority`` (user-alterable while the job runs, in both flavours)
  to one of :data:`LAUNCH_PRIORITIES` with ``qalter`` before exiting 127.

``attach``: the poll's ``qstat`` (OpenPBS: the history too), each job's ``Job_Owner`` kept. OpenPBS
appends ``and terminated by user@host`` to the comment of a running job someone deleted; Torque
records no deleter (see docs/pbs.md).

``kill_job``: ``qdel``; a job still running ``force_kill_after`` seconds later (default 15: OpenPBS
waits ``kill_delay``, 10 s by default, between SIGTERM and SIGKILL; a MOM that is down never
answers) is deleted with ``qdel -W force`` (OpenPBS) or ``qdel -W 0`` (Torque), once.
"""

from __future__ import annotations

import atexit
import json
import re
import shlex
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .. import constants as C
from ..batch import CommandLineScheduler, Observation
from ..config import BridgeConfig, SchedulerConfig
from ..errors import CommandError, DRMError, SubmissionError, UnknownJobError
from ..job import Job
from ..runner import CommandRunner
from ..scheduler import CAPABILITIES, OPTIONAL_CAPABILITIES
from ..scripts import LAUNCH_ERROR_EXIT, build_script
from ..usage import format_usage, memory_to_kb, parse_hms

__all__ = [
    "LAUNCH_PRIORITIES",
    "PBSProScheduler",
    "TorqueScheduler",
    "job_observation",
    "parse_qstat_json",
    "parse_qstat_text",
    "parse_version",
]

PBSPRO = "pbspro"
TORQUE = "torque"

#: ``Priority`` a job script sets (``qalter -p``) before exiting 127, per launch-error kind
#: (the start of the reason ``build_script`` gives).
LAUNCH_PRIORITIES: dict[str, int] = {
    "command not found": -1019,
    "cannot change to working directory": -1020,
    "cannot read stdin file": -1021,
    "cannot write stdout file": -1022,
    "cannot write stderr file": -1023,
}
_LAUNCH_BY_PRIORITY = {v: k for k, v in LAUNCH_PRIORITIES.items()}

#: Where ``qalter`` may live on an execution host whose job PATH lacks it.
_QALTER_PATH = "/opt/pbs/bin:/usr/local/bin:/usr/pbs/bin:/opt/torque/bin"

_LIVE_STATES = {
    "Q": C.QUEUED_ACTIVE,
    "W": C.QUEUED_ACTIVE,  # waiting for its execution time (or an exec retry)
    "T": C.QUEUED_ACTIVE,  # in transit
    "R": C.RUNNING,
    "E": C.RUNNING,  # exiting: ended, files being staged out; ends as F/C
    "B": C.RUNNING,  # array job with running subjobs
    "S": C.SYSTEM_SUSPENDED,  # suspended (by an operator or preemption)
    "U": C.SYSTEM_SUSPENDED,  # suspended: workstation busy
    "M": C.UNDETERMINED,  # moved to another server
}
_ENDED_STATES = frozenset({"F", "C", "X"})

#: Negative exit statuses (``JOB_EXEC_*``) by flavour; any other negative value is "exec failure".
_EXEC_CODES: dict[str, dict[int, str]] = {
    PBSPRO: {
        -1: "job exec failed before files", -2: "job exec failed after files", -3: "job exec retry",
        -4: "MOM initialisation aborted the job", -10: "invalid uid/gid for the job",
        -11: "job rerun", -17: "a hook rejected the job", -19: "a hook deleted the job",
        -20: "mother superior connection failed", -24: "ncpus (burst) limit exceeded",
        -25: "ncpus (sum) limit exceeded", -26: "vmem limit exceeded", -27: "mem limit exceeded",
        -28: "cput limit exceeded", -29: "walltime limit exceeded",
    },
    TORQUE: {
        -1: "job exec failed before files", -2: "job exec failed after files", -3: "job exec retry",
        -4: "MOM initialisation aborted the job", -8: "exec() of the command failed",
        -9: "could not open the output files", -10: "memory limit exceeded",
        -11: "walltime limit exceeded", -12: "cput limit exceeded", -13: "cgroups creation failed",
        -14: "prologue failed",
    },
}

#: The environment variable whose value finds a job again when ``qsub``'s answer is lost.
TOKEN_VAR = "SOMA_SCHEDULERS_TOKEN"
_JOB_ID = re.compile(r"\d+(\[\d*\])?(\.[\w.-]+)?")
_VARIABLES_ITEM = re.compile(r"-v\s*(\S.*)", re.S)

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.+-]")
_TERMINATED_BY = re.compile(r"\bterminated by (\S+)\s*$")
_UNKNOWN_JOB = re.compile(r"Unknown Job Id|nonexistent job id|Job has finished|invalid state for job", re.I)


# -- parsing (pure functions: tested on recorded outputs) -----------------------------------------

def parse_version(text: str) -> tuple[str, str]:
    """``qstat --version`` output -> ``(implementation, version)``: ``("pbspro", "23.06.06")``,
    ``("torque", "6.1-dev")``."""
    m = re.search(r"pbs_version\s*=\s*(\S+)", text)
    if m:
        return PBSPRO, m.group(1)
    m = re.search(r"^\s*Version:\s*(\S+)", text, re.M)
    if m:
        return TORQUE, m.group(1)
    raise DRMError(f"qstat --version gave neither a PBS Pro nor a Torque version: {text.strip()!r}")


def parse_qstat_json(text: str) -> dict[str, dict[str, Any]]:
    """OpenPBS ``qstat -f -F json`` -> ``{job id: attributes}`` (empty output: no jobs)."""
    if not text.strip():
        return {}
    # strict=False: 23.06 does not escape control characters inside values.
    data = json.loads(text, strict=False)
    jobs = data.get("Jobs") or {}
    if not isinstance(jobs, dict):
        raise ValueError("qstat JSON has no 'Jobs' object")
    return {str(k): v for k, v in jobs.items() if isinstance(v, dict)}


def _convert(value: str) -> Any:
    return int(value) if re.fullmatch(r"-?\d+", value) else value


def parse_qstat_text(text: str) -> dict[str, dict[str, Any]]:
    """``qstat -f`` text (Torque; OpenPBS without ``-F``) -> ``{job id: attributes}``.

    Attributes have the shape of OpenPBS's JSON: ``resources_used.cput = 00:00:02`` becomes
    ``{"resources_used": {"cput": "00:00:02"}}``, integers become ``int``. Continuation lines
    (starting with a TAB) are joined to the previous value.
    """
    jobs: dict[str, dict[str, Any]] = {}
    current: dict[str, str] | None = None
    raw: list[tuple[str, str]] = []
    key = ""

    def flush() -> None:
        if current is None:
            return
        attrs: dict[str, Any] = {}
        for k, v in raw:
            parent, dot, child = k.partition(".")
            if dot:
                sub = attrs.setdefault(parent, {})
                if isinstance(sub, dict):
                    sub[child] = _convert(v)
            else:
                attrs[k] = _convert(v)
        jobs[current["id"]] = attrs

    for line in text.splitlines():
        if line.startswith("Job Id:"):
            flush()
            current = {"id": line.split(":", 1)[1].strip()}
            raw = []
            key = ""
        elif current is None or not line.strip():
            continue
        elif line.startswith("\t") and raw:
            raw[-1] = (key, raw[-1][1] + line[1:])
        elif " = " in line:
            key, _, value = line.strip().partition(" = ")
            raw.append((key, value))
        elif line.strip().endswith(" =") or line.strip().endswith("="):
            key = line.strip().rstrip("=").strip()
            raw.append((key, ""))
    flush()
    return jobs


def complete_records(text: str, jobs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``jobs`` parsed from ``qstat -f`` text, without the last one unless the text is complete.

    ``qstat -f`` ends every job with an empty line: output cut short (a dropped connection)
    may end inside the last job, whose attributes would then be missing (an ended job without
    its exit status). A job left out is asked about again at the next poll.
    """
    if jobs and not text.endswith("\n\n"):
        jobs = dict(jobs)
        jobs.pop(next(reversed(jobs)))
    return jobs


def carries_token(attrs: Mapping[str, Any], token: str) -> bool:
    """Whether a job's ``Variable_List`` (OpenPBS: a JSON object; text: ``A=1,B=2``) has ``token``."""
    variables = attrs.get("Variable_List")
    if isinstance(variables, dict):
        return variables.get(TOKEN_VAR) == token
    return isinstance(variables, str) and f"{TOKEN_VAR}={token}" in variables.split(",")


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def exit_status_of(attrs: Mapping[str, Any]) -> int | None:
    """The recorded exit status: ``Exit_status`` (OpenPBS) or ``exit_status`` (Torque)."""
    for key in ("Exit_status", "exit_status"):
        if key in attrs:
            return _int(attrs[key])
    return None


def usage_of(attrs: Mapping[str, Any]) -> bytes | None:
    """``resources_used`` as the contract's usage bytes (measured items only)."""
    used = attrs.get("resources_used")
    if not isinstance(used, dict) or not used:
        return None

    def seconds(key: str) -> float | None:
        v = used.get(key)
        return parse_hms(str(v)) if v is not None else None

    def kb(key: str) -> int | None:
        v = used.get(key)
        return memory_to_kb(str(v)) if v is not None else None

    usage = format_usage(
        cpupercent=_int(used.get("cpupercent")), cput=seconds("cput"), mem_kb=kb("mem"),
        vmem_kb=kb("vmem"), ncpus=_int(used.get("ncpus")), walltime=seconds("walltime"),
    )
    return usage or None


def hold_status(attrs: Mapping[str, Any]) -> str:
    """The contract status of a held job, from ``Hold_Types`` (u: user; o, s, p: system)."""
    types = str(attrs.get("Hold_Types", ""))
    user = "u" in types
    system = any(c in types for c in "osp")
    if user and system:
        return C.USER_SYSTEM_ON_HOLD
    return C.USER_ON_HOLD if user else C.SYSTEM_ON_HOLD


def job_observation(attrs: Mapping[str, Any], flavour: str) -> Observation:
    """What one job's ``qstat -f`` attributes say, as an :class:`Observation` (with its
    ``Job_Owner``, and who deleted it when OpenPBS's comment says so)."""
    state = str(attrs.get("job_state", "")).strip()
    owner = str(attrs.get("Job_Owner") or "") or None
    if state not in _ENDED_STATES:
        if state == "H":
            return Observation(hold_status(attrs), owner=owner)
        return Observation(_LIVE_STATES.get(state, C.UNDETERMINED), owner=owner)
    started = any(k in attrs for k in ("stime", "start_time", "exec_host"))
    usage = usage_of(attrs) if started else None
    code = exit_status_of(attrs)
    # OpenPBS appends "and terminated by user@host" to the comment of a running job deleted
    # with qdel (svr_jobfunc.c, update_job_finish_comment); Torque records no deleter.
    by = _TERMINATED_BY.search(str(attrs.get("comment", "")))
    obs = Observation(C.DONE, ended=True, started=started, usage=usage, owner=owner,
                      cancelled_by=by.group(1) if by else None)
    # OpenPBS marks a deleted job (substate 91, TERMINATED): after qdel the shell may still
    # report its command's death as 128+s before the MOM kills the session (256+s).
    deleted = _int(attrs.get("substate")) == 91
    if code is None:
        obs.cancelled = True  # deleted before (or without) an exit status
        return obs
    if code < 0:
        reason = _EXEC_CODES.get(flavour, {}).get(code, f"job exec failure {code}")
        obs.aborted = f"PBS ended the job: {reason} (exit status {code})"
        return obs
    if code >= 256:
        # The MOM killed the job's session: qdel (ours or someone else's).
        obs.term_sig = code - 256
        obs.cancelled = True
        return obs
    if 128 < code <= 128 + 64:
        obs.term_sig = code - 128
        obs.cancelled = deleted
        return obs
    obs.exit_code = code
    priority = _int(attrs.get("Priority"))
    if code == LAUNCH_ERROR_EXIT and priority in _LAUNCH_BY_PRIORITY:
        obs.launch_error = _LAUNCH_BY_PRIORITY[priority]
    return obs


def job_name(name: str) -> str:
    """A name PBS accepts (``-N``): letters, digits, ``_.+-``, first a letter, at most 200."""
    clean = _NAME_BAD.sub("_", name)
    if not clean[:1].isalpha():
        clean = "j" + clean
    return clean[:200]


def launch_report() -> str:
    """The shell code a job script runs on a launch error: mark the job through its Priority."""
    cases = " ".join(f"{shlex.quote(reason)}*) p={prio};;" for reason, prio in LAUNCH_PRIORITIES.items())
    return (
        f'case "$soma_reason" in {cases} *) p={LAUNCH_PRIORITIES["command not found"]};; esac; '
        f'{{ command -v qalter || PATH="$PATH:{_QALTER_PATH}"; qalter -p "$p" "$PBS_JOBID"; }} >/dev/null 2>&1'
    )


# -- out_of_container_command: the seed's static method --------------------------------------------

_static_runner: CommandRunner | None = None
_static_lock = threading.Lock()


def _close_static_runner() -> None:
    if _static_runner is not None:
        _static_runner.close()


class PBSProScheduler(CommandLineScheduler):
    """Submit and follow jobs with ``qsub``, ``qstat`` and ``qdel`` (PBS Pro/OpenPBS or Torque)."""

    scheduler_type = PBSPRO
    capabilities = CAPABILITIES | OPTIONAL_CAPABILITIES  # qsub refuses unknown queues, bad directives
    probe_command: ClassVar[str] = "qstat"

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(config)
        opts = self.config.options
        forced = str(opts.get("flavour", opts.get("flavor", ""))).strip().lower() or None
        if forced not in (None, PBSPRO, TORQUE):
            raise DRMError(f"OPTION_FLAVOUR must be {PBSPRO} or {TORQUE}, not {forced!r}")
        self._flavour: str | None = forced
        self._version: tuple[str, str] | None = None
        #: Seconds after ``qdel`` before a job still running is deleted by force
        #: (``OPTION_FORCE_KILL_AFTER``; OpenPBS's default ``kill_delay`` is 10 s).
        self.force_kill_after = float(opts.get("force_kill_after", 15.0))
        #: Beyond this many ids a poll lists every job (``OPTION_MAX_NAMED_IDS``). Default: 1000 on
        #: OpenPBS (``-E``: one request, and the server does the filtering), 10 on Torque (a
        #: request per named id, about 1.5 ms each against 0.2 ms a listed job).
        self._max_named_ids: int | None = int(opts["max_named_ids"]) if "max_named_ids" in opts else None
        self._attrs: dict[str, dict[str, Any]] = {}
        self._cancelled_at: dict[str, float] = {}
        self._forced: set[str] = set()
        self._jobs: dict[str, Job] = {}

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
        """``(implementation, version)``: ``("pbspro", "23.06.06")`` or ``("torque", "6.1-dev")``."""
        if self._version is None:
            result = self.runner.run(["qstat", "--version"], check=False)
            self._version = parse_version(result.stdout + "\n" + result.stderr)
            if self.logger:
                self.logger.info("PBS flavour %s, version %s", *self._version)
        return self._version

    @property
    def flavour(self) -> str:
        """``"pbspro"`` or ``"torque"`` (``OPTION_FLAVOUR``, else detected once)."""
        if self._flavour is None:
            self._flavour = self.get_pbs_version()[0]
        return self._flavour

    def get_job_extended_status(self, scheduler_job_id: str) -> dict[str, Any]:
        """The job's full ``qstat -f`` attributes as a dict (OpenPBS's JSON shape for both flavours).

        A job of this instance answers from the batched poll; any other id is asked directly.
        """
        with self._lock:
            known = scheduler_job_id in self._records
        if known:
            self._fresh_records([scheduler_job_id])
            with self._lock:
                attrs = self._attrs.get(scheduler_job_id)
            if attrs is not None:
                copy: dict[str, Any] = json.loads(json.dumps(attrs))
                return copy
        jobs = self._qstat([scheduler_job_id])
        attrs = _lookup(jobs, scheduler_job_id)
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
            if self.flavour == TORQUE:
                argv += ["-l", f"nodes={nodes}:ppn={cpus}"]
            elif str(info.get("config_name", "")).lower() == "openmp":
                argv += ["-l", f"select={nodes}:ncpus={cpus}:ompthreads={cpus}:mpiprocs=1", "-l", "place=scatter"]
            else:
                argv += ["-l", f"select={nodes}:ncpus={cpus}:mpiprocs={cpus}", "-l", "place=scatter"]
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

    def job_script(self, job: Job) -> str:
        """The job script: the native specification as ``#PBS`` lines first (``-v`` goes to qsub's
        command line, with the token)."""
        directives = [f"#PBS {item}" for item in self._split_variables(job)[0]]
        return build_script(job, directives, report=launch_report())

    def _submit_one(self, job: Job) -> str:
        token = uuid.uuid4().hex
        variables = [*self._split_variables(job)[1], f"{TOKEN_VAR}={token}"]
        argv = [*self.qsub_argv(job), "-v", ",".join(variables)]
        # surrogateescape: a str made from non-UTF-8 bytes (os.fsdecode) gives those bytes back
        script = self.job_script(job).encode("utf-8", "surrogateescape")

        def job_id_of(out: str) -> str | None:
            return out.strip() if _JOB_ID.fullmatch(out.strip()) else None

        def refused(exc: CommandError) -> SubmissionError:
            # Torque's messages name neither the queue nor the bad directive: say what was asked.
            asked = [f"queue {job.queue}"] if job.queue else []
            spec = self.native_specification_for(job)
            asked += [f"native specification {' '.join(spec)}"] if spec else []
            detail = " ".join((exc.stderr.strip() or str(exc)).split())
            return SubmissionError(
                f"qsub refused the job: {detail[:1000]}" + (f" ({'; '.join(asked)})" if asked else "")
            )

        job_id = self.submit_with_token(argv, script, token, job_id_of, refused)
        with self._lock:
            self._jobs[job_id] = job
        return job_id

    def _job_with_token(self, token: str) -> str | None:
        """The id of the job whose ``Variable_List`` carries ``token``: every job is listed
        (OpenPBS: with its history)."""
        argv = ["qstat", "-f"] if self.flavour == TORQUE else ["qstat", "-x", "-f", "-F", "json"]
        result = self.runner.run(argv, check=False)
        if result.returncode != 0 and result.stderr.strip():
            raise CommandError(result.argv, result.returncode, result.stderr, result.stdout)
        if self.flavour == TORQUE:
            if result.stdout and not result.stdout.endswith("\n\n"):
                raise ValueError("qstat's listing was cut short")  # the job may be in the missing part
            jobs = parse_qstat_text(result.stdout)
        else:
            jobs = parse_qstat_json(result.stdout)  # cut short: not JSON, a ValueError
        return next((job_id for job_id, attrs in jobs.items() if carries_token(attrs, token)), None)

    # -- polling -------------------------------------------------------------------------------------
    def qstat_argv(self, ids: Sequence[str]) -> list[str]:
        """The one ``qstat`` of a poll: the ids named, or every job beyond ``max_named_ids``."""
        limit = self._max_named_ids
        if limit is None:
            limit = 10 if self.flavour == TORQUE else 1000
        named = list(ids) if len(ids) <= limit else []
        if self.flavour == TORQUE:
            return ["qstat", "-f", *named]
        return ["qstat", "-x", "-f", "-F", "json", *(["-E"] if named else []), *named]

    def _qstat(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        result = self.runner.run(self.qstat_argv(ids), check=False)
        if result.returncode != 0:
            # Unknown (purged) ids are reported one line each; the others are still printed.
            others = [ln for ln in result.stderr.splitlines() if ln.strip() and not _UNKNOWN_JOB.search(ln)]
            if others or not result.stderr.strip():
                raise CommandError(result.argv, result.returncode, result.stderr, result.stdout)
        if self.flavour == TORQUE:
            return complete_records(result.stdout, parse_qstat_text(result.stdout))
        try:
            return parse_qstat_json(result.stdout)
        except ValueError as exc:
            if self.logger:
                self.logger.warning("qstat JSON unreadable (%s): asking for the text form", exc)
            text = self.runner.run([a for a in result.argv if a not in ("-F", "json")], check=False)
            return complete_records(text.stdout, parse_qstat_text(text.stdout))

    def _query(self, ids: Sequence[str]) -> dict[str, Observation]:
        jobs = self._qstat(ids)
        result: dict[str, Observation] = {}
        flavour = self.flavour
        for job_id in ids:
            attrs = _lookup(jobs, job_id)
            if attrs is None:
                continue
            obs = job_observation(attrs, flavour)
            if obs.launch_error is not None:
                obs.launch_error = self._launch_message(job_id, obs.launch_error)
            with self._lock:
                self._attrs[job_id] = attrs
                if obs.ended:
                    self._jobs.pop(job_id, None)
                    self._cancelled_at.pop(job_id, None)
                    self._forced.discard(job_id)
            result[job_id] = obs
        self._force_lingering(result)
        return result

    def drms_name(self) -> str:
        return "Torque" if self.flavour == TORQUE else "OpenPBS"

    def forgetting(self) -> str:
        if self.flavour == TORQUE:
            return ("Torque forgets a completed job keep_completed seconds after its end: "
                    "300 by default, a server or queue attribute")
        return ("OpenPBS keeps ended jobs only with job_history_enable = True, for "
                "job_history_duration: two weeks by default")

    def _launch_message(self, job_id: str, kind: str) -> str:
        with self._lock:
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
    def _cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancelled_at.setdefault(job_id, time.monotonic())
        try:
            self.runner.run(["qdel", job_id], retry=False)
        except CommandError as exc:
            if _UNKNOWN_JOB.search(exc.stderr):
                return  # it ended meanwhile: the next poll tells how
            raise

    def _force_lingering(self, observations: Mapping[str, Observation]) -> None:
        now = time.monotonic()
        with self._lock:
            lingering = [
                i for i, t in self._cancelled_at.items()
                if i not in self._forced and now - t > self.force_kill_after
                and i in observations and observations[i].status == C.RUNNING
            ]
            self._forced.update(lingering)
        force = ["-W", "0"] if self.flavour == TORQUE else ["-W", "force"]
        for job_id in lingering:
            if self.logger:
                self.logger.warning("job %s still running %g s after qdel: qdel %s",
                                    job_id, self.force_kill_after, shlex.join(force))
            try:
                self.runner.run(["qdel", *force, job_id], retry=False)
            except CommandError as exc:
                if self.logger and not _UNKNOWN_JOB.search(exc.stderr):
                    self.logger.warning("forced qdel of job %s: %s", job_id, exc)

    def clean(self) -> None:
        super().clean()
        with self._lock:
            self._attrs.clear()
            self._jobs.clear()
            self._cancelled_at.clear()
            self._forced.clear()

    def __repr__(self) -> str:
        prefix = shlex.join(self.runner.prefix) if self.runner.prefix else "local"
        return f"<{type(self).__name__} {self._flavour or 'flavour not detected yet'} via {prefix}>"


def _lookup(jobs: Mapping[str, dict[str, Any]], job_id: str) -> dict[str, Any] | None:
    """The attributes of ``job_id``; server names may differ (short vs full host name)."""
    attrs = jobs.get(job_id)
    if attrs is not None:
        return attrs
    seq = job_id.split(".", 1)[0]
    for key, value in jobs.items():
        if key.split(".", 1)[0] == seq:
            return value
    return None


class TorqueScheduler(PBSProScheduler):
    """The ``torque`` type: the same implementation (the flavour is detected either way)."""

    scheduler_type = TORQUE
