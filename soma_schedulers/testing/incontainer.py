"""Run the conformance suite (or any command) *inside* a test cluster's controller.

Some backends are used from within the cluster, not through a bridge from
the host: the ``mpi`` backend's scheduler is rank 0 of an ``mpirun``. This
runner starts the cluster (:func:`docker_harness.start_cluster`, with this
package bind-mounted read-only at ``/src``), runs a command in the controller
container as the test user with ``PYTHONPATH=/src``, streams its output,
stops the cluster and exits with the command's exit code::

    python -m soma_schedulers.testing.incontainer mpi [PYTEST ARGS...]
    python -m soma_schedulers.testing.incontainer mpi --exec -- mpirun -np 3 -H mpi1,mpi2,mpi3 hostname
    python -m soma_schedulers.testing.incontainer sge --install ./my-backend --scheduler mytype

``--install PATH`` (repeatable) makes a third-party backend importable in the cluster: a wheel,
or a project directory built into one here (``pip wheel --no-deps``), is unpacked on the
cluster's shared directory and put on ``PYTHONPATH`` with its entry points, so
``--scheduler mytype`` finds it (a backend that needs libdrmaa, which only the image has).
Pure-Python wheels only: the container's Python is Debian's, not this one.

Without ``--exec`` the command is the conformance suite (Debian's pytest and
hypothesis in the image; pytest's ``--basetemp`` is on the cluster's shared
directory, so every node sees the jobs' files). Exit code 2 (and one line on
stderr) when the cluster cannot be started; exit code 0 and one ``SKIPPED:``
line when its image needs an upstream source that is not here (``slurm-drmaa``
without ``containers/slurm-drmaa/src/``), as the suite skips such a DRMS.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from . import docker_harness as dh
from .harness_errors import run_or_report
from .registry import IN_CONTAINER_TYPES, TARGETS

__all__ = ["COMMANDS", "IN_CONTAINER_ONLY", "main", "run_in_cluster", "suite_command"]


def suite_command(cluster: dh.DrmsCluster, pytest_args: Sequence[str]) -> list[str]:
    """``python3 -m pytest`` running the conformance suite on the cluster's scheduler type
    (or on the ``--scheduler`` types ``pytest_args`` name)."""
    own = [] if any(a == "--scheduler" or a.startswith("--scheduler=") for a in pytest_args) \
        else ["--scheduler", cluster.spec.scheduler_type]
    return [
        # "no:soma_schedulers": the entry point is seen too when /src holds an egg-info
        "python3", "-m", "pytest", "-p", "no:soma_schedulers", "-p", "soma_schedulers.testing.plugin",
        "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning",
        "--basetemp", f"{cluster.shared_dir}/pytest",
        "--pyargs", "soma_schedulers.testing.suite", *own, *pytest_args,
    ]


def _mpi_command(cluster: dh.DrmsCluster, pytest_args: Sequence[str]) -> list[str]:
    # One rank per container: rank 0 (pytest, the scheduler) on the controller, workers on the others.
    return [
        "mpirun", "-np", str(len(cluster.hostnames)), "-H", ",".join(cluster.hostnames),
        "-x", f"PYTHONPATH={dh.SOURCE_MOUNT}", "-x", "PYTHONDONTWRITEBYTECODE=1",
        "python3", "-m", "soma_schedulers.schedulers.mpi_scheduler", "-m", *suite_command(cluster, pytest_args)[2:],
    ]


#: pytest-xdist workers of an in-container DRMAA run when the arguments name none: the cases wait
#: on the DRMS (SGE starts a job about a second after its submission), so 4 share 2 cores well.
DRMAA_WORKERS = 4
#: Hypothesis examples of the property cases on a DRMS (each one a round of jobs), as for --drms runs.
DRMS_EXAMPLES = 8


def _drmaa_command(cluster: dh.DrmsCluster, pytest_args: Sequence[str]) -> list[str]:
    # The job scripts go to the shared directory, which every execution host sees.
    ini = Path(cluster.shared_dir) / "drmaa.ini"
    ini.write_text(f"[{cluster.spec.name}]\nSCHEDULER_TYPE = drmaa\n"
                   f"OPTION_TMP_DIR = {cluster.shared_dir}/drmaa-scripts\n", encoding="utf-8")
    ini.chmod(0o644)
    workers = [] if any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in pytest_args) \
        else ["-n", str(DRMAA_WORKERS)]
    config = [] if any(a.startswith("--scheduler") for a in pytest_args) else ["--scheduler-config", str(ini)]
    examples = [] if any(a.startswith("--conformance-examples") for a in pytest_args) \
        else ["--conformance-examples", str(DRMS_EXAMPLES)]
    return suite_command(cluster, [*workers, *examples, *config, *pytest_args])


#: ``ClusterSpec.incontainer`` -> how to run the suite inside the cluster (default: :func:`suite_command`).
COMMANDS: dict[str, Callable[[dh.DrmsCluster, Sequence[str]], list[str]]] = {
    "suite": suite_command, "mpi": _mpi_command, "drmaa": _drmaa_command}
#: Scheduler types that only work inside their cluster (``--drms`` alone refuses them).
IN_CONTAINER_ONLY = IN_CONTAINER_TYPES
#: Other names of clusters: the targets (``registry.TARGETS``) ``sge-drmaa`` ... name the backend too.
ALIASES = {t.name: t.cluster for t in TARGETS if t.kind == "incontainer" and t.cluster and t.cluster != t.name}


def install_packages(paths: Sequence[str], into: Path) -> list[str]:
    """Unpack the wheels of ``paths`` (wheels, or project directories built here) into ``into``;
    the names of the distributions. Raises :class:`docker_harness.HarnessError` saying why not."""
    into.mkdir(parents=True, exist_ok=True)
    names = []
    with tempfile.TemporaryDirectory(prefix="soma-wheels-") as tmp:
        for i, path in enumerate(paths):
            if path.endswith(".whl") and Path(path).is_file():
                wheels = [Path(path)]
            elif Path(path).is_dir():
                out, copy = Path(tmp) / str(i), Path(tmp) / f"src{i}"
                # a copy: building in place would leave build/ and *.egg-info in the user's project
                shutil.copytree(path, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", ".git", ".venv",
                                                                          ".nox", ".tox", "__pycache__"))
                built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(copy)],
                                       capture_output=True, text=True, check=False)
                if built.returncode:
                    raise dh.HarnessError(f"--install {path}: pip wheel failed: "
                                          f"{(built.stderr.strip().splitlines() or ['?'])[-1]}")
                wheels = sorted(out.glob("*.whl"))
            else:
                raise dh.HarnessError(f"--install {path}: not a wheel file or a project directory")
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as zf:
                    zf.extractall(into)
                names.append(wheel.name.split("-")[0])
    for p in [into, *into.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return names


def run_in_cluster(name: str, command: Callable[[dh.DrmsCluster], list[str]],
                   log: Callable[[str], None] = print, install: Sequence[str] = ()) -> int:
    """Start cluster ``name``, run ``command(cluster)`` in its controller, stop it; the exit code.

    ``install``: wheels or project directories made importable there (:func:`install_packages`).
    """
    cluster = dh.start_cluster(name, log=log, mount_source=True)
    try:
        pythonpath = dh.SOURCE_MOUNT
        if install:
            site = Path(cluster.shared_dir) / "third-party-site"
            log(f"installed for the suite: {', '.join(install_packages(install, site))} (in {site})")
            pythonpath += f":{site}"
        argv = command(cluster)
        log(f"running in {cluster.name} as {cluster.spec.user}: {shlex.join(argv)}")
        docker = ["docker", "exec", "-u", cluster.spec.user, "-w", cluster.shared_dir,
                  "-e", f"PYTHONPATH={pythonpath}", "-e", "PYTHONDONTWRITEBYTECODE=1", cluster.name]
        return subprocess.run([*docker, *argv], stdin=subprocess.DEVNULL, check=False).returncode
    finally:
        cluster.stop(graceful=False)  # the run is over: the daemons' shutdown is not under test


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    name, rest = ALIASES.get(args[0], args[0]), args[1:]
    install: list[str] = []
    while rest[:1] == ["--install"] and len(rest) >= 2:
        install.append(rest[1])
        rest = rest[2:]
    if name not in dh.CLUSTERS:
        print(f"error: unknown cluster {name!r}; known: {', '.join(sorted(dh.CLUSTERS))}", file=sys.stderr)
        return 2
    command: Callable[[dh.DrmsCluster], list[str]]
    if rest[:1] == ["--exec"]:
        cmd = rest[2:] if rest[1:2] == ["--"] else rest[1:]
        if not cmd:
            print("error: --exec needs a command", file=sys.stderr)
            return 2
        command = lambda _cluster: cmd  # noqa: E731
    else:
        build = COMMANDS[dh.CLUSTERS[name].incontainer]
        command = lambda cluster: build(cluster, rest)  # noqa: E731

    def log(line: str) -> None:
        print(f"[incontainer] {line}", flush=True)

    return run_or_report(f"cluster {name}", lambda: run_in_cluster(name, command, log, install))


if __name__ == "__main__":
    sys.exit(main())
