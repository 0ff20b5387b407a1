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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .config import BridgeConfig
from .errors import BridgeError, CommandError, CommandNotFoundError, CommandTimeoutError
from .shells import ShellGone, ShellPool, kill_group

__all__ = ["CommandResult", "CommandRunner", "container_markers", "in_container", "runtime_signs"]

log = logging.getLogger("soma_schedulers.runner")

#: Environment variables that say "container" on their own (Soma-Workflow's CASA_HOST_DIR rule,
#: Singularity/Apptainer).
ENV_MARKERS = ("CASA_HOST_DIR", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")
#: Default ssh host of the automatic bridge, overridden by this environment variable.
BRIDGE_HOST_ENV = "SOMA_SCHEDULERS_BRIDGE_HOST"

# A container's cgroup as runtimes name it: /docker/<id> (cgroupfs), /system.slice/docker-<id>.scope
# (systemd), libpod-<id>, crio-<id>, cri-containerd-<id>, /kubepods..., /lxc/<name>, /lxc.payload.<name>.
_CGROUP_RUNTIME = re.compile(
    r"/(?:docker|libpod|crio|cri-containerd|containerd)[-/][0-9a-f]{12,}|/kubepods[./]|/lxc(?:\.payload)?[./]"
)
# Runtimes bind-mount /etc/hostname, /etc/hosts and /etc/resolv.conf from their per-container
# directory: .../docker/containers/<64 hex>/hostname, .../overlay-containers/<id>/userdata/hostname,
# containerd's .../sandboxes/<id>/hostname, kubelet's .../pods/<uid>/etc-hosts.
_RUNTIME_BIND = re.compile(r"/(?:[a-z-]*containers|sandboxes)/(?:[^/ ]+/)*[0-9a-f]{64}/|/kubelet/pods/")
_RUNTIME_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def runtime_signs(root: str = "/") -> list[str]:
    """Traces a container runtime leaves in ``/proc`` (cgroup v1 and v2).

    * the cgroup path of this process or of PID 1 names a container (cgroup
      v1, or v2 without a private cgroup namespace: ``/docker/<id>``,
      ``docker-<id>.scope``, ``kubepods`` ...);
    * ``/etc/hostname`` (or ``hosts``, ``resolv.conf``) is bind-mounted from
      a runtime's per-container directory (``/proc/self/mountinfo``): this one
      holds on cgroup v2 with a private cgroup namespace, where
      ``/proc/self/cgroup`` is just ``0::/``.

    A Docker *host* shows neither (its mountinfo lists ``/var/lib/docker``
    mounts, never at ``/etc/hostname``).
    """
    base = root.rstrip("/")
    signs: list[str] = []
    for who in ("self", "1"):
        m = _CGROUP_RUNTIME.search(_read(f"{base}/proc/{who}/cgroup"))
        if m:
            signs.append(f"cgroup {m.group(0)[:32]}")
            break
    for line in _read(f"{base}/proc/self/mountinfo").splitlines():
        fields = line.split(" ")
        if len(fields) > 4 and fields[4] in _RUNTIME_FILES and _RUNTIME_BIND.search(fields[3]):
            signs.append(f"{fields[4]} bind-mounted by a container runtime")
            break
    return signs


def container_markers(root: str = "/", environ: Mapping[str, str] | None = None) -> list[str]:
    """The signs that this process runs in a container (each one a short description).

    ``$CASA_HOST_DIR``, ``$APPTAINER_CONTAINER``, ``$SINGULARITY_CONTAINER``,
    ``/run/.containerenv`` (Podman) and :func:`runtime_signs` count.
    ``/.dockerenv`` alone does not: some hosts carry it themselves (machines
    made from a container image); it is listed only next to a runtime sign.
    """
    env = os.environ if environ is None else environ
    base = root.rstrip("/")
    found = [f"${var}" for var in ENV_MARKERS if env.get(var)]
    if os.path.exists(f"{base}/run/.containerenv"):
        found.append("/run/.containerenv")
    signs = runtime_signs(root)
    if signs and os.path.exists(f"{base}/.dockerenv"):
        found.append("/.dockerenv")
    return found + signs


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


def _execute(argv: Sequence[str], input: bytes | None, timeout: float) -> tuple[int, bytes, bytes]:
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


# ssh's own messages (exit status 255), most specific first: (reason, transient, pattern).
_SSH_FAILURES = (
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


class _SshBridge:
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
            return _execute([*self.client, command], input, deadline - time.monotonic())
        return self.pool.run(self.remote_command(argv), input, deadline, argv)

    def failure(self, argv: Sequence[str], rc: int, stderr: str) -> BridgeError | None:
        """The BridgeError for an ssh exit status 255, or None if ssh did not complain."""
        text = stderr.strip()
        first = next((line for line in text.splitlines() if line.strip()), "no message")
        for reason, transient, pattern in _SSH_FAILURES:
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
            _execute([*options, "-O", "exit", "--", host], None, 5)
    shutil.rmtree(control_dir, ignore_errors=True)


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
        self._ssh: _SshBridge | None = None
        self._shells: ShellPool | None = None

    # -- bridge ---------------------------------------------------------------------------
    def _resolve(self) -> tuple[list[str], _SshBridge | None]:
        with self._lock:
            if not self._resolved:
                self._prefix, self._ssh = self._build()
                self._resolved = True
                if self._prefix:
                    log.info("DRMS commands go through the bridge: %s", shlex.join(self._prefix))
            return self._prefix, self._ssh

    def _build(self) -> tuple[list[str], _SshBridge | None]:
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
        ssh = _SshBridge(b, host, self.timeout, self.max_sessions)
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
                return self._run_once(argv, input, timeout or self.timeout, check)
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

    def _run_once(self, argv: Sequence[str], input: bytes | None, timeout: float, check: bool) -> CommandResult:
        if not argv:
            raise CommandError(list(argv), None, "empty command")
        prefix, ssh = self._resolve()
        deadline = time.monotonic() + timeout
        where = "here" if not prefix else self.describe()
        full = self.full_argv(argv)
        t0 = time.monotonic()
        with self._lock:
            self.calls += 1
        try:
            if ssh is not None:
                rc, out, err = ssh.run(argv, input, deadline)
            elif self._shells is not None:
                command = shlex.join(argv)
                if self.bridge.shared_dir:
                    command = f"cd -- {shlex.quote(self.bridge.shared_dir)} && {command}"
                rc, out, err = self._shells.run(command, input, deadline, argv)
            else:
                rc, out, err = _execute(full, input, deadline - time.monotonic())
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
                raise CommandNotFoundError(
                    argv, None, f"{argv[0]} is not installed or not on PATH (configure the "
                    "out-of-container bridge if it runs on the host)") from None
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
            if rc == 127 or "executable file not found" in stderr:
                raise CommandNotFoundError(
                    argv, 127, f"{argv[0]} not found {'on the host (' + where + ')' if prefix else 'here'}: "
                    f"{stderr.strip()}")
            if prefix and ssh is None and rc in (1, 125, 126) and (
                    "Error response from daemon" in stderr or "No such container" in stderr):
                raise BridgeError(argv, rc, f"bridge {shlex.join(prefix)} cannot reach the host: {stderr.strip()}",
                                  reason="unreachable")
            raise CommandError(argv, rc, stderr, stdout)
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
