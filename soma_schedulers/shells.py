"""Long-lived shells that run DRMS commands one at a time, and a pool of them.

The out-of-container bridges start a command through a costly door: an ssh session, or a
``docker exec`` (about 80 ms of dockerd's time each). A :class:`PersistentShell` pays it once:
it is a ``/bin/sh`` behind that door, reading command lines on its input; a command then costs a
fork and exec on the far side. :class:`ShellPool` keeps up to ``max_shells`` of them, one command
at a time each, made when every one is busy.

Each command is one line of the shell's input: the command (already quoted with
:func:`shlex.join`) with its stdin redirected (``/dev/null``, or a here-document decoded by
``base64 -d``, so any bytes get through), then its exit status and a random end mark printed on
stdout and on stderr.
"""

from __future__ import annotations

import base64
import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["PersistentShell", "ShellGone", "ShellPool", "execute", "kill_group"]


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` and its process group, reap it, close its pipes (never blocks on them)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def execute(argv: Sequence[str], input: bytes | None, timeout: float) -> tuple[int, bytes, bytes]:
    """Run ``argv`` in its own session; SIGKILL its whole process group after ``timeout``.

    Raises :class:`subprocess.TimeoutExpired`, or :class:`OSError` when it cannot start.
    """
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        out, err = proc.communicate(input, timeout=max(timeout, 0.001))
    except BaseException:  # the timeout, or an interrupt: leave nothing behind
        kill_group(proc)
        raise
    return proc.returncode, out, err



class ShellGone(Exception):
    """The shell ended (its session closed, its container went); ``args[0]`` is its stderr."""


class PersistentShell:
    """One ``/bin/sh`` started by ``argv``, running one command line at a time."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.token = os.urandom(16).hex()
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            os.set_blocking(pipe.fileno(), False)  # type: ignore[union-attr]
        self.used = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def script(self, command: str, input: bytes | None) -> bytes:
        """The shell input that runs ``command`` and marks its end."""
        t = self.token
        if input is None:
            line = f"{command} </dev/null; soma_rc=$?\n"
        else:
            data = base64.encodebytes(input).decode("ascii")
            # The here-document starts after the line's first unquoted newline: after `soma_rc=$?`.
            line = f"base64 -d <<'{t}' | {{ {command}; }}; soma_rc=$?\n{data}{t}\n"
        return f"{line}printf '\\n%s %s\\n' {t} \"$soma_rc\"; printf '\\n%s\\n' {t} >&2\n".encode()

    def run(self, command: str, input: bytes | None, deadline: float) -> tuple[int, bytes, bytes]:
        """Run one command line; raises TimeoutExpired at ``deadline``, ShellGone if the shell ends."""
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        pending = memoryview(self.script(command, input))
        token = self.token.encode()
        out_mark, err_mark = b"\n" + token + b" ", b"\n" + token + b"\n"
        out, err = bytearray(), bytearray()
        rc: int | None = None
        err_done = False
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdin, selectors.EVENT_WRITE)
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            sel.register(self.proc.stderr, selectors.EVENT_READ)
            while rc is None or not err_done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(command, 0)
                for key, _ in sel.select(remaining):
                    if key.fileobj is self.proc.stdin:
                        try:
                            pending = pending[os.write(key.fd, pending):]
                        except BrokenPipeError:
                            raise ShellGone(self._last_words(err)) from None
                        if not pending:
                            sel.unregister(self.proc.stdin)
                        continue
                    data = os.read(key.fd, 65536)
                    if not data:
                        raise ShellGone(self._last_words(err))
                    (out if key.fileobj is self.proc.stdout else err).extend(data)
                if rc is None:
                    at = out.find(out_mark)
                    end = out.find(b"\n", at + len(out_mark)) if at >= 0 else -1
                    if end >= 0:
                        rc = int(out[at + len(out_mark):end])
                        del out[at:]
                if not err_done and err.endswith(err_mark):
                    err_done = True
                    del err[-len(err_mark):]
        self.used = time.monotonic()
        return rc, bytes(out), bytes(err)

    def _last_words(self, err: bytearray, wait: float = 1.0) -> str:
        """The shell's stderr once it ended: what was read, and the rest (up to EOF, at most ``wait`` s).

        Its stdin or stdout may close before its stderr is read (a ``docker exec`` whose container
        is gone says why on stderr): the reason would be lost otherwise.
        """
        assert self.proc.stderr is not None
        deadline = time.monotonic() + wait
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stderr, selectors.EVENT_READ)
            while (remaining := deadline - time.monotonic()) > 0 and sel.select(remaining):
                try:
                    data = os.read(self.proc.stderr.fileno(), 65536)
                except OSError:
                    break
                if not data:
                    break
                err.extend(data)
        return bytes(err).decode("utf-8", "replace")

    def close(self, wait: float = 0.0) -> None:
        """End the shell: EOF on its input, then SIGKILL after ``wait`` seconds."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(wait)
        kill_group(self.proc)


class ShellPool:
    """Up to ``max_shells`` :class:`PersistentShell` started by ``argv``, shared by threads.

    ``before_start(argv, deadline)`` runs before a shell is made, with the argv of the command
    that needs it (the ssh bridge starts its shared connection there, so authentication errors
    show as such, naming the command).
    """

    def __init__(self, argv: Sequence[str], max_shells: int,
                 before_start: Callable[[Sequence[str], float], None] | None = None) -> None:
        self.argv = list(argv)
        self.max_shells = max(1, max_shells)
        self._before_start = before_start
        self._shells: list[PersistentShell] = []
        self._idle: list[PersistentShell] = []
        self._starting = 0
        self._cond = threading.Condition()

    def count(self) -> int:
        """Shells open now."""
        with self._cond:
            return len(self._shells)

    def run(self, command: str, input: bytes | None, deadline: float,
            argv: Sequence[str] = ()) -> tuple[int, bytes, bytes]:
        """Run ``command`` (the shell line for ``argv``) on an idle shell, made if none is idle and
        fewer than ``max_shells`` are open, else waited for: ``(rc, stdout, stderr)``. A shell
        that fails is dropped."""
        shell = self._take(command, argv, deadline)
        try:
            result = shell.run(command, input, deadline)
        except BaseException:
            self._drop(shell)
            raise
        with self._cond:
            self._idle.append(shell)
            self._cond.notify()
        return result

    def _take(self, command: str, argv: Sequence[str], deadline: float) -> PersistentShell:
        with self._cond:
            while True:
                while self._idle:
                    shell = self._idle.pop()
                    if shell.alive():
                        return shell
                    self._forget(shell)
                if len(self._shells) + self._starting < self.max_shells:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(remaining):
                    raise subprocess.TimeoutExpired(command, 0)
            self._starting += 1
        started: PersistentShell | None = None
        try:
            if self._before_start is not None:
                self._before_start(argv, deadline)
            started = PersistentShell(self.argv)
            started.run(":", None, deadline)  # a login shell's greeting, if any, goes here
        except BaseException:
            if started is not None:
                started.close()
                started = None
            raise
        finally:
            with self._cond:
                self._starting -= 1
                if started is not None:
                    self._shells.append(started)
                self._cond.notify()
        return started

    def _forget(self, shell: PersistentShell) -> None:
        if shell in self._shells:
            self._shells.remove(shell)
        self._cond.notify()

    def _drop(self, shell: PersistentShell) -> None:
        shell.close()
        with self._cond:
            self._forget(shell)

    def close(self) -> None:
        """End every shell (EOF to all first, so they end together)."""
        with self._cond:
            shells, self._shells, self._idle = self._shells, [], []
        for shell in shells:
            with contextlib.suppress(OSError):
                shell.proc.stdin.close()  # type: ignore[union-attr]
        for shell in shells:
            shell.close(wait=1.0)
