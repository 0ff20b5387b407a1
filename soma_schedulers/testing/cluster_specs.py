"""The DRMS test clusters: what each is built from and how its containers are laid out.

A :class:`ClusterSpec` carries everything about one cluster: its image (build context, base image,
tag), its containers (:attr:`ClusterSpec.layout`, a function giving the :class:`NodeLayout` of each
container, controller first), how the conformance suite runs inside it
(:attr:`ClusterSpec.incontainer`) and whether it is the ssh host of the bridge tests
(:attr:`ClusterSpec.bridge_host`). :data:`CLUSTERS` lists them by name. Standard library only:
nothing here touches Docker (:mod:`.cluster_images` builds, :mod:`.cluster_lifecycle` runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CLUSTERS", "HTCONDOR_COMMANDS", "PBS_COMMANDS", "SGE_COMMANDS", "SLURM_COMMANDS", "ClusterSpec", "LayoutFunc",
           "NodeLayout", "htcondor_layout", "mpi_layout", "openpbs_layout", "sge_layout", "slurm_layout", "torque_layout"]


@dataclass
class NodeLayout:
    """One container of a cluster (the first one of a layout is the controller)."""

    role: str  # short name used in the container name: "all", "ctl", "c1" ...
    hostname: str
    environment: dict[str, str] = field(default_factory=dict)


#: A function giving the containers of a spec (controller first).
LayoutFunc = Callable[["ClusterSpec"], list[NodeLayout]]


@dataclass
class ClusterSpec:
    """How to build and lay out one test cluster."""

    name: str  # "slurm", "slurm-cluster", "slurm-24.11" ...
    scheduler_type: str  # "slurm"
    context: str  # folder under containers/, e.g. "slurm"
    base_image: str  # "debian:bookworm-slim" / "debian:trixie-slim"
    image_tag: str  # e.g. "soma-schedulers/slurm:22.05"
    nodes: int  # 1 = all-in-one; N >= 2 = controller + N compute containers
    user: str = "alice"
    #: Dockerfile name inside the context (None: "Dockerfile").
    dockerfile: str | None = None
    #: Exact line the controller prints when the cluster accepts jobs.
    ready_line: str = ""
    #: Daemon log files (globs) included in :meth:`DrmsCluster.logs`.
    log_paths: tuple[str, ...] = ()
    #: Built from upstream source: ``<context>/src/`` (see ``upstream.env``) or a download.
    upstream_source: bool = False
    #: Environment given to every container of the cluster (on top of the layout's).
    environment: dict[str, str] = field(default_factory=dict)
    #: The DRMS's client commands a backend may run by name (shims on PATH, see ``testing.shims``).
    client_commands: tuple[str, ...] = ()
    #: How the suite runs inside the cluster (a key of ``incontainer.COMMANDS``): ``suite`` (plain
    #: pytest in the controller), ``mpi`` (rank 0 of an ``mpirun``), ``drmaa`` (a DRMAA ini file).
    incontainer: str = "suite"
    #: The cluster is the ssh "host" of the out-of-container tests (``testing.bridge``).
    bridge_host: bool = False
    #: Its containers (controller first): :func:`slurm_layout`, :func:`sge_layout` ...
    layout: LayoutFunc = field(kw_only=True)

    def node_layouts(self) -> list[NodeLayout]:
        """The containers of this cluster, controller first (:attr:`layout` applied to it)."""
        return self.layout(self)


# --------------------------------------------------------------------------- layouts


def slurm_layout(spec: ClusterSpec) -> list[NodeLayout]:
    """Slurm: all daemons in one container, or a controller and ``nodes`` compute containers."""
    if spec.nodes <= 1:
        return [NodeLayout("all", "slurm", {"SLURM_ROLE": "all"})]
    ctl = NodeLayout("ctl", "slurmctl", {"SLURM_ROLE": "controller", "SLURM_EXPECTED_NODES": str(spec.nodes)})
    computes = [
        NodeLayout(f"c{i}", f"c{i}", {"SLURM_ROLE": "compute", "SLURM_CONTROLLER": ctl.hostname})
        for i in range(1, spec.nodes + 1)
    ]
    return [ctl, *computes]


def mpi_layout(spec: ClusterSpec) -> list[NodeLayout]:
    """Open MPI: ``nodes`` containers reachable over ssh, the first one the controller."""
    hosts = [f"mpi{i}" for i in range(1, max(1, spec.nodes) + 1)]
    env = {"MPI_HOSTS": ",".join(hosts)}
    return [NodeLayout(h, h, {**env, "MPI_ROLE": "controller" if i == 0 else "node"}) for i, h in enumerate(hosts)]


def sge_layout(spec: ClusterSpec) -> list[NodeLayout]:
    """Grid Engine: all daemons in one container, or a master and ``nodes`` execution hosts."""
    if spec.nodes <= 1:
        return [NodeLayout("all", "sge", {"SGE_ROLE": "all"})]
    execs = [f"exec{i}" for i in range(1, spec.nodes + 1)]
    master = NodeLayout("master", "sgemaster", {"SGE_ROLE": "master", "SGE_EXEC_HOSTS": " ".join(execs)})
    return [master, *(NodeLayout(h, h, {"SGE_ROLE": "exec", "SGE_MASTER": master.hostname}) for h in execs)]


def htcondor_layout(spec: ClusterSpec) -> list[NodeLayout]:
    """HTCondor: a personal pool in one container, or a central manager + submit node and ``nodes``
    execute nodes."""
    if spec.nodes <= 1:
        return [NodeLayout("all", "htcondor", {"HTCONDOR_ROLE": "all"})]
    execs = [f"exec{i}" for i in range(1, spec.nodes + 1)]
    manager = NodeLayout("cm", "condormgr", {"HTCONDOR_ROLE": "manager", "HTCONDOR_EXECUTE_NODES": str(spec.nodes)})
    return [manager, *(NodeLayout(h, h, {"HTCONDOR_ROLE": "execute", "HTCONDOR_MANAGER": manager.hostname})
                       for h in execs)]


def _pbs_family_layout(spec: ClusterSpec, var: str, host: str) -> list[NodeLayout]:
    """OpenPBS / Torque: all daemons in one container, or a server and ``nodes`` MOM containers."""
    if spec.nodes <= 1:
        return [NodeLayout("all", host, {f"{var}_ROLE": "all"})]
    moms = [f"c{i}" for i in range(1, spec.nodes + 1)]
    server = NodeLayout("server", f"{host}server", {f"{var}_ROLE": "server", f"{var}_NODES": " ".join(moms)})
    env = {f"{var}_SERVER_HOST": server.hostname, f"{var}_NODES": " ".join(moms)}  # MOMs trust each other
    return [server, *(NodeLayout(h, h, {f"{var}_ROLE": "mom", **env}) for h in moms)]


def openpbs_layout(spec: ClusterSpec) -> list[NodeLayout]:
    """OpenPBS (``PBS_*`` variables, hosts ``openpbs``/``openpbsserver``): see :func:`_pbs_family_layout`."""
    return _pbs_family_layout(spec, "PBS", "openpbs")


def torque_layout(spec: ClusterSpec) -> list[NodeLayout]:
    """Torque (``TORQUE_*`` variables, hosts ``torque``/``torqueserver``): see :func:`_pbs_family_layout`."""
    return _pbs_family_layout(spec, "TORQUE", "torque")


# --------------------------------------------------------------------------- the clusters

_SLURM_LOGS = ("/var/log/slurm/*.log", "/var/log/mariadb.log")
_SGE_LOGS = ("/var/spool/gridengine/qmaster/messages", "/var/spool/gridengine/execd/*/messages")
_PBS_LOGS = ("/var/spool/pbs/server_logs/*", "/var/spool/pbs/mom_logs/*", "/var/spool/pbs/sched_logs/*")
_TORQUE_LOGS = ("/var/spool/torque/server_logs/*", "/var/spool/torque/mom_logs/*", "/var/spool/torque/sched_logs/*")

#: Client commands of each DRMS family, reachable from the host through shims (``testing.shims``).
SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo", "srun", "salloc", "sstat",
                  "sacctmgr", "sprio", "sshare")
PBS_COMMANDS = ("qsub", "qstat", "qdel", "qhold", "qrls", "qalter", "qrerun", "qmove", "qsig", "qselect",
                "qmgr", "pbsnodes", "tracejob")
SGE_COMMANDS = ("qsub", "qstat", "qdel", "qhold", "qrls", "qalter", "qacct", "qconf", "qhost", "qmod",
                "qselect", "qrsh")

HTCONDOR_COMMANDS = ("condor_submit", "condor_q", "condor_history", "condor_rm", "condor_hold", "condor_release",
                     "condor_status", "condor_qedit", "condor_wait", "condor_version", "condor_restart",
                     "condor_config_val")
_HTCONDOR_LOGS = ("/var/log/condor/*Log",)

_PBS_FAMILY = (("openpbs", "pbspro", "23.06", _PBS_LOGS, openpbs_layout),
               ("torque", "torque", "6.1", _TORQUE_LOGS, torque_layout))

CLUSTERS: dict[str, ClusterSpec] = {
    s.name: s
    for s in (
        ClusterSpec("slurm", "slurm", "slurm", "debian:bookworm-slim", "soma-schedulers/slurm:22.05", 1,
                    ready_line="SOMA-SCHEDULERS-READY slurm", log_paths=_SLURM_LOGS, client_commands=SLURM_COMMANDS,
                    layout=slurm_layout),
        ClusterSpec("slurm-cluster", "slurm", "slurm", "debian:bookworm-slim", "soma-schedulers/slurm:22.05", 2,
                    ready_line="SOMA-SCHEDULERS-READY slurm", log_paths=_SLURM_LOGS, client_commands=SLURM_COMMANDS,
                    layout=slurm_layout),
        ClusterSpec("slurm-24.11", "slurm", "slurm", "debian:trixie-slim", "soma-schedulers/slurm:24.11", 1,
                    ready_line="SOMA-SCHEDULERS-READY slurm", log_paths=_SLURM_LOGS, client_commands=SLURM_COMMANDS,
                    layout=slurm_layout),
        # no slurmdbd: exercises the backend's fallback (squeue exit codes) on a real daemon
        ClusterSpec("slurm-noacct", "slurm", "slurm", "debian:bookworm-slim", "soma-schedulers/slurm:22.05", 1,
                    ready_line="SOMA-SCHEDULERS-READY slurm", log_paths=_SLURM_LOGS,
                    environment={"SLURM_ACCOUNTING": "0"}, client_commands=SLURM_COMMANDS, layout=slurm_layout),
        # the Slurm image plus sshd: the "host" of the out-of-container tests (testing/bridge.py)
        ClusterSpec("slurm-ssh", "slurm", "ssh-host", "soma-schedulers/slurm:22.05", "soma-schedulers/slurm-ssh:22.05",
                    1, ready_line="SOMA-SCHEDULERS-READY slurm", log_paths=(*_SLURM_LOGS, "/var/log/sshd.log"),
                    client_commands=SLURM_COMMANDS, bridge_host=True, layout=slurm_layout),
        ClusterSpec("slurm-24.11-cluster", "slurm", "slurm", "debian:trixie-slim", "soma-schedulers/slurm:24.11",
                    2, ready_line="SOMA-SCHEDULERS-READY slurm", log_paths=_SLURM_LOGS, client_commands=SLURM_COMMANDS,
                    layout=slurm_layout),
        # nodes = containers: rank 0 runs on the first, MPIScheduler workers on the others
        ClusterSpec("mpi", "mpi", "openmpi", "debian:bookworm-slim", "soma-schedulers/openmpi:4.1", 3,
                    ready_line="SOMA-SCHEDULERS-READY mpi", log_paths=("/var/log/sshd.log",), incontainer="mpi",
                    layout=mpi_layout),
        # HTCondor 23.9 (trixie): a personal pool, or a central manager + 2 execute nodes
        *(ClusterSpec(name, "htcondor", "htcondor", "debian:trixie-slim", "soma-schedulers/htcondor:23.9", nodes,
                      ready_line="SOMA-SCHEDULERS-READY htcondor", log_paths=_HTCONDOR_LOGS,
                      client_commands=HTCONDOR_COMMANDS, layout=htcondor_layout)
          for name, nodes in (("htcondor", 1), ("htcondor-cluster", 2))),
        # the personal pool plus sshd: the host of the out-of-container tests (testing/bridge.py)
        ClusterSpec("htcondor-ssh", "htcondor", "ssh-host", "soma-schedulers/htcondor:23.9",
                    "soma-schedulers/htcondor-ssh:23.9", 1, ready_line="SOMA-SCHEDULERS-READY htcondor",
                    log_paths=(*_HTCONDOR_LOGS, "/var/log/sshd.log"), client_commands=HTCONDOR_COMMANDS,
                    bridge_host=True, layout=htcondor_layout),
        # DRMAA on Son of Grid Engine 8.1.9: the suite runs in the controller (testing.incontainer)
        ClusterSpec("sge", "drmaa", "sge", "debian:bookworm-slim", "soma-schedulers/sge:8.1.9", 1,
                    ready_line="SOMA-SCHEDULERS-READY sge", log_paths=_SGE_LOGS, client_commands=SGE_COMMANDS,
                    incontainer="drmaa", layout=sge_layout),
        ClusterSpec("sge-cluster", "drmaa", "sge", "debian:bookworm-slim", "soma-schedulers/sge:8.1.9", 2,
                    ready_line="SOMA-SCHEDULERS-READY sge", log_paths=_SGE_LOGS, client_commands=SGE_COMMANDS,
                    incontainer="drmaa", layout=sge_layout),
        # DRMAA on Slurm: the Slurm images plus slurm-drmaa (upstream source, see containers/slurm-drmaa)
        *(ClusterSpec(name, "drmaa", "slurm-drmaa", f"soma-schedulers/slurm:{ver}", f"soma-schedulers/slurm-drmaa:{ver}",
                      1, ready_line="SOMA-SCHEDULERS-READY slurm", log_paths=_SLURM_LOGS, upstream_source=True,
                      client_commands=SLURM_COMMANDS, incontainer="drmaa", layout=slurm_layout)
          for name, ver in (("slurm-drmaa", "22.05"), ("slurm-drmaa-24.11", "24.11"))),
        *(ClusterSpec(name, stype, ctx, "debian:bookworm-slim", f"soma-schedulers/{ctx}:{ver}", nodes,
                      ready_line=f"SOMA-SCHEDULERS-READY {ctx}", log_paths=logs, upstream_source=True,
                      client_commands=PBS_COMMANDS, layout=layout)
          for ctx, stype, ver, logs, layout in _PBS_FAMILY
          for name, nodes in ((ctx, 1), (f"{ctx}-cluster", 2))),
        # the same plus sshd (containers/ssh-host), out-of-container hosts; their sources as above
        *(ClusterSpec(f"{ctx}-ssh", stype, "ssh-host", f"soma-schedulers/{ctx}:{ver}",
                      f"soma-schedulers/{ctx}-ssh:{ver}", 1, ready_line=f"SOMA-SCHEDULERS-READY {ctx}",
                      log_paths=(*logs, "/var/log/sshd.log"), client_commands=PBS_COMMANDS, bridge_host=True,
                      layout=layout)
          for ctx, stype, ver, logs, layout in _PBS_FAMILY),
    )
}
