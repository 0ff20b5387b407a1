"""Where ``soma-schedulers run`` puts a job's output when no file is given, and how it shows it.

``run`` shows the job's standard output on its own stdout and the job's stderr on its stderr,
as ``srun`` does, for the streams the user gave no file for (``--stdout``, ``--stderr``,
``--join``). The job writes them to files in a fresh private directory, which is removed after
the end:

* **local** backends (``local_basic``, ``local``): the directory is made under the temporary
  directory, and the files are followed while the job runs (as ``tail -f`` would): the output
  shows as it is written.
* backends driven by **client commands** (``slurm``, ``pbspro``, ``torque``, ``htcondor``, ``drmaa``: they
  have a ``runner``): the job runs elsewhere, as the user the DRMS commands run as, so the directory is
  made by those commands (``mktemp -d`` where they run: ``BRIDGE_SHARED_DIR`` when set, else the
  bridge's own directory, e.g. the ssh user's home, or, without a bridge, the current
  directory, which the compute nodes must see). It belongs to the job's user whatever this
  process's user is (an engine in a container, the DRMS on the host), and the files are read
  back through the same commands (``base64``: byte for byte) after the end, then removed.
* **other** backends (``mpi``, third-party ones): a private directory in the current directory,
  read after the end.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import shutil
import sys
import tempfile
import threading
from typing import IO, Any

from .errors import CommandError, DRMError

__all__ = ["JobOutput", "job_output"]

_PREFIX = "soma-run-"


def _sinks() -> tuple[IO[bytes], IO[bytes]]:
    return sys.stdout.buffer, sys.stderr.buffer


class JobOutput:
    """The files given to the job for the streams to show (``stdout_path``/``stderr_path``, None for
    a stream the user gave a file for), and how they reach this terminal.

    :meth:`start` once the job is submitted, :meth:`finish` after its end (or on any way out): it
    shows what is left to show and removes the directory. This base class shows nothing.
    """

    stdout_path: str | None = None
    stderr_path: str | None = None

    def start(self) -> None:
        """Begin showing the output while the job runs (only where the files can be followed)."""

    def finish(self) -> None:
        """Show the rest of the output, then remove the private directory."""

    def _targets(self) -> list[tuple[str, IO[bytes]]]:
        out, err = _sinks()
        return [(p, sink) for p, sink in ((self.stdout_path, out), (self.stderr_path, err)) if p is not None]


class _FollowedFiles(JobOutput):
    """Local jobs: files under the temporary directory, followed while the job runs."""

    interval = 0.1

    def __init__(self, stdout: bool, stderr: bool) -> None:
        self.dir = tempfile.mkdtemp(prefix=_PREFIX)
        self.stdout_path = os.path.join(self.dir, "stdout") if stdout else None
        self.stderr_path = os.path.join(self.dir, "stderr") if stderr else None
        self._offsets: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="soma-run-output", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            self._pump()

    def _pump(self) -> None:
        for path, sink in self._targets():
            try:
                with open(path, "rb") as fh:
                    fh.seek(self._offsets.get(path, 0))
                    data = fh.read()
            except FileNotFoundError:
                continue  # not opened by the job yet
            if data:
                self._offsets[path] = self._offsets.get(path, 0) + len(data)
                if sink is sys.stderr.buffer:
                    sys.stdout.flush()
                sink.write(data)
                sink.flush()

    def finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._pump()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class _FilesHere(JobOutput):
    """A private directory in the current directory, read after the end."""

    def __init__(self, stdout: bool, stderr: bool) -> None:
        try:
            self.dir = tempfile.mkdtemp(prefix="." + _PREFIX, dir=os.getcwd())
        except OSError as exc:
            raise DRMError(f"cannot make a directory for the job's output in {os.getcwd()}: "
                           f"{exc.strerror} (give --stdout and --stderr files)") from None
        self.stdout_path = os.path.join(self.dir, "stdout") if stdout else None
        self.stderr_path = os.path.join(self.dir, "stderr") if stderr else None

    def finish(self) -> None:
        try:
            for path, sink in self._targets():
                with contextlib.suppress(FileNotFoundError), open(path, "rb") as fh:
                    _write(sink, fh.read())
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class _FilesViaRunner(JobOutput):
    """A private directory made, read and removed by the backend's DRMS command runner."""

    def __init__(self, runner: Any, stdout: bool, stderr: bool) -> None:
        self.runner = runner
        try:
            made = runner.run(["sh", "-c", f'mktemp -d "$PWD/.{_PREFIX}XXXXXX"']).stdout.strip()
        except CommandError as exc:
            raise DRMError(f"cannot make a directory for the job's output where the DRMS commands run "
                           f"({exc}); give --stdout and --stderr files") from None
        if not made.startswith("/") or "\n" in made:
            raise DRMError(f"mktemp gave no directory for the job's output: {made!r}")
        self.dir = made
        self.stdout_path = f"{made}/stdout" if stdout else None
        self.stderr_path = f"{made}/stderr" if stderr else None

    def finish(self) -> None:
        try:
            for path, sink in self._targets():
                encoded = self.runner.run(["sh", "-c", 'test ! -e "$1" || base64 < "$1"', "sh", path]).stdout
                try:
                    _write(sink, base64.b64decode(encoded))
                except (binascii.Error, ValueError):
                    raise DRMError(f"the job's output {path} could not be read back (base64 gave "
                                   f"{encoded[:80]!r})") from None
        finally:
            try:
                self.runner.run(["rm", "-rf", "--", self.dir])
            except CommandError as exc:
                print(f"soma-schedulers: the job's output directory {self.dir} was not removed: {exc}",
                      file=sys.stderr)


def _write(sink: IO[bytes], data: bytes) -> None:
    if data:
        sys.stdout.flush()
        sink.write(data)
        sink.flush()


def job_output(scheduler: Any, stdout: bool, stderr: bool) -> JobOutput:
    """How ``run`` shows the streams ``stdout``/``stderr`` (True: no file given) of a job of ``scheduler``."""
    if not (stdout or stderr):
        return JobOutput()
    from .schedulers.local_scheduler import LocalScheduler

    if isinstance(scheduler, LocalScheduler):
        return _FollowedFiles(stdout, stderr)
    runner = getattr(scheduler, "runner", None)
    if runner is not None and callable(getattr(runner, "run", None)):
        return _FilesViaRunner(runner, stdout, stderr)
    return _FilesHere(stdout, stderr)
