"""Out of container, end to end: an engine container drives the host's DRMS over ssh.

The "host" is a DRMS test cluster whose image adds sshd (``slurm-ssh``,
``htcondor-ssh``, ``openpbs-ssh``, ``torque-ssh``: ``containers/ssh-host`` on
the DRMS image);
the "engine" (``containers/engine``) is bookworm
with Python, Debian's pytest and hypothesis and an ssh client, and no DRMS
client command at all. This package is bind-mounted read-only at ``/src``
(``PYTHONPATH=/src``), the cluster's shared directory at the same path in
every container. Keys are made at test time, inside the engines; nothing
secret is in an image or in the repository.

Two engines, both user ``alice`` (uid 1000, as on the host):

``auto``
    shares the host container's network namespace (``--network
    container:HOST``), as Singularity/Apptainer share the host's network:
    ``localhost`` is the DRMS host. Its key is ``~/.ssh/id_ed25519`` and
    ``~/.ssh/known_hosts`` knows ``localhost``: ssh's own defaults. The
    suite runs with no soma_schedulers configuration at all: the runner sees
    ``squeue`` missing and a container, and chooses ssh to ``localhost``.
``explicit``
    on its own docker network with the host (alias ``drms-host``); the
    suite gets an INI file: ``BRIDGE_SSH_HOST``, ``_USER``, ``_PORT``,
    ``_IDENTITY`` (a key outside ssh's default names) and ``_OPTIONS``
    (``UserKnownHostsFile``, ``StrictHostKeyChecking=yes``).

Command line (exit code: the first failing step's, 2 when the lab cannot start;
0 with one ``SKIPPED:`` line when the host image's upstream source is not here)::

    python -m soma_schedulers.testing.bridge slurm|htcondor|openpbs|torque [--mode auto|explicit|failures|all] [PYTEST ARGS...]

``failures`` runs ``tests/containers/bridge_failures_inside.py`` in the
explicit engine: unreachable host, refused authentication, unknown host
key, command missing on the host, slow host, each a clear ``DRMError``
within its timeout.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import docker_harness as dh
from .harness_errors import run_or_report
from .images import build_image, docker_client, ensure_base_image
from .incontainer import suite_command
from .registry import TARGETS

__all__ = ["ENGINE_IMAGE", "HOSTS", "BridgeLab", "main", "start_lab"]

ENGINE_IMAGE = "soma-schedulers/engine:bookworm"
ENGINE_BASE = "debian:bookworm-slim"
#: DRMS -> the cluster (its image plus sshd) playing the host.
HOSTS = {str(t.drms): str(t.cluster) for t in TARGETS if t.kind == "bridge"}
#: Network alias of the host on the explicit engine's network.
HOST_ALIAS = "drms-host"
MODES = ("auto", "explicit", "failures")
USER = "alice"
HOME = f"/home/{USER}"


class BridgeLab:
    """A DRMS host with sshd and two engine containers (see the module docstring)."""

    def __init__(self, cluster: dh.DrmsCluster, log: Callable[[str], None]) -> None:
        self.cluster = cluster
        self.scheduler_type = cluster.spec.scheduler_type
        self.log = log
        self.engines: dict[str, Any] = {}
        self.network: Any = None
        self.explicit_ini = ""

    @property
    def shared_dir(self) -> str:
        return self.cluster.shared_dir

    def exec(self, mode: str, argv: Sequence[str], *, stdin: bytes | None = None, user: str = USER,
             stream: bool = False, env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run ``argv`` in engine ``mode`` (``auto``/``explicit``) from the shared directory."""
        docker = ["docker", "exec", "-i", "-u", user, "-w", self.shared_dir]
        for key, value in (env or {}).items():
            docker += ["-e", f"{key}={value}"]
        full = [*docker, self.engines[mode].name, *argv]
        if stream:
            return subprocess.run(full, input=stdin, check=False).returncode, ""
        proc = subprocess.run(full, input=stdin, capture_output=True, check=False)
        return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")

    def detection(self, mode: str = "auto") -> str:
        """What the runner chooses in engine ``mode`` with no configuration (one line)."""
        code = (
            "import shutil\n"
            "from soma_schedulers.runner import container_markers\n"
            "from soma_schedulers.scheduler import build_scheduler\n"
            f"with build_scheduler({self.scheduler_type!r}, None) as s:\n"
            "    probe = s.runner.probe_command\n"
            "    print(f'{probe} on PATH: {shutil.which(probe)}; container: {\", \".join(container_markers())}; '\n"
            "          f'no configuration -> {s.runner.describe()}')\n"
        )
        return _check(self.exec(mode, ["python3", "-c", code]), "auto-detection probe").strip()

    def suite(self, mode: str, pytest_args: Sequence[str] = ()) -> int:
        """The conformance suite inside engine ``mode``, output streamed; its exit code."""
        if mode == "auto":
            self.log(f"engine auto: {self.detection('auto')}")
        args = list(pytest_args)
        if mode == "explicit":
            args = ["--scheduler-config", self.explicit_ini, *args]
        argv = suite_command(self.cluster, args)
        argv[argv.index("--basetemp") + 1] += f"-{mode}"
        self.log(f"engine {mode}: {shlex.join(argv)}")
        return self.exec(mode, argv, stream=True)[0]

    def failures(self, pytest_args: Sequence[str] = ()) -> int:
        """The failure cases (tests/containers/bridge_failures_inside.py) inside the explicit engine."""
        argv = ["python3", "-m", "pytest", "-p", "no:soma_schedulers", "-p", "no:cacheprovider",
                "-W", "ignore::pytest.PytestAssertRewriteWarning", "--rootdir", self.shared_dir,
                "-c", "/dev/null", f"{dh.SOURCE_MOUNT}/tests/containers/bridge_failures_inside.py",
                *pytest_args]
        env = {"SOMA_BRIDGE_HOST": HOST_ALIAS, "SOMA_BRIDGE_USER": USER,
               "SOMA_BRIDGE_IDENTITY": f"{HOME}/.ssh/bridge_key",
               "SOMA_BRIDGE_KNOWN_HOSTS": f"{HOME}/.ssh/bridge_known_hosts",
               "SOMA_BRIDGE_SCHEDULER": self.scheduler_type}
        self.log(f"engine explicit: {shlex.join(argv)}")
        return self.exec("explicit", argv, stream=True, env=env)[0]

    def stop(self) -> None:
        import docker.errors

        for ctr in self.engines.values():
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                ctr.remove(force=True)
        self.engines.clear()
        self.cluster.stop()
        if self.network is not None:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.network.remove()
            self.network = None

    def __enter__(self) -> BridgeLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _labels() -> dict[str, str]:
    return dh.owner_labels(**{dh.ROLE_LABEL: "engine"})


def ensure_engine_image(log: Callable[[str], None]) -> None:
    ensure_base_image(ENGINE_BASE, log=log)
    build_image(ENGINE_IMAGE, dh.containers_dir() / "engine", buildargs={"BASE_IMAGE": ENGINE_BASE}, log=log)


def _check(result: tuple[int, str], what: str) -> str:
    rc, out = result
    if rc != 0:
        raise dh.HarnessError(f"{what} failed ({rc}): {out.strip()}")
    return out


def _setup_ssh(lab: BridgeLab, host_key: str) -> None:
    """Keys made in the engines now; their public halves in alice's authorized_keys on the host."""
    keyfile = {"auto": f"{HOME}/.ssh/id_ed25519", "explicit": f"{HOME}/.ssh/bridge_key"}
    public = []
    for mode, path in keyfile.items():
        script = f"mkdir -p -m 700 ~/.ssh && ssh-keygen -q -t ed25519 -N '' -C 'engine {mode}' -f {path} && cat {path}.pub"
        public.append(_check(lab.exec(mode, ["sh", "-c", script]), f"ssh-keygen in engine {mode}").strip())
    # The explicit engine gets another, unauthorized key for the "authentication refused" case.
    _check(lab.exec("explicit", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{HOME}/.ssh/stranger_key"]),
           "ssh-keygen (unauthorized key)")
    install = (f"install -d -m 700 -o {USER} -g {USER} {HOME}/.ssh && "
               f"install -m 600 -o {USER} -g {USER} /dev/stdin {HOME}/.ssh/authorized_keys")
    rc, out = lab.cluster.exec(["sh", "-c", install], stdin=("\n".join(public) + "\n").encode())
    if rc != 0:
        raise dh.HarnessError(f"authorized_keys on the host: {out}")
    kind, key = host_key.split()[:2]
    _check(lab.exec("auto", ["sh", "-c", "cat > ~/.ssh/known_hosts"], stdin=f"localhost {kind} {key}\n".encode()),
           "known_hosts (auto)")
    _check(lab.exec("explicit", ["sh", "-c", "cat > ~/.ssh/bridge_known_hosts"],
                    stdin=f"{HOST_ALIAS} {kind} {key}\n".encode()), "known_hosts (explicit)")


def _write_explicit_ini(lab: BridgeLab, scheduler_type: str) -> None:
    path = Path(lab.shared_dir) / "bridge-explicit.ini"
    path.write_text(
        f"[bridge-{scheduler_type}]\n"
        f"SCHEDULER_TYPE = {scheduler_type}\n"
        "OUT_OF_CONTAINER = ssh\n"
        f"BRIDGE_SSH_HOST = {HOST_ALIAS}\n"
        f"BRIDGE_SSH_USER = {USER}\n"
        "BRIDGE_SSH_PORT = 22\n"
        f"BRIDGE_SSH_IDENTITY = {HOME}/.ssh/bridge_key\n"
        f"BRIDGE_SSH_OPTIONS = -o UserKnownHostsFile={HOME}/.ssh/bridge_known_hosts -o StrictHostKeyChecking=yes\n"
        f"BRIDGE_SHARED_DIR = {lab.shared_dir}\n"
        "COMMAND_TIMEOUT = 30\n",
        encoding="utf-8",
    )
    path.chmod(0o644)
    lab.explicit_ini = str(path)


def start_lab(drms: str = "slurm", log: Callable[[str], None] = print) -> BridgeLab:
    """Start the host cluster with sshd and both engines, keys in place. Stop it with ``stop()``.

    ``drms``: a key of :data:`HOSTS`. Raises :class:`~.docker_harness.SourceUnavailable` when the
    host's image needs an upstream source that is not here (OpenPBS, Torque).
    """
    if drms not in HOSTS:
        raise dh.HarnessError(f"no ssh host image for {drms!r}; known: {', '.join(HOSTS)}")
    if not dh.CLUSTERS[HOSTS[drms]].bridge_host:
        raise dh.HarnessError(f"cluster {HOSTS[drms]} is not an ssh host (ClusterSpec.bridge_host)")
    dh.build_cluster_images(dh.CLUSTERS[HOSTS[drms]], log)  # a missing source stops here, before the engine
    ensure_engine_image(log)
    cluster = dh.start_cluster(HOSTS[drms], log=log, mount_source=True)  # /src: direct runs too
    lab = BridgeLab(cluster, log)
    try:
        t0 = time.monotonic()
        client = docker_client()
        lab.network = client.networks.create(f"{cluster.name}-bridge", driver="bridge", labels=_labels())
        lab.network.connect(cluster.controller, aliases=[HOST_ALIAS])
        binds = {cluster.shared_dir: {"bind": cluster.shared_dir, "mode": "rw"},
                 dh.source_root(): {"bind": dh.SOURCE_MOUNT, "mode": "ro"}}
        networks = {"auto": {"network_mode": f"container:{cluster.controller.id}"},
                    "explicit": {"network": lab.network.name}}
        for mode, network in networks.items():
            lab.engines[mode] = client.containers.run(
                ENGINE_IMAGE, name=f"{cluster.name}-engine-{mode}", detach=True, labels=_labels(),
                volumes=binds, working_dir=cluster.shared_dir, **network,
            )
        rc, host_key = cluster.exec(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
        if rc != 0:
            raise dh.HarnessError(f"no sshd host key on {cluster.name}: {host_key}")
        _setup_ssh(lab, host_key)
        _write_explicit_ini(lab, lab.scheduler_type)
        log(f"bridge lab ready in {time.monotonic() - t0:.1f} s: host {cluster.name} (sshd), engines "
            f"{', '.join(c.name for c in lab.engines.values())}")
    except BaseException:
        lab.stop()
        raise
    return lab


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    drms, rest = args[0].removesuffix("-bridge"), args[1:]
    modes = list(MODES)
    if rest[:1] == ["--mode"] and len(rest) > 1:
        modes = list(MODES) if rest[1] == "all" else [rest[1]]
        rest = rest[2:]
    if any(m not in MODES for m in modes):
        print(f"error: --mode must be one of {', '.join(MODES)}, all", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(f"[bridge] {line}", flush=True)

    lab = run_or_report(f"{drms} through the bridge", lambda: start_lab(drms, log))
    if isinstance(lab, int):
        return lab
    results: dict[str, int] = {}
    try:
        for mode in modes:
            t0 = time.monotonic()
            results[mode] = lab.failures(rest) if mode == "failures" else lab.suite(mode, rest)
            log(f"{mode}: exit {results[mode]} in {time.monotonic() - t0:.0f} s")
    finally:
        lab.stop()
    log("summary: " + ", ".join(f"{m} {'passed' if rc == 0 else f'FAILED ({rc})'}" for m, rc in results.items()))
    return next((rc for rc in results.values() if rc != 0), 0)


if __name__ == "__main__":
    sys.exit(main())
