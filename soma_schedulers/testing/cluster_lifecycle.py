"""The life-cycle of the DRMS test clusters: start, attach to, stop, clean up after dead processes.

Every container and network is labelled ``org.soma-schedulers.harness=1``
together with the creating pid; :func:`cleanup_stale` removes the ones whose
creator is gone.  Container and network names contain the pid, a per-process
counter and ``name_suffix`` (e.g. the pytest-xdist worker id), so parallel
workers each get their own cluster.

A host temporary directory (mode 1777) is bind-mounted at the *same path* in
every container of a cluster (:attr:`DrmsCluster.shared_dir`), and it is the
containers' working directory: ``docker exec`` commands (``sbatch`` ...) start
there, so job scripts, working directories and output files should live under
it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cluster_images import build_cluster_images
from .cluster_specs import CLUSTERS, ClusterSpec
from .harness_errors import HarnessError, ImageUnavailable
from .images import LogFunc, docker_client

__all__ = ["HARNESS_LABEL", "ROLE_LABEL", "SOURCE_MOUNT", "DrmsCluster", "attach_cluster", "cleanup_stale", "docker_available", "owner_labels",
           "source_mounts", "source_root", "start_cluster"]

logger = logging.getLogger(__name__)

SHARED_ROOT_ENV = "SOMA_SCHEDULERS_SHARED_ROOT"  # parent of the shared dirs (default: tempdir)
READY_TIMEOUT_ENV = "SOMA_SCHEDULERS_READY_TIMEOUT"  # seconds (default 240)
SKIP_BUILD_ENV = "SOMA_SCHEDULERS_SKIP_BUILD"  # "1": use existing images as they are

HARNESS_LABEL = "org.soma-schedulers.harness"
_L_PID = "org.soma-schedulers.pid"
_L_PIDSTART = "org.soma-schedulers.pidstart"
_L_HOST = "org.soma-schedulers.host"
_L_CLUSTER = "org.soma-schedulers.cluster"
_L_SHARED = "org.soma-schedulers.shared-dir"
ROLE_LABEL = "org.soma-schedulers.role"

_STOP_TIMEOUT = 30


def _default_log(line: str) -> None:
    logger.info("%s", line)


#: Where :func:`start_cluster` (``mount_source=True``) mounts :func:`source_root`, read-only.
SOURCE_MOUNT = "/src"


def source_root() -> str:
    """The directory holding the ``soma_schedulers`` package (the repository, for a checkout)."""
    return str(Path(__file__).resolve().parents[2])


def source_mounts() -> dict[str, dict[str, str]]:
    """Docker binds putting this code at :data:`SOURCE_MOUNT` (``PYTHONPATH=/src`` imports it).

    A checkout (``pyproject.toml`` beside the package) is mounted whole, tests and benchmarks
    included; an installed copy mounts only the package, at ``/src/soma_schedulers``, so the
    host's site-packages (other Python versions, compiled modules) stay out of the containers.
    """
    root = Path(source_root())
    if (root / "pyproject.toml").is_file():
        return {str(root): {"bind": SOURCE_MOUNT, "mode": "ro"}}
    return {str(Path(__file__).resolve().parents[1]): {"bind": f"{SOURCE_MOUNT}/soma_schedulers", "mode": "ro"}}



def docker_available() -> tuple[bool, str]:
    """``(True, "")`` if clusters can be started here, else ``(False, reason)``.

    Checks the ``docker`` Python package, the daemon, and the ``docker`` CLI
    (needed by :attr:`DrmsCluster.command_prefix`).
    """
    try:
        docker_client()
    except ImageUnavailable as exc:
        return False, str(exc)
    if shutil.which("docker") is None:
        return False, "the 'docker' command-line client is not in PATH"
    return True, ""



# --------------------------------------------------------------------------- process identity


def owner_labels(**more: str) -> dict[str, str]:
    """The labels of a container this process owns (:func:`cleanup_stale` removes it once the
    process is gone), plus ``more`` (keys: the label names)."""
    pid = os.getpid()
    return {HARNESS_LABEL: "1", _L_PID: str(pid), _L_PIDSTART: _proc_start(pid), _L_HOST: socket.gethostname(),
            **more}


def _proc_start(pid: int) -> str:
    """Start time (clock ticks since boot) of ``pid``, "" if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _pid_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # a different start time means the pid was reused by another process
    return not (start and _proc_start(pid) not in ("", start))


_counter = itertools.count(1)


def _sanitize(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-.") or "x"


# --------------------------------------------------------------------------- cluster


class DrmsCluster:
    """A running test cluster (see :func:`start_cluster`)."""

    spec: ClusterSpec
    shared_dir: str
    command_prefix: list[str]
    containers: list[Any]
    ready_seconds: float

    def __init__(self, spec: ClusterSpec, client: Any, shared_dir: str, network: Any | None,
                 log: LogFunc = _default_log, owned: bool = True) -> None:
        self.spec = spec
        self.shared_dir = shared_dir
        self.containers = []
        self.command_prefix = []
        self.ready_seconds = float("nan")
        self.hostnames: list[str] = []
        self._client = client
        #: The cluster's own Docker network (multi-container layouts), None for one container.
        self.network = network
        self._log = log
        self._stopped = not owned  # a cluster attached from another process is not ours to stop

    # -- accessors --------------------------------------------------------

    @property
    def controller(self) -> Any:
        """The controller (or all-in-one) container."""
        return self.containers[0]

    @property
    def name(self) -> str:
        """Docker name of the controller container."""
        return str(self.controller.name)

    def make_workdir(self, name: str, mode: int = 0o777) -> str:
        """Create ``shared_dir/name`` (mode 0777 by default, so the test user in
        the containers can write in it whatever uid the host process has)."""
        p = Path(self.shared_dir) / name
        p.mkdir(parents=True, exist_ok=True)
        p.chmod(mode)
        return str(p)

    # -- commands ---------------------------------------------------------

    def exec(self, argv: list[str], user: str = "root", stdin: bytes | None = None,
             container: Any | None = None, workdir: str | None = None) -> tuple[int, str]:
        """Run ``argv`` in the controller (or ``container``) as ``user``.

        Returns ``(exit code, stdout+stderr)``.  ``stdin`` bytes are written to
        the command's standard input, which is then closed.
        """
        from docker.utils.socket import frames_iter

        ctr = container if container is not None else self.controller
        api = self._client.api
        ex = api.exec_create(ctr.id, argv, stdout=True, stderr=True, stdin=stdin is not None,
                             tty=False, user=user, workdir=workdir)
        if stdin is None:
            raw_out = api.exec_start(ex["Id"], stream=False, demux=False)
        else:
            sock = api.exec_start(ex["Id"], socket=True)
            raw_sock = getattr(sock, "_sock", sock)

            def feed() -> None:
                try:
                    raw_sock.sendall(stdin)
                finally:
                    with contextlib.suppress(OSError):
                        raw_sock.shutdown(socket.SHUT_WR)

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
            try:
                raw_out = b"".join(data for _stream, data in frames_iter(sock, tty=False))
            finally:
                writer.join(timeout=10)
                sock.close()
        rc = None
        for _ in range(200):
            info = api.exec_inspect(ex["Id"])
            if not info.get("Running") and info.get("ExitCode") is not None:
                rc = int(info["ExitCode"])
                break
            time.sleep(0.01)
        out = (raw_out or b"").decode("utf-8", errors="replace")
        return (rc if rc is not None else -1), out

    def logs(self, focus: Sequence[str] = (), pending: Sequence[str] = ()) -> str:
        """Container logs plus the daemon log files, each container within its own budget, the
        lines naming the ``pending`` then the ``focus`` job ids first (:mod:`.cluster_logs`), for
        failure reports."""
        from .cluster_logs import cluster_logs

        return cluster_logs(self, focus, pending)

    # -- teardown ---------------------------------------------------------

    def stop(self, graceful: bool = True) -> None:
        """Stop the containers (SIGTERM: daemons shut down cleanly), remove
        them, the network and the shared directory.  Idempotent.

        ``graceful=False`` kills them instead (SIGKILL, no shutdown): for throw-away clusters whose
        daemons' ending is not under test, it saves the seconds a clean shutdown takes (SGE: ~5).
        """
        if self._stopped:
            return
        self._stopped = True
        t0 = time.monotonic()
        import docker.errors

        def stop_one(ctr: Any) -> None:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                if graceful:
                    ctr.stop(timeout=_STOP_TIMEOUT)
                else:
                    ctr.kill()

        # Controller first ("scontrol shutdown" also stops the compute slurmds),
        # then the other containers in parallel.
        if self.containers:
            stop_one(self.containers[0])
        threads = [threading.Thread(target=stop_one, args=(c,)) for c in self.containers[1:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        image = self.spec.image_tag
        for ctr in self.containers:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                ctr.remove(force=True)
        if self.network is not None:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.network.remove()
        _remove_shared_dir(self._client, self.shared_dir, image, self._log)
        self._log(f"cluster {self.spec.name} stopped in {time.monotonic() - t0:.1f} s")

    def info(self) -> dict[str, Any]:
        """What another process needs to use this running cluster (:func:`attach_cluster`): JSON-able."""
        return {"spec": self.spec.name, "containers": [str(c.name) for c in self.containers],
                "hostnames": list(self.hostnames), "shared_dir": self.shared_dir,
                "command_prefix": list(self.command_prefix), "ready_seconds": self.ready_seconds,
                "network": str(self.network.name) if self.network is not None else None}

    def __enter__(self) -> DrmsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        names = [getattr(c, "name", "?") for c in self.containers]
        return f"<DrmsCluster {self.spec.name} {names} shared_dir={self.shared_dir}>"


def attach_cluster(info: dict[str, Any], log: LogFunc = _default_log, own: bool = False) -> DrmsCluster:
    """A handle on a cluster another process started (``DrmsCluster.info()``): commands, logs and
    files work. :meth:`DrmsCluster.stop` does nothing unless ``own`` (this process takes over
    the cluster, and stops it)."""
    import docker.errors

    client = docker_client()
    network = None
    if own and info.get("network"):
        with contextlib.suppress(docker.errors.NotFound):
            network = client.networks.get(info["network"])
    cluster = DrmsCluster(CLUSTERS[info["spec"]], client, info["shared_dir"], network, log=log, owned=own)
    for name in info["containers"]:
        try:
            cluster.containers.append(client.containers.get(name))
        except docker.errors.NotFound:
            if not own:
                raise HarnessError(f"cluster {info['spec']}: container {name} is gone") from None
    cluster.hostnames = list(info["hostnames"])
    cluster.command_prefix = list(info["command_prefix"])
    cluster.ready_seconds = float(info["ready_seconds"])
    return cluster


def _remove_shared_dir(client: Any, path: str, image: str, log: LogFunc) -> None:
    """Remove a cluster's shared temp dir.  Files written by container users
    (uid 1000 ...) may not be removable by a non-root host user: those are
    deleted by a short-lived root container of the cluster image."""
    if not path or not os.path.isdir(path):
        return
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.exists(path):
        return
    with contextlib.suppress(Exception):
        client.containers.run(
            image, entrypoint=["find", path, "-mindepth", "1", "-delete"], user="root",
            volumes={path: {"bind": path, "mode": "rw"}}, remove=True,
            labels=owner_labels(),
        )
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):
        log(f"WARNING: could not remove shared dir {path}")


def _wait_ready(cluster: DrmsCluster, t0: float, timeout: float) -> None:
    spec = cluster.spec
    ctl = cluster.controller
    deadline = t0 + timeout
    ready = spec.ready_line
    while True:
        text = ctl.logs().decode("utf-8", errors="replace")
        if any(line.strip() == ready for line in text.splitlines()):
            cluster.ready_seconds = time.monotonic() - t0
            return
        for ctr in cluster.containers:
            ctr.reload()
            if ctr.status in ("exited", "dead"):
                raise HarnessError(
                    f"cluster {spec.name}: container {ctr.name} exited "
                    f"(code {ctr.attrs.get('State', {}).get('ExitCode')}) before ready\n{cluster.logs()}"
                )
        if time.monotonic() > deadline:
            raise HarnessError(
                f"cluster {spec.name}: no line {ready!r} after {timeout:.0f} s\n{cluster.logs()}"
            )
        time.sleep(0.1)


def start_cluster(name: str, log: LogFunc = _default_log, name_suffix: str = "",
                  mount_source: bool = False) -> DrmsCluster:
    """Build the images if needed, then start cluster ``name`` of :data:`CLUSTERS`.

    ``mount_source``: also bind-mount this code (:func:`source_mounts`) read-only at
    :data:`SOURCE_MOUNT` in every container (``PYTHONPATH=/src`` then imports
    this very code there).

    Creates a shared dir and (multi-node) a network, starts the containers,
    waits for the ready line of the controller (timeout
    ``$SOMA_SCHEDULERS_READY_TIMEOUT``, default 240 s; the error contains the
    logs) and logs the time to ready.  Raises :class:`ImageUnavailable` if the
    images cannot be made here, :class:`HarnessError` if the cluster fails.
    """
    import docker.errors

    if name not in CLUSTERS:
        raise HarnessError(f"unknown cluster {name!r}; known: {sorted(CLUSTERS)}")
    spec = CLUSTERS[name]
    ok, reason = docker_available()
    if not ok:
        raise ImageUnavailable(reason)
    build_cluster_images(spec, log)
    client = docker_client()
    layout = spec.node_layouts()

    pid = os.getpid()
    base = _sanitize(f"soma-{spec.name}-{pid}{('-' + name_suffix) if name_suffix else ''}-{next(_counter)}")
    labels = owner_labels(**{_L_CLUSTER: spec.name})
    root = os.environ.get(SHARED_ROOT_ENV) or None
    shared_dir = os.path.realpath(tempfile.mkdtemp(prefix=f"{base}-shared-", dir=root))
    os.chmod(shared_dir, 0o1777)
    labels[_L_SHARED] = shared_dir

    network = None
    cluster = DrmsCluster(spec, client, shared_dir, None, log=log)
    try:
        if len(layout) > 1:
            network = client.networks.create(f"{base}-net", driver="bridge", labels=labels)
            cluster.network = network
        timeout = float(os.environ.get(READY_TIMEOUT_ENV, "240"))
        log(f"starting cluster {spec.name} ({len(layout)} container(s), image {spec.image_tag}, "
            f"shared dir {shared_dir})")
        t0 = time.monotonic()
        api = client.api
        for node in layout:
            host_config = api.create_host_config(
                binds={shared_dir: {"bind": shared_dir, "mode": "rw"},
                       **(source_mounts() if mount_source else {})},
                network_mode=network.name if network is not None else None,
                init=False,
            )
            networking = None
            if network is not None:
                networking = api.create_networking_config(
                    {network.name: api.create_endpoint_config(aliases=[node.hostname])}
                )
            created = api.create_container(
                spec.image_tag,
                name=f"{base}-{node.role}",
                hostname=node.hostname,
                environment={**spec.environment, **node.environment},
                working_dir=shared_dir,
                labels={**labels, ROLE_LABEL: node.role},
                host_config=host_config,
                networking_config=networking,
                detach=True,
            )
            ctr = client.containers.get(created["Id"])
            cluster.containers.append(ctr)
            cluster.hostnames.append(node.hostname)
            ctr.start()
        cluster.command_prefix = ["docker", "exec", "-i", "-u", spec.user, cluster.name]
        _wait_ready(cluster, t0, timeout)
    except docker.errors.APIError as exc:
        cluster.stop()
        raise HarnessError(f"cluster {spec.name}: docker error: {exc}") from exc
    except BaseException:
        cluster.stop()
        raise
    log(f"cluster {spec.name} ready in {cluster.ready_seconds:.1f} s "
        f"({', '.join(c.name for c in cluster.containers)})")
    return cluster


def cleanup_stale(log: LogFunc = _default_log) -> int:
    """Remove harness containers/networks (and shared dirs) whose creating
    process, on this host, is gone.  Returns the number of objects removed."""
    try:
        client = docker_client()
    except ImageUnavailable:
        return 0
    import docker.errors

    me = socket.gethostname()

    def stale(lab: dict[str, str]) -> bool:
        if lab.get(_L_HOST) != me:
            return False
        try:
            pid = int(lab.get(_L_PID, ""))
        except ValueError:
            return False
        return not _pid_alive(pid, lab.get(_L_PIDSTART, ""))

    removed = 0
    shared: dict[str, str] = {}
    for ctr in client.containers.list(all=True, filters={"label": f"{HARNESS_LABEL}=1"}):
        lab = ctr.labels or {}
        if stale(lab):
            if lab.get(_L_SHARED):
                shared[lab[_L_SHARED]] = str(ctr.attrs.get("Config", {}).get("Image", ""))
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                ctr.remove(force=True)
                removed += 1
                log(f"removed stale container {ctr.name}")
    for net in client.networks.list(filters={"label": f"{HARNESS_LABEL}=1"}):
        if stale(net.attrs.get("Labels") or {}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                net.remove()
                removed += 1
                log(f"removed stale network {net.name}")
    for path, image in shared.items():
        if image:
            _remove_shared_dir(client, path, image, log)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return removed
