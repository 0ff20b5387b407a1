"""The ssh bridge of :class:`~soma_schedulers.runner.CommandRunner`: one ssh target.

:class:`SshBridge` builds the ``ssh`` command lines (POSIX quoting with :func:`shlex.join`),
keeps one shared connection (a ControlMaster, its socket in a private 0700 directory, stopped
when the bridge goes) with long-lived ``/bin/sh`` processes over it
(:class:`~soma_schedulers.shells.ShellPool`), and turns ssh's own messages (exit status 255)
into :class:`~soma_schedulers.errors.BridgeError` with a ``reason`` (:data:`SSH_FAILURES`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence

from .config import BridgeConfig
from .errors import BridgeError, CommandNotFoundError, CommandTimeoutError
from .shells import ShellPool, execute, kill_group

__all__ = ["SSH_FAILURES", "SshBridge"]

log = logging.getLogger("soma_schedulers.runner")  # the runner's: one logger for the commands

# ssh's own messages (exit status 255), most specific first: (reason, transient, pattern).
SSH_FAILURES = (
    ("hostkey", False, re.compile(
        r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|host key is known|"
        r"Host key for .* has changed")),
    ("auth", False, re.compile(
        r"Permission denied|Too many authentication failures|no mutual signature|"
        r"Authentication failed|Received disconnect.*[Aa]uth")),
    ("unreachable", True, re.compile(
        r"Could not resolve hostname|Name or service not known|Temporary failure in name resolution|"
        r"Connection refused|No route to host|Connection timed out|Operation timed out|"
        r"Network is unreachable|Cannot assign requested address|kex_exchange_identification|"
        r"banner exchange|Connection reset by peer")),
)
_SSH_OWN = re.compile(r"^(?:ssh:|mux_client|Control socket|ControlSocket|Connection to .* closed)", re.M)


class SshBridge:
    """One ssh target: command lines, the shared connection and its shells, failure messages."""

    #: Seconds an idle master connection stays up (ours; BRIDGE_SSH_OPTIONS can override).
    persist = 120

    def __init__(self, cfg: BridgeConfig, host: str, timeout: float, max_sessions: int) -> None:
        self.host = host
        self.target = f"{cfg.user + '@' if cfg.user else ''}{host}{':' + str(cfg.port) if cfg.port else ''}"
        self.shared_dir = cfg.shared_dir
        self.reuse = cfg.reuse
        self.login = cfg.login
        # ssh keeps the first value it sees for an option: the user's options come first.
        opts = ["ssh", *cfg.ssh_options, "-T",
                "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={max(1, int(min(timeout, 15)))}",
                "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]
        if cfg.port:
            opts += ["-p", str(cfg.port)]
        if cfg.identity_file:
            opts += ["-i", cfg.identity_file, "-o", "IdentitiesOnly=yes"]
        if cfg.user:
            opts += ["-l", cfg.user]
        self.control_dir: str | None = None
        self.socket = ""
        if self.reuse:
            self.control_dir = _private_dir()
            self.socket = os.path.join(self.control_dir, "master")
            opts += ["-o", "ControlPath=" + self.socket.replace("%", "%%")]
        else:
            opts += ["-o", "ControlPath=none"]
        self.options = opts
        self.client = [*opts, "-o", "ControlMaster=no", "--", host]
        self._master_lock = threading.Lock()
        # Shells over the shared connection: at most max_sessions (sshd allows MaxSessions, 10, per
        # connection), made when every one is busy, each used by one command at a time. /bin/sh reads
        # the commands, whatever the user's login shell (`exec` is in every shell).
        shell = "exec /bin/sh -l" if self.login else "exec /bin/sh"
        self.pool = ShellPool([*self.client, shell], max_sessions, self.ensure_master)
        self._finalizer = weakref.finalize(self, _stop_master, list(opts), host, self.control_dir, os.getpid())

    def remote_command(self, argv: Sequence[str]) -> str:
        """The command string for the remote login shell (POSIX quoting)."""
        command = shlex.join(argv)
        if self.shared_dir:
            command = f"cd -- {shlex.quote(self.shared_dir)} && {command}"
        return command

    def _master_alive(self) -> bool:
        if not os.path.exists(self.socket):
            return False
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def ensure_master(self, argv: Sequence[str], deadline: float) -> None:
        """Start the shared connection unless it is up (authentication errors show here)."""
        if not self.reuse or self._master_alive():
            return
        with self._master_lock:
            if self._master_alive():
                return
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket)  # a stale socket (its master was killed)
            master = [*self.options, "-o", "ControlMaster=yes", "-o", f"ControlPersist={self.persist}",
                      "-N", "-f", "--", self.host]
            timeout = deadline - time.monotonic()
            t0 = time.monotonic()
            # -f: ssh goes to the background once authenticated; its stdio must not be our pipes.
            with tempfile.TemporaryFile() as err:
                try:
                    proc = subprocess.Popen(master, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=err, start_new_session=True)
                except FileNotFoundError:
                    raise CommandNotFoundError(
                        argv, None, f"{argv[0]} is not on PATH here and ssh (the out-of-container bridge "
                        f"to {self.target}) is not installed") from None
                try:
                    rc = proc.wait(timeout=max(timeout, 0.001))
                except subprocess.TimeoutExpired:
                    kill_group(proc)
                    raise CommandTimeoutError(argv, round(timeout, 1),
                                              f"(connecting to the ssh bridge host {self.target})") from None
                err.seek(0)
                message = err.read().decode("utf-8", "replace")
            if rc != 0:
                raise self.failure(argv, rc, message) or BridgeError(
                    argv, rc, f"ssh bridge to {self.target}: cannot connect: {message.strip() or 'no message'}")
            log.info("ssh connection to %s up in %.3f s (shared by every command)", self.target,
                     time.monotonic() - t0)

    def run(self, argv: Sequence[str], input: bytes | None, deadline: float) -> tuple[int, bytes, bytes]:
        """Run one command: on a shell of the shared connection, or with its own ssh (no reuse)."""
        if not self.reuse:
            command = self.remote_command(argv)
            if self.login:
                command = f"exec /bin/sh -lc {shlex.quote(command)}"
            return execute([*self.client, command], input, deadline - time.monotonic())
        return self.pool.run(self.remote_command(argv), input, deadline, argv)

    def failure(self, argv: Sequence[str], rc: int, stderr: str) -> BridgeError | None:
        """The BridgeError for an ssh exit status 255, or None if ssh did not complain."""
        text = stderr.strip()
        first = next((line for line in text.splitlines() if line.strip()), "no message")
        for reason, transient, pattern in SSH_FAILURES:
            if pattern.search(text):
                what = {
                    "hostkey": f"the ssh host key of the bridge host {self.target} is unknown or changed "
                               "(add it to known_hosts)",
                    "auth": f"the bridge host {self.target} refused ssh authentication (BatchMode: keys or "
                            "an agent only; check BRIDGE_SSH_USER, BRIDGE_SSH_IDENTITY and authorized_keys)",
                    "unreachable": f"the bridge host {self.target} is unreachable over ssh",
                }[reason]
                return BridgeError(argv, rc, f"{what}: {first}", reason=reason, transient=transient)
        if _SSH_OWN.search(text) or not text:
            return BridgeError(argv, rc, f"ssh bridge to {self.target} failed: {text or 'no message'}")
        return None

    def close(self) -> None:
        """Close the shells, stop the shared connection, remove its directory."""
        self.pool.close()
        self._finalizer()


def _private_dir() -> str:
    """A new 0700 directory for the ControlMaster socket (its path must stay short)."""
    where = tempfile.gettempdir()
    if len(where) > 60 or not re.fullmatch(r"[A-Za-z0-9/._-]+", where):
        where = "/tmp"
    return tempfile.mkdtemp(prefix="soma-ssh-", dir=where)


def _stop_master(options: list[str], host: str, control_dir: str | None, owner: int) -> None:
    """Stop the shared connection and remove its directory (only in the process that made it)."""
    if control_dir is None or os.getpid() != owner:
        return
    if os.path.exists(os.path.join(control_dir, "master")):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            execute([*options, "-O", "exit", "--", host], None, 5)
    shutil.rmtree(control_dir, ignore_errors=True)

