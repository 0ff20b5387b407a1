"""PBS Pro / OpenPBS and Torque through their command-line tools (types ``pbspro`` and ``torque``).

One implementation serves both; what differs is a :class:`PBSDialect` (:mod:`.dialects`),
chosen once per scheduler: :class:`PBSProScheduler` detects it from ``qstat --version``
(``pbs_version = 23.06.06`` or ``Version: 6.1-dev``) unless ``OPTION_FLAVOUR`` names it;
:class:`TorqueScheduler` speaks Torque.

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
a request per named id), every job is listed instead and filtered here. End states: :mod:`.observe`.

``attach``: the poll's ``qstat`` (OpenPBS: the history too), each job's ``Job_Owner`` kept. OpenPBS
appends ``and terminated by user@host`` to the comment of a running job someone deleted; Torque
records no deleter (see docs/pbs.md).

``kill_job``: ``qdel``; a job still running ``force_kill_after`` seconds later (default 15: OpenPBS
waits ``kill_delay``, 10 s by default, between SIGTERM and SIGKILL; a MOM that is down never
answers) is deleted with ``qdel -W force`` (OpenPBS) or ``qdel -W 0`` (Torque), once.

Modules: :mod:`.parse` (reading qstat's outputs), :mod:`.dialects` (what differs),
:mod:`.observe` (attributes -> end states), :mod:`.scheduler` (the two types).
"""

from __future__ import annotations

from .dialects import DIALECTS, OPENPBS, TORQUE, PBSDialect, dialect_named, parse_version, read_version
from .observe import LAUNCH_PRIORITIES, hold_status, job_observation, launch_report
from .parse import (
    TOKEN_VAR,
    carries_token,
    complete_records,
    exit_status_of,
    job_name,
    lookup,
    parse_qstat_json,
    parse_qstat_text,
    usage_of,
)
from .scheduler import PBSProScheduler, TorqueScheduler

__all__ = [
    "DIALECTS",
    "LAUNCH_PRIORITIES",
    "OPENPBS",
    "TOKEN_VAR",
    "TORQUE",
    "PBSDialect",
    "PBSProScheduler",
    "TorqueScheduler",
    "carries_token",
    "complete_records",
    "dialect_named",
    "exit_status_of",
    "hold_status",
    "job_name",
    "job_observation",
    "launch_report",
    "lookup",
    "parse_qstat_json",
    "parse_qstat_text",
    "parse_version",
    "read_version",
    "usage_of",
]
