"""The error family of soma_schedulers: every error the library raises is a :class:`DRMError`."""

from __future__ import annotations

from collections.abc import Sequence


class DRMError(Exception):
    """Base class of every error raised by soma_schedulers (Soma-Workflow's name)."""


class ConfigurationError(DRMError, ValueError):
    """A configuration key or value is unknown or malformed."""


class UnknownSchedulerTypeError(ConfigurationError, LookupError):
    """No scheduler implementation is registered under the requested type name."""

    def __init__(self, scheduler_type: str, known: Sequence[str]) -> None:
        self.scheduler_type = scheduler_type
        self.known = tuple(known)
        super().__init__(
            f"unknown scheduler type {scheduler_type!r}; known types: {', '.join(self.known)}"
        )


class SchedulerUnavailableError(DRMError):
    """The scheduler type exists but cannot work here (missing library or command, a third-party
    entry point that cannot be loaded), or is a known name this package does not provide
    (``drmaa2``: see :data:`soma_schedulers.scheduler.NOT_PROVIDED`)."""


class SchedulerClosedError(DRMError):
    """The scheduler was used after ``clean()`` (or after leaving its ``with`` block)."""


class NotSupportedError(DRMError):
    """The backend cannot do this by nature (e.g. follow a job another process submitted,
    when its jobs live in the process that submitted them)."""


class JobSpecError(DRMError, ValueError):
    """A job description is invalid (empty command, wrong field type, ...)."""


class UnknownJobError(DRMError, KeyError):
    """The job id was never returned by this scheduler instance (nor attached to it), or, from
    :meth:`~soma_schedulers.scheduler.Scheduler.attach`, the DRMS does not know it."""

    def __init__(self, job_id: object, message: str | None = None) -> None:
        self.job_id = job_id
        super().__init__(message or f"unknown job id {job_id!r}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class SubmissionError(DRMError):
    """The DRMS refused a job; the message is the DRMS's own."""


class ArraysRefused(SubmissionError):
    """The DRMS does not take job arrays here (``MaxArraySize=0``, arrays disabled by the site):
    the jobs are submitted one by one instead (see :mod:`soma_schedulers.arrays`)."""


class CommandError(DRMError):
    """A DRMS command exited with an error."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str, stdout: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        super().__init__(self._message(stderr.strip() or stdout.strip() or "no output"))

    def _message(self, detail: str) -> str:
        """The one-line message: the command, its exit status when it has one, what it said."""
        status = f" (exit {self.returncode})" if self.returncode is not None else ""
        return " ".join(f"command {self.argv[0] if self.argv else '?'!s} failed{status}: {detail}".split())


class CommandTimeoutError(CommandError):
    """A DRMS command did not answer within its timeout."""

    def __init__(self, argv: Sequence[str], timeout: float, where: str = "") -> None:
        self.timeout = timeout
        super().__init__(argv, None, f"no answer within {timeout:g} s{' ' + where if where else ''}")


class CommandNotFoundError(CommandError):
    """A DRMS client command is not installed (locally or on the bridged host).

    The message is the explanation alone (it names the command): ``sbatch is not installed or
    not on PATH (...)``.
    """

    def _message(self, detail: str) -> str:
        return " ".join(detail.split())


class BridgeError(CommandError):
    """The out-of-container bridge (ssh or another prefix) could not reach the host.

    ``reason`` says which failure: ``"unreachable"`` (no connection), ``"auth"``
    (authentication refused), ``"hostkey"`` (unknown or changed host key) or
    ``"failed"``; ``transient`` is False when retrying cannot help.
    """

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str, stdout: str = "",
                 *, reason: str = "failed", transient: bool = True) -> None:
        self.reason = reason
        self.transient = transient
        super().__init__(argv, returncode, stderr, stdout)
