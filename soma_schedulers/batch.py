"""What every backend driven through DRMS command-line tools (Slurm, PBS, Torque, ...) shares.

The job table, the poll cache and the end-state rules are the polled base's
(:class:`~soma_schedulers.polled.PolledScheduler`); this class adds the
:class:`~soma_schedulers.runner.CommandRunner` that runs the DRMS's commands (timeouts,
retries, the bridge out of a container), a submission that is never retried blindly
(:meth:`CommandLineScheduler.submit_with_token`: a lost answer is found again by the job's
token), and :meth:`~CommandLineScheduler.unavailable_reason` from the client command.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from .config import BridgeConfig, SchedulerConfig
from .errors import BridgeError, CommandError, CommandNotFoundError, CommandTimeoutError, SubmissionError
from .polled import Observation, PolledScheduler, same_user
from .runner import CommandRunner, container_markers

__all__ = ["CommandLineScheduler", "Observation", "same_user"]


class CommandLineScheduler(PolledScheduler):
    """Base of the backends driven through DRMS command-line tools."""

    #: A client command that must exist where commands run (bridge detection).
    probe_command: ClassVar[str] = ""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(config)
        self.runner = CommandRunner.for_config(self.config, self.probe_command or None)

    def job_with_token(self, token: str) -> str | None:
        """The id of the job carrying ``token``, None when no job does (one DRMS listing).

        Raise :class:`CommandError` or :class:`ValueError` (output incomplete) to be asked
        again. A backend whose submissions carry no token keeps this default.
        """
        return None

    # -- helpers for backends ---------------------------------------------------------------
    def submit_with_token(self, argv: Sequence[str], script: bytes, token: str,
                          job_id_of: Callable[[str], str | None],
                          refused: Callable[[CommandError], SubmissionError]) -> str:
        """Run the submission command ``argv`` (``script`` on stdin), whose job carries ``token``.

        Never retried blindly: when the answer is lost (timeout, dropped bridge) or is no
        complete line with an id (``job_id_of`` gives None), the job is looked for by its
        token (:meth:`job_with_token`), so a job that was made is never left untracked.
        ``refused`` turns the command's own error (the DRMS said no) into the error raised.
        """
        try:
            result = self.runner.run(argv, input=script, retry=False)
        except CommandNotFoundError as exc:
            raise SubmissionError(f"cannot submit: {exc}") from None
        except (BridgeError, CommandTimeoutError) as exc:
            found = self.find_submitted(token)
            if found is None:
                raise SubmissionError(f"cannot submit: {exc} (and no job carries its token)") from None
            if self.logger:
                self.logger.warning("%s's answer was lost (%s); found job %s by its token", argv[0], exc, found)
            return found
        except CommandError as exc:
            raise refused(exc) from None
        job_id = job_id_of(result.stdout) if result.stdout.endswith("\n") else None
        if job_id is None:
            job_id = self.find_submitted(token)  # an answer cut short is no answer
            if job_id is None:
                raise SubmissionError(f"{argv[0]} gave no job id: {result.stdout.strip()!r} "
                                      f"{result.stderr.strip()!r}")
        return job_id

    def find_submitted(self, token: str, attempts: int = 5) -> str | None:
        """The id of the job carrying ``token``, asked up to ``attempts`` times with backoff
        while the DRMS fails or its listing is incomplete (a job that exists but is not found
        would run untracked)."""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.runner.backoff * attempt)
            try:
                return self.job_with_token(token)
            except (CommandError, ValueError) as exc:
                if self.logger:
                    self.logger.warning("looking for a lost submission: %s", exc)
        return None

    @classmethod
    def unavailable_reason(cls, config: Any = None) -> str | None:
        """Why this type cannot run here: its client command (``probe_command``) is not on PATH and
        no bridge reaches one (``OUT_OF_CONTAINER`` ``none``, or ``auto`` outside a container, where the
        automatic bridge is not used). A configured bridge (``prefix``, ``ssh``) is taken as working:
        checking it would run a command on the far side."""
        if not cls.probe_command:
            return None
        bridge = config.bridge if isinstance(config, SchedulerConfig) else BridgeConfig()
        if bridge.mode in ("prefix", "ssh") or shutil.which(cls.probe_command):
            return None
        if bridge.mode == "auto":
            if container_markers():
                return None  # the automatic ssh bridge to the host
            return (f"{cls.probe_command} is not on PATH and no bridge is configured (OUT_OF_CONTAINER = "
                    "prefix with BRIDGE_COMMAND, or ssh with BRIDGE_SSH_HOST)")
        return f"{cls.probe_command} is not on PATH (OUT_OF_CONTAINER = none: no bridge)"

    def clean(self) -> None:
        """Close the bridge and forget every job (the instance is unusable afterwards)."""
        self.runner.close()
        super().clean()
