"""Run DRMS client commands: timeouts, retries, and the out-of-container bridge.

Every command-line backend sends its ``sbatch``/``qstat``/... through one
:class:`CommandRunner`. When the process runs inside a container whose DRMS
client commands live on the host, the runner prefixes each command with a
bridge: an explicit prefix (``docker exec -i NAME``: arguments stay separate
argv items) or ssh (arguments are quoted with :func:`shlex.join` for the
remote shell, connections are reused through a private ControlMaster socket).

Automatic detection (``BridgeConfig(mode="auto")``): no bridge when the
probe command is on PATH; otherwise ssh to ``SOMA_SCHEDULERS_BRIDGE_HOST``
(default ``localhost``, Soma-Workflow's choice) when :func:`in_container`
says we are in a container; otherwise no bridge (the missing command then
gives a :class:`~soma_schedulers.errors.CommandNotFoundError`).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .config import BridgeConfig
from .errors import BridgeError, CommandError, CommandNotFoundError, CommandTimeoutError

__all__ = ["CommandResult", "CommandRunner", "container_markers", "in_container"]

log = logging.getLogger("soma_schedulers.runner")

_CGROUP_WORDS = ("docker", "containerd", "kubepods", "libpod", "lxc")


def container_markers() -> list[str]:
    """The signs that this process runs in a container (each one a short description)."""
    found = []
    for var in ("CASA_HOST_DIR", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        if os.environ.get(var):
            found.append(f"${var}")
    if os.path.exists("/run/.containerenv"):
        found.append("/run/.containerenv")
    if os.path.exists("/.dockerenv"):
        # Some hosts carry /.dockerenv themselves: only count it with a cgroup sign.
        try:
            with open("/proc/1/cgroup", encoding="utf-8", errors="replace") as fh:
                cgroup = fh.read()
        except OSError:
            cgroup = ""
        if any(word in cgroup for word in _CGROUP_WORDS):
            found.append("/.dockerenv+cgroup")
    return found


def in_container() -> bool:
    """True when :func:`container_markers` finds any sign of a container."""
    return bool(container_markers())


@dataclass(frozen=True)
class CommandResult:
    """Output of one DRMS command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class CommandRunner:
    """Run DRMS commands with a timeout, bounded retries and the bridge prefix.

    ``calls`` counts the commands actually run (the benchmarks and tests use
    it to check that a poll costs one DRMS call).
    """

    def __init__(
        self,
        bridge: BridgeConfig | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 2,
        probe_command: str | None = None,
        backoff: float = 0.5,
    ) -> None:
        self.bridge = bridge or BridgeConfig()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.probe_command = probe_command
        self.calls = 0
        self._lock = threading.Lock()
        self._prefix: list[str] | None = None
        self._quote = False
        self._control_dir: str | None = None

    # -- bridge ---------------------------------------------------------------------------
    def _resolve(self) -> tuple[list[str], bool]:
        with self._lock:
            if self._prefix is None:
                self._prefix, self._quote = self._build_prefix()
                if self._prefix:
                    log.info("DRMS commands go through the bridge: %s", shlex.join(self._prefix))
            return self._prefix, self._quote

    def _build_prefix(self) -> tuple[list[str], bool]:
        b = self.bridge
        mode = b.mode
        if mode == "auto":
            if self.probe_command is None or shutil.which(self.probe_command):
                return [], False
            markers = container_markers()
            if not markers:
                return [], False
            host = b.host or os.environ.get("SOMA_SCHEDULERS_BRIDGE_HOST", "localhost")
            log.info("%s is not on PATH and this is a container (%s): using ssh to %s",
                     self.probe_command, ", ".join(markers), host)
            return self._ssh_prefix(host), True
        if mode == "none":
            return [], False
        if mode == "prefix":
            return list(b.prefix), False
        if b.host is None:
            raise BridgeError(["ssh"], None, "bridge mode 'ssh' needs a host")
        return self._ssh_prefix(b.host), True

    def _ssh_prefix(self, host: str) -> list[str]:
        b = self.bridge
        if self._control_dir is None:
            self._control_dir = tempfile.mkdtemp(prefix="soma-ssh-")
        argv = [
            "ssh", "-T",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, int(min(self.timeout, 15)))}",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self._control_dir}/%C",
            "-o", "ControlPersist=120",
        ]
        if b.port:
            argv += ["-p", str(b.port)]
        if b.identity_file:
            argv += ["-i", b.identity_file]
        if b.user:
            argv += ["-l", b.user]
        argv += list(b.ssh_options)
        argv += [host, "--"]
        return argv

    @property
    def prefix(self) -> list[str]:
        """The resolved bridge prefix (empty when commands run here)."""
        return list(self._resolve()[0])

    def full_argv(self, argv: Sequence[str]) -> list[str]:
        """The argv actually executed for ``argv`` (bridge prefix and remote quoting applied)."""
        prefix, quote = self._resolve()
        if not prefix:
            return list(argv)
        if quote:
            return [*prefix, shlex.join(argv)]
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
        ``retry=False``. Raises :class:`CommandError` subclasses.
        """
        attempts = 1 + (self.retries if retry else 0)
        last: CommandError | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                return self._run_once(argv, input, timeout or self.timeout, check)
            except (CommandTimeoutError, BridgeError) as exc:
                last = exc
                log.warning("%s (attempt %d/%d)", exc, attempt + 1, attempts)
        assert last is not None
        raise last

    def _run_once(self, argv: Sequence[str], input: bytes | None, timeout: float, check: bool) -> CommandResult:
        full = self.full_argv(argv)
        bridged = len(full) != len(argv) or full[0] != argv[0]
        t0 = time.monotonic()
        with self._lock:
            self.calls += 1
        try:
            proc = subprocess.run(
                full, input=input, capture_output=True, timeout=timeout,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise CommandTimeoutError(argv, timeout) from None
        except FileNotFoundError:
            raise CommandNotFoundError(
                argv, None, f"{full[0]} is not installed or not on PATH"
                + ("" if bridged else " (configure the out-of-container bridge if it runs on the host)")
            ) from None
        except OSError as exc:
            raise CommandError(argv, None, f"cannot run {full[0]}: {exc.strerror}") from None
        stdout = proc.stdout.decode("utf-8", "replace")
        stderr = proc.stderr.decode("utf-8", "replace")
        result = CommandResult(tuple(argv), proc.returncode, stdout, stderr, time.monotonic() - t0)
        log.debug("%s -> %d in %.3f s", shlex.join(full), proc.returncode, result.seconds)
        if proc.returncode != 0 and check:
            if bridged and self._quote and proc.returncode == 255:
                raise BridgeError(argv, 255, f"ssh bridge failed: {stderr.strip() or 'no message'}")
            if proc.returncode == 127 or "executable file not found" in stderr:
                where = "on the bridged host" if bridged else "here"
                raise CommandNotFoundError(argv, 127, f"{argv[0]} not found {where}: {stderr.strip()}")
            if bridged and not self._quote and proc.returncode in (125, 126) and "Error response from daemon" in stderr:
                raise BridgeError(argv, proc.returncode, stderr.strip())
            raise CommandError(argv, proc.returncode, stderr, stdout)
        return result

    def close(self) -> None:
        """Stop a reused ssh connection and remove its private socket directory."""
        prefix, quote = (self._prefix or []), self._quote
        if self._control_dir is None:
            return
        if quote and prefix:
            host_index = prefix.index("--") - 1
            try:
                subprocess.run([*prefix[:host_index], "-O", "exit", prefix[host_index]],
                               capture_output=True, timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self._control_dir, ignore_errors=True)
        self._control_dir = None
