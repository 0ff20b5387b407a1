"""Run DRMS client commands: timeouts, retries, and the out-of-container bridge.

Every command-line backend sends its ``sbatch``/``qstat``/... through one
:class:`CommandRunner`. When the process runs inside a container whose DRMS
client commands live on the host, the runner sends each command through a
bridge:

* an explicit **prefix** (``BridgeConfig(mode="prefix")``, e.g. ``docker exec
  -i NAME`` or ``sudo -u alice``): arguments stay separate argv items, no
  shell sees them; with ``shells`` the commands run instead on long-lived
  ``/bin/sh`` processes started through the prefix (quoted with
  :func:`shlex.join`, as over ssh), which saves the prefix's own cost per
  command (about 80 ms for ``docker exec``);
* **ssh** (``mode="ssh"``): ``ssh -T -o BatchMode=yes ... -- HOST``, the
  command line built with :func:`shlex.join` (POSIX quoting: every byte
  reaches the command unchanged through sh, dash, bash, ksh or zsh). By
  default (``reuse``) one connection is kept (a ControlMaster started on
  first use, its socket in a private 0700 directory, ``ControlPersist``)
  and commands run on long-lived ``/bin/sh`` processes opened over it
  (:class:`~soma_schedulers.shells.ShellPool`, at most ``max_sessions`` at once, one command at
  a time each): a poll then costs what it costs on the host, where a new
  ssh process and session per command would add about 6 ms and a new
  connection about 200 ms (``benchmarks/bench_bridge.py``). Commands are
  read by ``/bin/sh`` whatever the user's login shell. With ``reuse=False``
  every command is its own ``ssh HOST 'command'``, read by the login shell
  (which must then be a POSIX shell). With ``login`` (the default) the host
  side is ``/bin/sh -l``: ``/etc/profile`` and ``~/.profile`` set the PATH
  there as for a user who logs in (sshd's own PATH lacks ``/opt/pbs/bin``).

Standard input goes through both bridges unchanged: the batch backends send
their job scripts on stdin (``sbatch`` reads it), so nothing is written to
disk on either side and no shared directory is needed for the scripts.
``BridgeConfig.shared_dir`` names a directory seen at the same path by the
container and the host (where job files belong); bridged commands run there.

Every call has a timeout: the command (and anything it started in its
process group; over ssh, the local ssh process, which closes the remote
session, though a command already started on the host runs to its end
there) is killed when it expires, and a
:class:`~soma_schedulers.errors.CommandTimeoutError` names the bridge. Bridge
failures are :class:`~soma_schedulers.errors.BridgeError` with a ``reason``:
``unreachable``, ``auth`` (refused authentication), ``hostkey``, ``failed``.
A command missing on the host is a
:class:`~soma_schedulers.errors.CommandNotFoundError` saying so.

Automatic detection (``BridgeConfig(mode="auto")``): no bridge when the probe
command (``squeue``, ``qstat`` ...) is on PATH; otherwise, when
:func:`container_markers` finds this process in a container, ssh to
``$SOMA_SCHEDULERS_BRIDGE_HOST`` (default ``localhost``: Soma-Workflow's
choice, and the host itself for Singularity/Apptainer, which share its
network); otherwise no bridge (the missing command then gives a
:class:`~soma_schedulers.errors.CommandNotFoundError`).

The container signs live in :mod:`soma_schedulers.container_detect`, the ssh bridge in
:mod:`soma_schedulers.ssh_bridge`, the long-lived shells in :mod:`soma_schedulers.shells`; their
public names are importable from here too.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import BridgeConfig, SchedulerConfig
from .container_detect import ENV_MARKERS, container_markers, in_container, runtime_signs
from .errors import BridgeError, CommandError, CommandNotFoundError, CommandTimeoutError
from .shells import ShellGone, ShellPool, execute
from .ssh_bridge import SshBridge

__all__ = ["ENV_MARKERS", "Attempt", "CommandResult", "CommandRunner", "container_markers", "in_container", "runtime_signs"]

log = logging.getLogger("soma_schedulers.runner")

#: Default ssh host of the automatic bridge, overridden by this environment variable.
BRIDGE_HOST_ENV = "SOMA_SCHEDULERS_BRIDGE_HOST"


@dataclass(frozen=True)
class CommandResult:
    """Output of one DRMS command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float



#: One attempt at a command: ``(argv, input, timeout, check, retry) -> CommandResult``.
Attempt = Callable[[Sequence[str], "bytes | None", float, bool, bool], "CommandResult"]


class CommandRunner:
    """Run DRMS commands with a timeout, bounded retries and the bridge.

    ``calls`` counts the commands actually run (the benchmarks and tests use
    it to check that a poll costs one DRMS call). ``max_sessions`` bounds the
    commands in flight at once over one ssh connection.
    """

    def __init__(
        self,
        bridge: BridgeConfig | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 2,
        probe_command: str | None = None,
        backoff: float = 0.5,
        max_sessions: int = 8,
    ) -> None:
        self.bridge = bridge or BridgeConfig()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.probe_command = probe_command
        self.max_sessions = max_sessions
        self.calls = 0
        self._lock = threading.Lock()
        self._resolved = False
        self._prefix: list[str] = []
        self._ssh: SshBridge | None = None
        self._shells: ShellPool | None = None
        self._attempt: Attempt = self.attempt

    @classmethod
    def for_config(cls, config: SchedulerConfig, probe_command: str | None = None) -> CommandRunner:
        """The runner a backend built from ``config`` uses: its bridge, ``COMMAND_TIMEOUT`` and
        ``COMMAND_RETRIES``; ``probe_command`` is the client command that must exist where the
        commands run (the automatic bridge looks for it)."""
        return cls(config.bridge, timeout=config.command_timeout, retries=config.command_retries,
                   probe_command=probe_command)

    # -- bridge ---------------------------------------------------------------------------
    def _resolve(self) -> tuple[list[str], SshBridge | None]:
        with self._lock:
            if not self._resolved:
                self._prefix, self._ssh = self._build()
                self._resolved = True
                if self._prefix:
                    log.info("DRMS commands go through the bridge: %s", shlex.join(self._prefix))
            return self._prefix, self._ssh

    def _build(self) -> tuple[list[str], SshBridge | None]:
        b = self.bridge
        if b.mode == "none":
            return [], None
        if b.mode == "prefix":
            if b.shells:
                self._shells = ShellPool([*b.prefix, "/bin/sh"], self.max_sessions)
            return list(b.prefix), None
        if b.mode == "auto":
            if self.probe_command is None or shutil.which(self.probe_command):
                return [], None
            markers = container_markers()
            if not markers:
                if os.path.exists("/.dockerenv"):
                    log.info("%s is not on PATH; /.dockerenv alone is no proof of a container: no bridge",
                             self.probe_command)
                return [], None
            log.info("%s is not on PATH and this is a container (%s): ssh bridge",
                     self.probe_command, ", ".join(markers))
        host = b.host or os.environ.get(BRIDGE_HOST_ENV) or "localhost"
        ssh = SshBridge(b, host, self.timeout, self.max_sessions)
        return ssh.client, ssh

    @property
    def prefix(self) -> list[str]:
        """The resolved bridge prefix (empty when commands run here)."""
        return list(self._resolve()[0])

    def describe(self) -> str:
        """Where commands run, for messages: ``here``, ``ssh bridge to u@h`` or ``bridge: PREFIX``."""
        prefix, ssh = self._resolve()
        if ssh is not None:
            return f"ssh bridge to {ssh.target}"
        return f"bridge: {shlex.join(prefix)}" if prefix else "here"

    def full_argv(self, argv: Sequence[str]) -> list[str]:
        """The argv actually executed for ``argv`` (bridge prefix and remote quoting applied)."""
        prefix, ssh = self._resolve()
        if ssh is not None:
            return [*prefix, ssh.remote_command(argv)]
        if not prefix:
            return list(argv)
        if self.bridge.shared_dir:
            return [*prefix, "/bin/sh", "-c", 'cd -- "$1" && shift && exec "$@"', "sh",
                    self.bridge.shared_dir, *argv]
        return [*prefix, *argv]

    # -- running ------------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        retry: bool = True,
        check: bool = True,
    ) -> CommandResult:
        """Run one command; retry transient failures (timeouts, bridge errors) when ``retry``.

        Never retry a command that is not idempotent (a submission): pass
        ``retry=False``; it is retried only when the bridge could not connect
        at all (the command never started). Raises :class:`CommandError`
        subclasses; a call never outlasts ``(1 + retries) * timeout`` plus the
        backoff.
        """
        attempts = 1 + self.retries
        last: CommandError | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                return self._attempt(argv, input, timeout or self.timeout, check, retry)
            except BridgeError as exc:
                if not exc.transient or not (retry or exc.reason == "unreachable"):
                    raise
                last = exc
            except CommandTimeoutError as exc:
                if not retry:
                    raise
                last = exc
            log.warning("%s (attempt %d/%d)", last, attempt + 1, attempts)
        assert last is not None
        raise last

    def wrap_attempts(self, wrapper: Callable[[Attempt], Attempt]) -> None:
        """Put ``wrapper`` around every later attempt (fault injection, command logs: see
        :mod:`soma_schedulers.testing.faults`); wrappers added later run outside earlier ones."""
        with self._lock:
            self._attempt = wrapper(self._attempt)

    def count_call(self) -> None:
        """Count one command run (:attr:`calls`)."""
        with self._lock:
            self.calls += 1

    def not_installed(self, argv: Sequence[str]) -> CommandNotFoundError:
        """The error for a command that is not on PATH here (no bridge)."""
        return CommandNotFoundError(argv, None, f"{argv[0]} is not installed or not on PATH (configure the "
                                    "out-of-container bridge if it runs on the host)")

    def failure(self, result: CommandResult) -> CommandError:
        """The error a command that exited non-zero raises (``check=True``): not found, bridge
        unreachable, or the command's own failure with its output."""
        argv, rc, stderr, prefix = list(result.argv), result.returncode, result.stderr, self.prefix
        if rc == 127 or "executable file not found" in stderr:
            where = f"on the host ({self.describe()})" if prefix else "here"
            return CommandNotFoundError(argv, 127, f"{argv[0]} not found {where}: {stderr.strip()}")
        if prefix and self._ssh is None and rc in (1, 125, 126) and (
                "Error response from daemon" in stderr or "No such container" in stderr):
            return BridgeError(argv, rc, f"bridge {shlex.join(prefix)} cannot reach the host: {stderr.strip()}",
                               reason="unreachable")
        return CommandError(argv, rc, stderr, result.stdout)

    def attempt(self, argv: Sequence[str], input: bytes | None, timeout: float, check: bool,
                retry: bool) -> CommandResult:
        """One attempt at ``argv`` (:meth:`run` retries it when ``retry`` allows): the hook a
        subclass overrides to answer commands itself (:class:`soma_schedulers.testing.fakes.ScriptedRunner`)."""
        if not argv:
            raise CommandError(list(argv), None, "empty command")
        prefix, ssh = self._resolve()
        deadline = time.monotonic() + timeout
        where = "here" if not prefix else self.describe()
        full = self.full_argv(argv)
        t0 = time.monotonic()
        self.count_call()
        try:
            if ssh is not None:
                rc, out, err = ssh.run(argv, input, deadline)
            elif self._shells is not None:
                command = shlex.join(argv)
                if self.bridge.shared_dir:
                    command = f"cd -- {shlex.quote(self.bridge.shared_dir)} && {command}"
                rc, out, err = self._shells.run(command, input, deadline, argv)
            else:
                rc, out, err = execute(full, input, deadline - time.monotonic())
        except ShellGone as gone:
            if ssh is None:
                text = gone.args[0].strip()
                gone_host = "Error response from daemon" in text or "No such container" in text
                raise BridgeError(argv, None, f"bridge {shlex.join(prefix)}: its shell ended: {text or 'no message'}",
                                  reason="unreachable" if gone_host else "failed") from None
            failure = ssh.failure(argv, 255, gone.args[0])
            if failure is None or failure.reason == "failed":
                failure = BridgeError(argv, None, f"ssh bridge to {ssh.target}: the remote shell ended during "
                                      f"the command: {gone.args[0].strip() or 'no message'}")
            raise failure from None
        except subprocess.TimeoutExpired:
            raise CommandTimeoutError(argv, timeout, f"({where})" if prefix else "") from None
        except FileNotFoundError:
            if not prefix:
                raise self.not_installed(argv) from None
            raise CommandNotFoundError(
                argv, None, f"{argv[0]} is not on PATH here and {full[0]} (the out-of-container bridge) "
                "is not installed") from None
        except OSError as exc:
            raise CommandError(argv, None, f"cannot run {full[0]}: {exc.strerror}") from None
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        result = CommandResult(tuple(argv), rc, stdout, stderr, time.monotonic() - t0)
        log.debug("%s -> %d in %.3f s", shlex.join(full), rc, result.seconds)
        if rc == 255 and ssh is not None:
            failure = ssh.failure(argv, rc, stderr)
            if failure is not None:
                raise failure
        if rc != 0 and check:
            raise self.failure(result)
        return result

    def close(self) -> None:
        """Stop a reused ssh connection (removing its private socket directory) and kept shells."""
        with self._lock:
            ssh, self._ssh = self._ssh, None
            shells, self._shells = self._shells, None
            self._resolved = False
        if ssh is not None:
            ssh.close()
        if shells is not None:
            shells.close()
