"""The DRMS clusters of one pytest run, shared by every process of it (pytest-xdist workers too).

The process that runs pytest (the xdist controller, or the only process) calls
:meth:`ClusterPool.prepare` before any case runs: it checks that Docker answers and builds
(or finds) every image, so a run that cannot have its clusters says why once, before
anything starts. A cluster is then started by the first process whose case needs it;
the others attach to it (``DrmsCluster.info`` in a JSON file, under a file lock in a
directory all the run's processes share), so ``-n 4`` runs four workers against one
cluster. The controller stops every cluster at the end of the run; a run without workers
stops each one as soon as its cases are done.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import docker_harness as dh
from .shims import make_shims, remove_shims

__all__ = ["ClusterPool", "PoolError", "SharedCluster"]

logger = logging.getLogger(__name__)


class PoolError(Exception):
    """A cluster of the run cannot be had here; the message says why (one line first)."""


@dataclass
class SharedCluster:
    """A running cluster as one process of the run sees it."""

    cluster: dh.DrmsCluster
    #: Directory of client-command shims (``testing.shims``), "" when the DRMS has no commands.
    shims: str
    owner: bool


class ClusterPool:
    """Clusters started on demand, once per run, in a directory shared by the run's processes."""

    def __init__(self, directory: str, log: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = log or (lambda line: logger.info("%s", line))
        self._held: dict[str, SharedCluster] = {}

    @classmethod
    def create(cls, log: Callable[[str], None] | None = None) -> ClusterPool:
        """A pool in a new private directory (the controller's)."""
        return cls(tempfile.mkdtemp(prefix="soma-pool-"), log)

    # -- controller ----------------------------------------------------------------------
    def prepare(self, names: list[str]) -> dict[str, str]:
        """Check Docker and build the images of ``names``; ``{name: why not}`` for the failures."""
        ok, reason = dh.docker_available()
        if not ok:
            return {name: f"Docker is not available: {reason}" for name in names}
        failures: dict[str, str] = {}
        for name in names:
            try:
                dh.build_cluster_images(dh.CLUSTERS[name], self._log)
            except dh.HarnessError as exc:
                failures[name] = str(exc).splitlines()[0]
        return failures

    def stop_all(self) -> None:
        """Stop every cluster any process of the run started, remove the shims and the directory."""
        for name, held in list(self._held.items()):
            self._release(name, held)
        for info_file in sorted(self.directory.glob("*.json")):
            with contextlib.suppress(Exception):
                record = json.loads(info_file.read_text(encoding="utf-8"))
                cluster = dh.attach_cluster(record["cluster"], log=self._log, own=True)
                cluster.stop(graceful=False)  # nothing of the daemons' shutdown is under test here
                remove_shims(record.get("shims", ""))
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- any process -----------------------------------------------------------------------
    def get(self, name: str, worker: str = "") -> SharedCluster:
        """The running cluster ``name``: started here if no process of the run has it yet."""
        if name in self._held:
            return self._held[name]
        with self._locked(name):
            info_file = self.directory / f"{name}.json"
            error_file = self.directory / f"{name}.error"
            if error_file.exists():
                raise PoolError(error_file.read_text(encoding="utf-8"))
            if info_file.exists():
                record = json.loads(info_file.read_text(encoding="utf-8"))
                held = SharedCluster(dh.attach_cluster(record["cluster"], log=self._log), record["shims"], False)
            else:
                try:
                    cluster = dh.start_cluster(name, log=self._log, name_suffix=worker)
                except dh.HarnessError as exc:
                    error_file.write_text(str(exc).splitlines()[0], encoding="utf-8")
                    raise PoolError(str(exc).splitlines()[0]) from exc
                spec = cluster.spec
                shims = (make_shims(spec.client_commands, cluster.name, spec.user, cluster.shared_dir)
                         if spec.client_commands else "")
                held = SharedCluster(cluster, shims, True)
                info_file.write_text(json.dumps({"cluster": cluster.info(), "shims": shims}), encoding="utf-8")
                (self.directory / f"{name}.summary").write_text(_summary(cluster), encoding="utf-8")
        self._held[name] = held
        return held

    def done_with(self, name: str) -> None:
        """This process needs ``name`` no more: stop it when this process started it."""
        held = self._held.get(name)
        if held is not None and held.owner:
            self._release(name, held)

    def _release(self, name: str, held: SharedCluster) -> None:
        self._held.pop(name, None)
        if held.owner:
            held.cluster.stop(graceful=False)
            remove_shims(held.shims)
            with contextlib.suppress(OSError):
                (self.directory / f"{name}.json").unlink()

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        with open(self.directory / f"{name}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def summaries(self) -> dict[str, str]:
        """``{name: "N container(s), image TAG SIZE MB, docker run -> ready S s"}`` of every cluster
        any process of the run started."""
        return {p.stem: p.read_text(encoding="utf-8") for p in sorted(self.directory.glob("*.summary"))}


def _summary(cluster: dh.DrmsCluster) -> str:
    from .images import docker_client, image_size

    size = image_size(docker_client(), cluster.spec.image_tag)
    return (f"{len(cluster.containers)} container(s), image {cluster.spec.image_tag} {size / 1e6:.0f} MB, "
            f"docker run -> ready {cluster.ready_seconds:.1f} s")
