"""Is this process in a container? The signs the out-of-container bridge's automatic mode reads.

:func:`container_markers` lists them (environment variables, ``/run/.containerenv``, and the
traces a runtime leaves in ``/proc``: :func:`runtime_signs`); :func:`in_container` says whether
there is any. ``/.dockerenv`` alone does not count.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = ["ENV_MARKERS", "container_markers", "in_container", "runtime_signs"]

#: Environment variables that say "container" on their own (Soma-Workflow's CASA_HOST_DIR rule,
#: Singularity/Apptainer).
ENV_MARKERS = ("CASA_HOST_DIR", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")

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

