"""The private job scripts of one ``DrmaaScheduler``.

No job data goes through DRMAA (implementations pass argv on differently: SGE joins the arguments
with spaces and hands them to a shell): the job script of :func:`soma_schedulers.scripts.build_script`
is written to a private file (mode 0600, in a private ``mkdtemp`` directory under the scheduler's
``tmp_dir``, which the execution hosts must see at the same path), and DRMAA runs
``/bin/sh <that file>``. A script that cannot start its command writes the reason to
``<script>.launch`` and exits 127. A script is deleted when its job's end is recorded, the
directory when the scheduler is cleaned, unless it holds the scripts of jobs not seen to end.

A job array's tasks share one script (:func:`soma_schedulers.arrays.array_script`: task ``i`` runs
its own job's script), chosen by the task index variable the DRMS sets (SGE: ``$SGE_TASK_ID``);
a task that cannot start its command writes ``<script>.launch.<i>``. The array's script is
deleted when the ends of all its tasks are recorded.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence

from ...arrays import array_script, chunk_sizes
from ...job import Job
from ...scripts import build_script

__all__ = ["LAUNCH_REPORT", "LAUNCH_SUFFIX", "MAX_ARRAY_SCRIPT_BYTES", "JobScripts", "task_report"]

#: Suffix of the file a job script writes when it cannot start its command.
LAUNCH_SUFFIX = ".launch"
#: Shell command run by the job script on a launch error (``$0`` is the script).
LAUNCH_REPORT = f"printf '%s\\n' \"$soma_reason\" >\"$0{LAUNCH_SUFFIX}\" 2>/dev/null"
#: The largest array script: every task reads and parses it whole (``/bin/sh``, about 30 ms a MiB).
MAX_ARRAY_SCRIPT_BYTES = 1 << 20


def task_report(index: str) -> str:
    """The launch-error report of an array task whose index is in variable ``index``."""
    return f"printf '%s\\n' \"$soma_reason\" >\"$0{LAUNCH_SUFFIX}.${{{index}}}\" 2>/dev/null"


class JobScripts:
    """The scripts of one scheduler's jobs, under ``root`` (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.dir: str | None = None
        self.files: dict[str, str] = {}  # job id -> its script
        self.tasks: dict[str, int] = {}  # array task id -> its index
        self.users: dict[str, int] = {}  # script -> how many of its jobs have no recorded end
        self._seq = itertools.count(1)

    def directory(self) -> str:
        """The private directory (made at the first use)."""
        if self.dir is None:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            self.dir = tempfile.mkdtemp(prefix="jobs-", dir=self.root)
        return self.dir

    def write(self, job: Job) -> str:
        """Write the script of ``job`` and give its path."""
        return self._write(build_script(job, report=LAUNCH_REPORT))

    def write_array(self, jobs: Sequence[Job], index: str, first: int) -> str:
        """Write the script of an array whose task ``first + n`` runs ``jobs[n]`` (``index``: the
        variable holding a task's index) and give its path."""
        scripts = [build_script(job, report=task_report(index)) for job in jobs]
        return self._write(array_script(scripts, f"${{{index}}}", first))

    def chunks(self, jobs: Sequence[Job]) -> list[int]:
        """The sizes of the arrays ``jobs`` are cut into, in order, each script under
        :data:`MAX_ARRAY_SCRIPT_BYTES`."""
        return chunk_sizes([len(build_script(job, report=task_report("SOMA_TASK")).encode("utf-8", "surrogateescape"))
                            + 16 for job in jobs], MAX_ARRAY_SCRIPT_BYTES)

    def _write(self, text: str) -> str:
        path = os.path.join(self.directory(), f"{os.getpid()}-{next(self._seq)}.sh")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        # surrogateescape: argv/env values that are not UTF-8 reach the job as their bytes
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(text)
        return path

    def add(self, ids: Sequence[str], path: str, first: int | None = None) -> None:
        """``ids`` run the script ``path``: one job, or (``first``: the first task's index) the tasks
        of an array, in order."""
        for n, job_id in enumerate(ids):
            self.files[job_id] = path
            if first is not None:
                self.tasks[job_id] = first + n
        self.users[path] = self.users.get(path, 0) + len(ids)

    def launch_file(self, job_id: str) -> str | None:
        """The file where the job's script writes why it could not start its command."""
        path = self.files.get(job_id)
        if path is None:
            return None
        task = self.tasks.get(job_id)
        return path + LAUNCH_SUFFIX + ("" if task is None else f".{task}")

    def launch_error(self, job_id: str) -> str | None:
        """Why the job's script could not start its command (its ``.launch`` file), None when it could."""
        launch = self.launch_file(job_id)
        if launch is None:
            return None
        try:
            with open(launch, encoding="utf-8", errors="replace") as fh:
                return fh.read().strip() or "the command could not be started"
        except OSError:
            return None

    def release(self, job_id: str) -> None:
        """The job's end is recorded: delete its launch-error file, and its script once no other job
        (task of the same array) needs it."""
        launch = self.launch_file(job_id)
        path = self.files.pop(job_id, None)
        self.tasks.pop(job_id, None)
        if path is None or launch is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(launch)
        left = self.users.get(path, 1) - 1
        if left > 0:
            self.users[path] = left
            return
        self.users.pop(path, None)
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
        self.tasks.clear()
        self.users.clear()
