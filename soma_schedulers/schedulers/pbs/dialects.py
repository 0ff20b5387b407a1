"""What differs between OpenPBS (PBS Pro) and Torque: one dialect object per implementation.

Both are driven through ``qsub``, ``qstat`` and ``qdel``, but they differ in how ``qstat`` is asked
(OpenPBS: JSON, ``-x`` for the job history, ``-E`` to batch named ids; Torque: text only, its
``-x`` means XML), in the resource syntax, the forced deletion, the meaning of negative exit
statuses, how ``qstat --version`` names the version, and what they record of a deletion. A
scheduler picks one dialect once (``PBSProScheduler`` detects it, ``TorqueScheduler`` pins
:data:`TORQUE`) and asks it; nothing else in the package tests which implementation it talks to.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ...errors import DRMError
from .parse import as_int, complete_records, parse_qstat_json, parse_qstat_text

_TASK_INDEX = re.compile(r"\[\d+\]")

__all__ = ["DIALECTS", "OPENPBS", "TORQUE", "PBSDialect", "dialect_named", "parse_version", "read_version"]


class PBSDialect(abc.ABC):
    """The facts of one PBS implementation that the scheduler needs (stateless: one shared instance)."""

    #: The implementation's name: ``OPTION_FLAVOUR``'s value, ``get_pbs_version()[0]``, the scheduler type.
    name: ClassVar[str]
    #: The DRMS's name in messages.
    drms_name: ClassVar[str]
    #: When the DRMS forgets an ended job (said when ``attach`` finds no such job).
    forgetting: ClassVar[str]
    #: Default ``OPTION_MAX_NAMED_IDS``: beyond this many ids a poll lists every job instead.
    max_named_ids: ClassVar[int]
    #: The ``qdel`` options that delete a job by force (a job still running after ``qdel``).
    force_delete: ClassVar[tuple[str, ...]]
    #: Negative exit statuses (``JOB_EXEC_*`` of the sources) -> what they mean.
    exec_codes: ClassVar[Mapping[int, str]]
    #: Finds the version in ``qstat --version``'s output (group 1), for this implementation only.
    version_pattern: ClassVar[re.Pattern[str]]
    #: ``qsub``'s option that makes a job array of tasks ``0-N`` (OpenPBS ``-J``, Torque ``-t``).
    array_option: ClassVar[str]
    #: The fewest tasks one array may have (OpenPBS refuses ``-J 0-0``: "illegal -J value").
    min_array_size: ClassVar[int]
    #: The shell expression of a task's index in its job script.
    array_index: ClassVar[str]
    #: The server attribute (``qmgr -c "list server"``) that caps an array's size.
    max_array_attribute: ClassVar[str]
    #: The cap when the server does not set :attr:`max_array_attribute`.
    default_max_array_size: ClassVar[int]
    #: The server attribute capping how many tasks of one array exist at once (Torque's
    #: ``idle_slot_limit``: the others are made as tasks start), and its default; None: all exist.
    task_cap_attribute: ClassVar[str | None] = None
    default_task_cap: ClassVar[int] = 0
    #: Seconds within which a task ``qsub`` made shows in ``qstat`` (Torque makes them in the
    #: background: until then ``qstat`` and ``qdel`` say "Unknown Job Id"); 0: at once.
    tasks_appear_within: ClassVar[float] = 0.0
    #: The shell expression of the job whose ``Priority`` a launch error marks (``qalter -p``).
    launch_mark_job: ClassVar[str] = '"$PBS_JOBID"'
    #: Whether a task's launch error marks its array (OpenPBS cannot ``qalter`` a subjob), not the task.
    marks_array: ClassVar[bool] = False
    #: The largest array script we send: the server hands the whole script to every task's MOM
    #: (1,000 tasks of an 800 kB script ran 2x slower from submission to end than a qsub loop).
    max_array_script_bytes: ClassVar[int] = 128 * 1024
    #: Whether ``pbsnodes`` shows the jobs each MOM reports running (``jobs=`` in its ``status``):
    #: a running job its MOM lost is then found (:mod:`.momcheck`).
    reports_mom_jobs: ClassVar[bool] = False
    #: What the DRMS records as the exit status of a job whose MOM was killed and restarted while
    #: it ran, whatever the job did; None: it records no made-up status (OpenPBS's restarted MOM
    #: requeues the job, which runs again).
    exit_status_after_mom_restart: ClassVar[int | None] = None

    def version_in(self, text: str) -> str | None:
        """The version ``qstat --version`` printed, when ``text`` comes from this implementation."""
        m = self.version_pattern.search(text)
        return m.group(1) if m else None

    @abc.abstractmethod
    def qstat_argv(self, named: Sequence[str], tasks: bool = False) -> list[str]:
        """The ``qstat -f`` of the jobs ``named``, finished ones included; every job when empty (with
        every array task too when ``tasks``: named tasks are shown without asking)."""

    def array_argv(self, size: int) -> list[str]:
        """The ``qsub`` options of an array of ``size`` tasks, numbered from 0."""
        return [self.array_option, f"0-{size - 1}"]

    @staticmethod
    def task_id(array_id: str, index: int) -> str:
        """The id of task ``index`` of the array ``qsub`` named ``array_id``: ``12[].srv`` -> ``12[3].srv``."""
        return array_id.replace("[]", f"[{index}]", 1)

    @staticmethod
    def array_of(job_id: str) -> str | None:
        """The array of task ``job_id`` (``12[3].srv`` -> ``12[].srv``); None for a job that is no task."""
        array_id, n = _TASK_INDEX.subn("[]", job_id, 1)
        return array_id if n else None

    def max_array_size_in(self, server: str) -> int:
        """The largest array we submit, from ``qmgr -c "list server"``'s output: the server's cap,
        and no more tasks than exist at once (:attr:`task_cap_attribute`)."""

        def value(attribute: str, default: int) -> int:
            found = re.search(rf"^\s*{attribute}\s*=\s*(\d+)", server, re.M)
            return int(found.group(1)) if found else default

        size = value(self.max_array_attribute, self.default_max_array_size)
        if self.task_cap_attribute:
            size = min(size, value(self.task_cap_attribute, self.default_task_cap))
        return size

    def delete_unmade(self, task_id: str) -> list[str] | None:
        """The command deleting a task ``qsub`` has not made yet (it then never shows), or None."""
        return None

    @abc.abstractmethod
    def read_status(self, stdout: str) -> dict[str, dict[str, Any]]:
        """A poll's :meth:`qstat_argv` output -> ``{job id: attributes}``, jobs cut short left out;
        :class:`ValueError` when unreadable (see :meth:`text_form`)."""

    def text_form(self, argv: Sequence[str]) -> list[str] | None:
        """The same ``qstat`` asking for text, to read when :meth:`read_status` fails; None: it was text."""
        return None

    @abc.abstractmethod
    def read_listing(self, stdout: str) -> dict[str, dict[str, Any]]:
        """The listing of every job (``qstat_argv([])``) -> ``{job id: attributes}``; :class:`ValueError`
        when cut short (a job looked for by its token may be in the missing part)."""

    @abc.abstractmethod
    def resources(self, nodes: int, cpus: int, config_name: str) -> list[str]:
        """The ``qsub`` options asking for ``nodes`` nodes of ``cpus`` CPUs (``config_name``: the
        parallel configuration, e.g. ``openmp``)."""

    def exec_failure(self, code: int) -> str:
        """What a negative exit status means: PBS ended the job (limit, exec failure)."""
        return self.exec_codes.get(code, f"job exec failure {code}")

    def cancelled_by(self, attrs: Mapping[str, Any]) -> str | None:
        """Who deleted the ended job (``user@host``) when the DRMS records it, else None."""
        return None

    def marked_deleted(self, attrs: Mapping[str, Any]) -> bool:
        """Whether the DRMS marks the ended job as deleted (``qdel``) whatever its exit status."""
        return False

    def __repr__(self) -> str:
        return f"<PBS dialect {self.name}>"


#: ``JOB_EXEC_*`` codes both flavours share (they part from -5 on).
COMMON_EXEC_CODES: Mapping[int, str] = {
    -1: "job exec failed before files", -2: "job exec failed after files", -3: "job exec retry",
    -4: "MOM initialisation aborted the job",
}


class OpenPBSDialect(PBSDialect):
    """OpenPBS / PBS Pro (checked against 23.06.06)."""

    name = "pbspro"
    drms_name = "OpenPBS"
    forgetting = ("OpenPBS keeps ended jobs only with job_history_enable = True, for "
                  "job_history_duration: two weeks by default")
    #: ``-E``: one request for every id, filtered by the server.
    max_named_ids = 1000
    force_delete = ("-W", "force")
    exec_codes = {
        **COMMON_EXEC_CODES, -10: "invalid uid/gid for the job",
        -11: "job rerun", -17: "a hook rejected the job", -19: "a hook deleted the job",
        -20: "mother superior connection failed", -24: "ncpus (burst) limit exceeded",
        -25: "ncpus (sum) limit exceeded", -26: "vmem limit exceeded", -27: "mem limit exceeded",
        -28: "cput limit exceeded", -29: "walltime limit exceeded",
    }
    version_pattern = re.compile(r"pbs_version\s*=\s*(\S+)")
    array_option = "-J"
    min_array_size = 2
    array_index = "$PBS_ARRAY_INDEX"
    max_array_attribute = "max_array_size"
    default_max_array_size = 10000
    # "qalter: Invalid request" for a subjob: a task marks its array ($PBS_ARRAY_ID, unset in a job)
    launch_mark_job = '"${PBS_ARRAY_ID:-$PBS_JOBID}"'
    marks_array = True

    _TERMINATED_BY = re.compile(r"\bterminated by (\S+)\s*$")
    #: ``JOB_SUBSTATE_TERMINATED`` (src/include/job.h): deleted with ``qdel``.
    _SUBSTATE_TERMINATED = 91

    def qstat_argv(self, named: Sequence[str], tasks: bool = False) -> list[str]:
        # -x: finished jobs from the job history; -E: one request for all the ids; -t: subjobs too
        every = ["-t"] if tasks and not named else []
        return ["qstat", "-x", "-f", "-F", "json", *every, *(["-E"] if named else []), *named]

    def read_status(self, stdout: str) -> dict[str, dict[str, Any]]:
        return parse_qstat_json(stdout)

    def text_form(self, argv: Sequence[str]) -> list[str] | None:
        return [a for a in argv if a not in ("-F", "json")]

    def read_listing(self, stdout: str) -> dict[str, dict[str, Any]]:
        return parse_qstat_json(stdout)  # cut short: not JSON, a ValueError

    def resources(self, nodes: int, cpus: int, config_name: str) -> list[str]:
        if config_name.lower() == "openmp":
            return ["-l", f"select={nodes}:ncpus={cpus}:ompthreads={cpus}:mpiprocs=1", "-l", "place=scatter"]
        return ["-l", f"select={nodes}:ncpus={cpus}:mpiprocs={cpus}", "-l", "place=scatter"]

    def cancelled_by(self, attrs: Mapping[str, Any]) -> str | None:
        # "and terminated by user@host" ends the comment of a running job deleted with qdel
        # (svr_jobfunc.c, update_job_finish_comment).
        by = self._TERMINATED_BY.search(str(attrs.get("comment", "")))
        return by.group(1) if by else None

    def marked_deleted(self, attrs: Mapping[str, Any]) -> bool:
        # after qdel the shell may still report its command's death as 128+s before the MOM
        # kills the session (256+s): the substate tells
        return as_int(attrs.get("substate")) == self._SUBSTATE_TERMINATED


class TorqueDialect(PBSDialect):
    """Torque (checked against 6.1-dev). It records no deleter and has no deletion substate
    (its substates stop at 75)."""

    name = "torque"
    drms_name = "Torque"
    forgetting = ("Torque forgets a completed job keep_completed seconds after its end: "
                  "300 by default, a server or queue attribute")
    #: Its qstat makes one request per named id (about 1.5 ms each, against 0.2 ms a listed job).
    max_named_ids = 10
    force_delete = ("-W", "0")
    exec_codes = {
        **COMMON_EXEC_CODES, -8: "exec() of the command failed",
        -9: "could not open the output files", -10: "memory limit exceeded",
        -11: "walltime limit exceeded", -12: "cput limit exceeded", -13: "cgroups creation failed",
        -14: "prologue failed",
    }
    version_pattern = re.compile(r"^\s*Version:\s*(\S+)", re.M)
    array_option = "-t"
    min_array_size = 1
    array_index = "$PBS_ARRAYID"
    max_array_attribute = "max_job_array_size"
    #: Unset: no cap but the task index, at most PBS_MAXJOBARRAY (99999, src/include/pbs_ifl.h).
    default_max_array_size = 100000
    #: DEFAULT_IDLE_SLOT_LIMIT (src/server/job_array.cpp): an array of 400 held tasks shows 300.
    task_cap_attribute = "idle_slot_limit"
    default_task_cap = 300
    #: Measured: 156 of 400 tasks shown at once, 300 two seconds later.
    tasks_appear_within = 60.0
    reports_mom_jobs = True
    #: The restarted MOM (``-p``, the default; ``-r`` and ``-q`` too, measured) finds the job's
    #: session gone and sends its obit with exit status 0 ("actually unknown", scan_non_child_tasks
    #: in src/resmom/linux/mom_mach.c): a job killed with its node reads as ended with 0.
    exit_status_after_mom_restart = 0

    def delete_unmade(self, task_id: str) -> list[str] | None:
        # qdel 12[4].srv: "nonexistent job id" before the task is made; qdel -t 4 12[].srv removes it
        array_id = self.array_of(task_id)
        index = _TASK_INDEX.search(task_id)
        return ["qdel", "-t", index.group(0)[1:-1], array_id] if array_id and index else None

    def qstat_argv(self, named: Sequence[str], tasks: bool = False) -> list[str]:
        # finished jobs stay listed as C for keep_completed seconds (Torque's -x means XML)
        return ["qstat", *(["-t"] if tasks and not named else []), "-f", *named]

    def read_status(self, stdout: str) -> dict[str, dict[str, Any]]:
        return complete_records(stdout, parse_qstat_text(stdout))

    def read_listing(self, stdout: str) -> dict[str, dict[str, Any]]:
        if stdout and not stdout.endswith("\n\n"):
            raise ValueError("qstat's listing was cut short")
        return parse_qstat_text(stdout)

    def resources(self, nodes: int, cpus: int, config_name: str) -> list[str]:
        return ["-l", f"nodes={nodes}:ppn={cpus}"]


#: The OpenPBS / PBS Pro dialect.
OPENPBS: PBSDialect = OpenPBSDialect()
#: The Torque dialect.
TORQUE: PBSDialect = TorqueDialect()
#: Every dialect by name, in the order ``qstat --version``'s output is tried.
DIALECTS: dict[str, PBSDialect] = {d.name: d for d in (OPENPBS, TORQUE)}


def dialect_named(name: str) -> PBSDialect:
    """The dialect called ``name`` (``"pbspro"`` or ``"torque"``)."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise DRMError(f"no PBS dialect {name!r}: {' or '.join(DIALECTS)}") from None


def read_version(text: str) -> tuple[PBSDialect, str]:
    """``qstat --version`` output -> the dialect that printed it and the version."""
    for dialect in DIALECTS.values():
        version = dialect.version_in(text)
        if version is not None:
            return dialect, version
    raise DRMError(f"qstat --version gave neither a PBS Pro nor a Torque version: {text.strip()!r}")


def parse_version(text: str) -> tuple[str, str]:
    """``qstat --version`` output -> ``(implementation, version)``: ``("pbspro", "23.06.06")``,
    ``("torque", "6.1-dev")``."""
    dialect, version = read_version(text)
    return dialect.name, version
