"""A pytest file run INSIDE a cluster's controller as its user (libdrmaa, mpi4py exist only there),
from the host: :class:`Inside`; and :func:`root`, a root shell command in the controller (or another
container of the cluster). Used by test_reliability_incontainer.py and test_events_sge.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from soma_schedulers.testing import docker_harness as dh

#: The reliability tests' file and what it reads from the host's environment.
RELIABILITY = f"{dh.SOURCE_MOUNT}/tests/containers/reliability_inside.py"
PASSED_ON = ("SOMA_RELIABILITY_JOBS", "SOMA_LOAD_JOBS", "SOMA_SGE_LOAD_JOBS")


class Inside:
    """``<script>::<test>`` running in the controller, its output streamed and kept; its work
    directory (in the shared directory) is given in ``$<workdir_var>``."""

    def __init__(self, cluster: dh.DrmsCluster, test: str, mpi: bool = False, script: str = RELIABILITY,
                 env: dict[str, str] | None = None, workdir_var: str = "SOMA_RELIABILITY_DIR") -> None:
        self.cluster = cluster
        self.script = script
        self.work = Path(cluster.make_workdir(f"{Path(script).stem}-{test}"))
        env = {workdir_var: str(self.work), "PYTHONPATH": dh.SOURCE_MOUNT, "PYTHONDONTWRITEBYTECODE": "1",
               **{k: os.environ[k] for k in PASSED_ON if k in os.environ}, **(env or {})}
        argv = ["python3", "-m", "pytest", "-p", "no:soma_schedulers", "-p", "no:cacheprovider",
                "-W", "ignore::pytest.PytestAssertRewriteWarning", "--rootdir", str(self.work), "-c", "/dev/null",
                "-q", "-s", "-rs", "--color=no", f"{script}::{test}"]
        if mpi:  # rank 0 runs pytest, the other ranks are the scheduler's workers
            argv = ["mpirun", "-np", str(len(cluster.hostnames)), "-H", ",".join(cluster.hostnames),
                    *[a for k in env for a in ("-x", k)],
                    "python3", "-m", "soma_schedulers.schedulers.mpi_scheduler", "-m", *argv[2:]]
        docker = ["docker", "exec", "-u", cluster.spec.user, "-w", cluster.shared_dir,
                  *[a for k, v in env.items() for a in ("-e", f"{k}={v}")], cluster.name]
        self.lines: list[str] = []
        self.proc = subprocess.Popen([*docker, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            sys.stdout.write(f"[inside] {line}")
            sys.stdout.flush()

    def stop(self) -> None:
        """Kill the run (in the container too: killing ``docker exec`` leaves it running)."""
        self.cluster.exec(["pkill", "-u", self.cluster.spec.user, "-f", Path(self.script).stem])
        self.proc.kill()

    def wait(self, timeout: float) -> None:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            rc = self.proc.wait()
            self.lines.append(f"(killed after {timeout:.0f} s)\n")
        self.reader.join(10)
        assert rc == 0, "the run inside the cluster failed:\n" + "".join(self.lines[-200:])

    def wait_for_file(self, name: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not (self.work / name).exists():
            assert self.proc.poll() is None, "the run inside ended early:\n" + "".join(self.lines[-200:])
            assert time.monotonic() < deadline, f"no {name} after {timeout:.0f} s"
            time.sleep(0.2)
        return (self.work / name).read_text()


def root(cluster: dh.DrmsCluster, script: str, container: Any | None = None) -> float:
    """Run bash ``script`` as root in the controller (or ``container``); its duration (s)."""
    t0 = time.monotonic()
    rc, out = cluster.exec(["bash", "-c", script], container=container)
    assert rc == 0, out
    return time.monotonic() - t0
