"""Start and stop throw-away DRMS clusters in Docker containers for tests.

Typical use (a pytest fixture)::

    from soma_schedulers.testing import docker_harness as dh

    ok, reason = dh.docker_available()
    if not ok:
        pytest.skip(reason)
    try:
        cluster = dh.start_cluster("slurm", name_suffix=worker_id)
    except dh.ImageUnavailable as exc:
        pytest.skip(str(exc))
    try:
        rc, out = cluster.exec(["sbatch", "--parsable"], user="alice", stdin=b"#!/bin/sh\\necho hi\\n")
        ...  # or run cluster.command_prefix + ["squeue"] with subprocess
    finally:
        cluster.stop()

This module is a facade: the harness lives in

* :mod:`.harness_errors`: :class:`HarnessError`, :class:`ImageUnavailable`, :class:`SourceUnavailable`;
* :mod:`.images`: base images and ``docker build`` (knows no clusters), its command line in
  :mod:`.images_cli`;
* :mod:`.cluster_specs`: :data:`CLUSTERS`, each :class:`ClusterSpec` carrying its layout;
* :mod:`.cluster_images`: the clusters' build contexts, upstream sources and image builds;
* :mod:`.cluster_lifecycle`: :class:`DrmsCluster`, :func:`start_cluster`, :func:`attach_cluster`,
  :func:`cleanup_stale`.

Every name it had before the split is still importable from here.
"""

from __future__ import annotations

from collections.abc import Callable

from .cluster_images import (
    ALLOW_DOWNLOAD_ENV,
    CONTAINERS_ENV,
    SKIP_BUILD_ENV,
    build_cluster_images,
    build_spec_image,
    check_upstream_source,
    containers_dir,
)
from .cluster_lifecycle import (
    HARNESS_LABEL,
    READY_TIMEOUT_ENV,
    ROLE_LABEL,
    SHARED_ROOT_ENV,
    SOURCE_MOUNT,
    DrmsCluster,
    attach_cluster,
    cleanup_stale,
    docker_available,
    owner_labels,
    source_mounts,
    source_root,
    start_cluster,
)
from .cluster_specs import (
    CLUSTERS,
    PBS_COMMANDS,
    SGE_COMMANDS,
    SLURM_COMMANDS,
    ClusterSpec,
    LayoutFunc,
    NodeLayout,
)
from .harness_errors import HarnessError, ImageUnavailable, SourceUnavailable
from .images import LogFunc, build_image, docker_client, ensure_base_image, image_exists

__all__ = [
    "ALLOW_DOWNLOAD_ENV",
    "CLUSTERS",
    "CONTAINERS_ENV",
    "HARNESS_LABEL",
    "LAYOUTS",
    "PBS_COMMANDS",
    "READY_TIMEOUT_ENV",
    "ROLE_LABEL",
    "SGE_COMMANDS",
    "SHARED_ROOT_ENV",
    "SKIP_BUILD_ENV",
    "SLURM_COMMANDS",
    "SOURCE_MOUNT",
    "ClusterSpec",
    "DrmsCluster",
    "HarnessError",
    "ImageUnavailable",
    "LayoutFunc",
    "LogFunc",
    "NodeLayout",
    "SourceUnavailable",
    "attach_cluster",
    "build_cluster_images",
    "build_image",
    "build_spec_image",
    "check_upstream_source",
    "cleanup_stale",
    "containers_dir",
    "docker_available",
    "docker_client",
    "ensure_base_image",
    "image_exists",
    "owner_labels",
    "source_mounts",
    "source_root",
    "start_cluster",
]


def _spec_layout(spec: ClusterSpec) -> list[NodeLayout]:
    return spec.node_layouts()


#: scheduler_type -> the containers of a spec, as before the split; each spec now carries its
#: own layout (:attr:`ClusterSpec.layout`), which this only forwards to.
LAYOUTS: dict[str, Callable[[ClusterSpec], list[NodeLayout]]] = {
    s.scheduler_type: _spec_layout for s in CLUSTERS.values()
}
