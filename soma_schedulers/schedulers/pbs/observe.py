"""What a job's ``qstat -f`` attributes say, as the contract's :class:`Observation`; and the job
script's launch-error mark that makes those attributes tell a launch error.

End states, from the exit status the MOM records (``Exit_status``, Torque's ``exit_status``):

* none: the job never ran (deleted while queued or held);
* ``>= 256``: the MOM killed the job's session with signal ``status - 256`` (``qdel``: ours is
  ``killed_by_user``, anyone else's ``aborted``). A dialect may also mark a deleted job whatever
  its status (OpenPBS's substate 91: after ``qdel`` the shell may report ``128 + s`` first);
* ``128 + s`` (s <= 64): the command died of signal ``s``. The MOM runs the script through the
  user's login shell, which reports a child's death by signal ``s`` as ``128 + s``: an exit code
  of 129-192 is therefore read as a signal (the shell convention);
* negative: PBS ended the job (``JOB_EXEC_*``, the dialect's :attr:`~.PBSDialect.exec_codes`:
  walltime, memory, cput limits, exec failure): ``aborted``;
* 127 with the launch-error mark: the script could not start the command. The script marks
  it by setting the job's ``Priority`` (user-alterable while the job runs, in both flavours)
  to one of :data:`LAUNCH_PRIORITIES` with ``qalter`` before exiting 127.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from ... import constants as C
from ...polled import Observation
from ...scripts import LAUNCH_ERROR_EXIT
from .dialects import PBSDialect, dialect_named
from .parse import as_int, exit_status_of, usage_of

__all__ = ["LAUNCH_PRIORITIES", "hold_status", "job_observation", "launch_report"]

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


def launch_report(job: str = '"$PBS_JOBID"') -> str:
    """The shell code a job script runs on a launch error: mark the job through its Priority
    (``job``: the shell expression of the job to mark, the dialect's
    :attr:`~.PBSDialect.launch_mark_job`: OpenPBS marks a task's array)."""
    cases = " ".join(f"{shlex.quote(reason)}*) p={prio};;" for reason, prio in LAUNCH_PRIORITIES.items())
    return (
        f'case "$soma_reason" in {cases} *) p={LAUNCH_PRIORITIES["command not found"]};; esac; '
        f'{{ command -v qalter || PATH="$PATH:{_QALTER_PATH}"; qalter -p "$p" {job}; }} >/dev/null 2>&1'
    )


def hold_status(attrs: Mapping[str, Any]) -> str:
    """The contract status of a held job, from ``Hold_Types`` (u: user; o, s, p: system)."""
    types = str(attrs.get("Hold_Types", ""))
    user = "u" in types
    system = any(c in types for c in "osp")
    if user and system:
        return C.USER_SYSTEM_ON_HOLD
    return C.USER_ON_HOLD if user else C.SYSTEM_ON_HOLD


def job_observation(attrs: Mapping[str, Any], dialect: PBSDialect | str,
                    marked: Mapping[str, Any] | None = None) -> Observation:
    """What one job's ``qstat -f`` attributes say, as an :class:`Observation` (with its
    ``Job_Owner``, and who deleted it when the dialect records it). ``dialect``: the
    :class:`PBSDialect` that printed them, or its name (``"pbspro"``, ``"torque"``).
    ``marked``: the attributes whose ``Priority`` carries the launch-error mark, when not the
    job's own (an OpenPBS array task: its array's)."""
    if isinstance(dialect, str):
        dialect = dialect_named(dialect)
    state = str(attrs.get("job_state", "")).strip()
    owner = str(attrs.get("Job_Owner") or "") or None
    if state not in _ENDED_STATES:
        # an OpenPBS subjob of a held array is Q with the array's Hold_Types
        if state == "H" or (state == "Q" and any(c in str(attrs.get("Hold_Types", "")) for c in "uosp")):
            return Observation(hold_status(attrs), owner=owner)
        return Observation(_LIVE_STATES.get(state, C.UNDETERMINED), owner=owner)
    started = any(k in attrs for k in ("stime", "start_time", "exec_host"))
    usage = usage_of(attrs) if started else None
    code = exit_status_of(attrs)
    obs = Observation(C.DONE, ended=True, started=started, usage=usage, owner=owner,
                      cancelled_by=dialect.cancelled_by(attrs))
    if code is None:
        obs.cancelled = True  # deleted before (or without) an exit status
        return obs
    if code < 0:
        obs.aborted = f"PBS ended the job: {dialect.exec_failure(code)} (exit status {code})"
        return obs
    if code >= 256:
        # The MOM killed the job's session: qdel (ours or someone else's).
        obs.term_sig = code - 256
        obs.cancelled = True
        return obs
    if 128 < code <= 128 + 64:
        obs.term_sig = code - 128
        obs.cancelled = dialect.marked_deleted(attrs)
        return obs
    obs.exit_code = code
    priority = as_int((attrs if marked is None else marked).get("Priority"))
    if code == LAUNCH_ERROR_EXIT and priority in _LAUNCH_BY_PRIORITY:
        obs.launch_error = _LAUNCH_BY_PRIORITY[priority]
    return obs
