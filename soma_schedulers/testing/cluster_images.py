"""The images of the DRMS test clusters: where their build contexts are, whether their upstream
sources are here, and building them (through :mod:`.images`, which knows no clusters)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

from .cluster_specs import CLUSTERS, ClusterSpec
from .harness_errors import ImageUnavailable, SourceUnavailable
from .images import LogFunc, build_image, docker_client, ensure_base_image, image_exists

__all__ = ["ALLOW_DOWNLOAD_ENV", "CONTAINERS_ENV", "SKIP_BUILD_ENV", "build_cluster_images", "build_spec_image",
           "check_upstream_source", "containers_dir"]

logger = logging.getLogger(__name__)

CONTAINERS_ENV = "SOMA_SCHEDULERS_CONTAINERS"  # path of the containers/ folder
SKIP_BUILD_ENV = "SOMA_SCHEDULERS_SKIP_BUILD"  # "1": use existing images as they are
ALLOW_DOWNLOAD_ENV = "SOMA_SCHEDULERS_ALLOW_DOWNLOAD"  # "1": images may download their upstream source


def _default_log(line: str) -> None:
    logger.info("%s", line)


def containers_dir() -> Path:
    """The folder of the DRMS image build contexts (the repository's ``containers/``).

    ``$SOMA_SCHEDULERS_CONTAINERS`` wins; then the copy an installed wheel ships
    (``soma_schedulers/testing/containers``); otherwise walk up from the current
    directory, then from this file, looking for a ``containers/`` directory
    holding at least one known spec folder with a Dockerfile.
    """
    env = os.environ.get(CONTAINERS_ENV, "").strip()
    if env:
        p = Path(env).expanduser().resolve()
        if not p.is_dir():
            raise ImageUnavailable(f"${CONTAINERS_ENV}={env} is not a directory")
        return p
    contexts = {(s.context, s.dockerfile or "Dockerfile") for s in CLUSTERS.values()}
    shipped = Path(__file__).resolve().parent / "containers"  # an installed wheel's package data
    if any((shipped / c / f).is_file() for c, f in contexts):
        return shipped
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for d in (start, *start.parents):
            cand = d / "containers"
            if cand.is_dir() and any((cand / c / f).is_file() for c, f in contexts):
                return cand
    raise ImageUnavailable(
        f"no containers/ folder with the DRMS Dockerfiles found from {Path.cwd()} "
        f"or {Path(__file__).parent}; set ${CONTAINERS_ENV}"
    )



def check_upstream_source(spec: ClusterSpec) -> None:
    """Raise :class:`SourceUnavailable` (why, and how to fix it) when ``spec`` needs an upstream
    source that is neither in ``<context>/src/`` (a tree or a tarball) nor allowed to be downloaded."""
    if not spec.upstream_source or os.environ.get(ALLOW_DOWNLOAD_ENV, "") in ("1", "true", "yes"):
        return
    ctx = containers_dir() / spec.context
    src = ctx / "src"
    if (src / "configure.ac").is_file() or any(src.glob("*.tar.gz")) or any(src.glob("*.tgz")):
        return
    pin: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (ctx / "upstream.env").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                pin[key.strip()] = value.strip().strip("'\"")
    raise SourceUnavailable(
        f"{pin.get('NAME', spec.context)} {pin.get('VERSION', '')} source (commit {pin.get('COMMIT', '?')}) "
        f"is not in {src}: export it there ({pin.get('EXPORT', f'git archive COMMIT | tar -x -C {src}')}) or set "
        f"{ALLOW_DOWNLOAD_ENV}=1 to let the build download {pin.get('URL', 'it')}"
    )



_built: set[str] = set()
_built_lock = threading.Lock()


def build_spec_image(spec: ClusterSpec, log: LogFunc = _default_log,
                     nocache: bool = False) -> tuple[str, float, int]:
    """Build ``spec.image_tag`` (base image must exist). Returns ``(tag, seconds, size)``.

    The context is ``containers/<spec.context>/`` plus ``containers/common/`` (the entrypoints'
    shared shell library) as ``common/``."""
    return build_image(
        spec.image_tag,
        containers_dir() / spec.context,
        dockerfile=spec.dockerfile,
        buildargs={"BASE_IMAGE": spec.base_image},
        log=log,
        nocache=nocache,
        include={"common": containers_dir() / "common"},
    )


def build_cluster_images(spec: ClusterSpec, log: LogFunc = _default_log) -> None:
    """Ensure the base image and (re)build the spec's image through the layer cache.

    Done once per process and image tag (a cached rebuild takes about a second
    and picks up edits of the Dockerfile or scripts).  With
    ``$SOMA_SCHEDULERS_SKIP_BUILD=1`` an existing image is used as is.
    Raises :class:`ImageUnavailable` when the image cannot be made here.
    A spec whose base image is another spec's image (``slurm-ssh``) builds that one first.
    """
    parent = next((s for s in CLUSTERS.values() if s.image_tag == spec.base_image), None)
    if parent is not None:
        if not (os.environ.get(SKIP_BUILD_ENV, "") in ("1", "true", "yes")
                and image_exists(docker_client(), spec.image_tag)):
            check_upstream_source(spec)  # a missing source skips before the parent is built
        build_cluster_images(parent, log)
    with _built_lock:
        if spec.image_tag in _built:
            return
        client = docker_client()
        if os.environ.get(SKIP_BUILD_ENV, "") in ("1", "true", "yes") and image_exists(client, spec.image_tag):
            _built.add(spec.image_tag)
            return
        check_upstream_source(spec)
        if parent is None:
            ensure_base_image(spec.base_image, log=log)
        build_spec_image(spec, log=log)
        _built.add(spec.image_tag)

