"""The private job scripts of one ``DrmaaScheduler``.

No job data goes through DRMAA (implementations pass argv on differently: SGE joins the arguments
with spaces and hands them to a shell): the job script of :func:`soma_schedulers.scripts.build_script`
is written to a private file (mode 0600, in a private ``mkdtemp`` directory under the scheduler's
``tmp_dir``, which the execution hosts must see at the same path), and DRMAA runs
``/bin/sh <that file>``. A script that cannot start its command writes the reason to
``<script>.launch`` and exits 127. A script is deleted when its job's end is recorded, the
directory when the scheduler is cleaned, unless it holds the scripts of jobs not seen to end.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import tempfile

from ...job import Job
from ...scripts import build_script

__all__ = ["LAUNCH_REPORT", "LAUNCH_SUFFIX", "JobScripts"]

#: Suffix of the file a job script writes when it cannot start its command.
LAUNCH_SUFFIX = ".launch"
#: Shell command run by the job script on a launch error (``$0`` is the script).
LAUNCH_REPORT = f"printf '%s\\n' \"$soma_reason\" >\"$0{LAUNCH_SUFFIX}\" 2>/dev/null"


class JobScripts:
    """The scripts of one scheduler's jobs, under ``root`` (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.dir: str | None = None
        self.files: dict[str, str] = {}  # job id -> its script
        self._seq = itertools.count(1)

    def directory(self) -> str:
        """The private directory (made at the first use)."""
        if self.dir is None:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            self.dir = tempfile.mkdtemp(prefix="jobs-", dir=self.root)
        return self.dir

    def write(self, job: Job) -> str:
        """Write the script of ``job`` and give its path."""
        path = os.path.join(self.directory(), f"{os.getpid()}-{next(self._seq)}.sh")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        # surrogateescape: argv/env values that are not UTF-8 reach the job as their bytes
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(build_script(job, report=LAUNCH_REPORT))
        return path

    def launch_error(self, job_id: str) -> str | None:
        """Why the job's script could not start its command (its ``.launch`` file), None when it could."""
        path = self.files.get(job_id)
        if path is None:
            return None
        try:
            with open(path + LAUNCH_SUFFIX, encoding="utf-8", errors="replace") as fh:
                return fh.read().strip() or "the command could not be started"
        except OSError:
            return None

    def release(self, job_id: str) -> None:
        """The job's end is recorded: delete its script."""
        path = self.files.pop(job_id, None)
        if path is not None:
            self.remove(path)

    @staticmethod
    def remove(path: str) -> None:
        """Delete a script and its ``.launch`` file."""
        for p in (path, path + LAUNCH_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)

    def close(self, logger: logging.Logger | None) -> None:
        """Delete the directory, unless it holds the scripts of jobs not seen to end (they outlive
        the scheduler: attach follows them)."""
        if self.dir is not None and self.files:
            if logger:
                logger.info("%d job script(s) kept in %s for jobs not seen to end", len(self.files), self.dir)
        elif self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        self.files.clear()
