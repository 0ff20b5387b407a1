"""What a job's end looks like to callers: :class:`ExitInfo`, and one constructor per shape.

The contract (docs/contract.md, "Exit information") fixes which fields each exit status carries;
the constructors write those shapes once, so no backend builds a 4-tuple by hand.
"""

from __future__ import annotations

from typing import NamedTuple

from . import constants as C

__all__ = ["ExitInfo"]


class ExitInfo(NamedTuple):
    """What :meth:`Scheduler.get_job_exit_info` returns (a plain 4-tuple to callers)."""

    exit_status: str
    exit_value: int | None
    term_sig: int | None
    resource_usage: bytes | None

    @classmethod
    def finished(cls, exit_value: int | None, usage: bytes | None = None) -> ExitInfo:
        """The job's command ended by itself with ``exit_value``."""
        return cls(C.FINISHED_REGULARLY, exit_value, None, usage)

    @classmethod
    def signalled(cls, term_sig: int | None, usage: bytes | None = None) -> ExitInfo:
        """The job's command died of signal ``term_sig`` that nobody here sent."""
        return cls(C.FINISHED_TERM_SIG, None, term_sig, usage)

    @classmethod
    def killed(cls, term_sig: int | None = None, usage: bytes | None = None) -> ExitInfo:
        """``kill_job`` (or the job's owner) ended a job that had started."""
        return cls(C.USER_KILLED, None, term_sig, usage)

    @classmethod
    def not_run(cls) -> ExitInfo:
        """The job ended without ever running (killed while queued or held)."""
        return cls(C.EXIT_NOTRUN, None, None, None)

    @classmethod
    def aborted(cls, exit_value: int | None = None, term_sig: int | None = None,
                usage: bytes | None = None) -> ExitInfo:
        """The DRMS or this library ended the job (limits, launch error, lost worker, DRMS gone)."""
        return cls(C.EXIT_ABORTED, exit_value, term_sig, usage)

    @classmethod
    def undetermined(cls) -> ExitInfo:
        """No end is known yet (the job still lives, or the DRMS cannot say)."""
        return cls(C.EXIT_UNDETERMINED, None, None, None)
