"""Job status and exit-status strings, exactly as Soma-Workflow defines them.

These strings are a wire format: engines store them in databases, so they
must never change. Each constant is exported by name and collected in the
``JOB_STATUS`` and ``JOB_EXIT_STATUS`` tuples (in Soma-Workflow's order).
"""

from __future__ import annotations

from typing import Final

NOT_SUBMITTED: Final = "not_submitted"
UNDETERMINED: Final = "undetermined"
QUEUED_ACTIVE: Final = "queued_active"
SYSTEM_ON_HOLD: Final = "system_on_hold"
USER_ON_HOLD: Final = "user_on_hold"
USER_SYSTEM_ON_HOLD: Final = "user_system_on_hold"
RUNNING: Final = "running"
SYSTEM_SUSPENDED: Final = "system_suspended"
USER_SUSPENDED: Final = "user_suspended"
USER_SYSTEM_SUSPENDED: Final = "user_system_suspended"
DONE: Final = "done"
FAILED: Final = "failed"
DELETE_PENDING: Final = "delete_pending"
KILL_PENDING: Final = "kill_pending"
SUBMISSION_PENDING: Final = "submission_pending"
WARNING: Final = "warning"

JOB_STATUS: Final = (
    NOT_SUBMITTED,
    UNDETERMINED,
    QUEUED_ACTIVE,
    SYSTEM_ON_HOLD,
    USER_ON_HOLD,
    USER_SYSTEM_ON_HOLD,
    RUNNING,
    SYSTEM_SUSPENDED,
    USER_SUSPENDED,
    USER_SYSTEM_SUSPENDED,
    DONE,
    FAILED,
    DELETE_PENDING,
    KILL_PENDING,
    SUBMISSION_PENDING,
    WARNING,
)

EXIT_UNDETERMINED: Final = "exit_status_undetermined"
EXIT_ABORTED: Final = "aborted"
FINISHED_REGULARLY: Final = "finished_regularly"
FINISHED_TERM_SIG: Final = "finished_signal"
FINISHED_UNCLEAR_CONDITIONS: Final = "finished_unclear_condition"
USER_KILLED: Final = "killed_by_user"
EXIT_NOTRUN: Final = "aborted_before_running"

JOB_EXIT_STATUS: Final = (
    EXIT_UNDETERMINED,
    EXIT_ABORTED,
    FINISHED_REGULARLY,
    FINISHED_TERM_SIG,
    FINISHED_UNCLEAR_CONDITIONS,
    USER_KILLED,
    EXIT_NOTRUN,
)

#: States after which a job never changes again.
END_STATES: Final = frozenset({DONE, FAILED})
#: States of a job that waits in a queue (held or not).
WAITING_STATES: Final = frozenset(
    {QUEUED_ACTIVE, SYSTEM_ON_HOLD, USER_ON_HOLD, USER_SYSTEM_ON_HOLD}
)
