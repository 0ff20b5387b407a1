"""Docker images for the DRMS test clusters, built without any image registry.

A leaf: it knows images, not clusters (:mod:`.cluster_specs` and :mod:`.cluster_images` do).
Two layers of images are needed by the clusters:

* **Base images** (``debian:bookworm-slim``, ``debian:trixie-slim``).  They are
  taken from the local Docker image store when present, otherwise pulled, and
  when no registry is reachable they are built here: ``debootstrap
  --variant=minbase`` into a temporary directory, trimmed like Debian's slim
  images, then imported with the exact tag the Dockerfiles use in their
  ``FROM`` line.  The Debian mirror is read from the host's apt sources
  (deb822 ``*.sources`` or one-line ``*.list`` files); the environment
  variable ``SOMA_SCHEDULERS_DEBIAN_MIRROR`` overrides it.
* **DRMS images** built from ``containers/<spec>/`` with :func:`build_image`
  (Docker's classic builder and its layer cache).

Command line (prints build times and image sizes; :mod:`.images_cli`)::

    python -m soma_schedulers.testing.images build slurm slurm-24.11
    python -m soma_schedulers.testing.images build --no-cache slurm
    python -m soma_schedulers.testing.images base debian:trixie-slim
    python -m soma_schedulers.testing.images list
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .harness_errors import HarnessError, ImageUnavailable

logger = logging.getLogger(__name__)

#: Callable receiving one human-readable progress line.
LogFunc = Callable[[str], None]

#: Environment variable overriding the Debian mirror used by debootstrap.
MIRROR_ENV = "SOMA_SCHEDULERS_DEBIAN_MIRROR"
#: Set to ``1`` to never try ``docker pull`` for base images.
NO_PULL_ENV = "SOMA_SCHEDULERS_NO_PULL"
#: Label put on every image built or imported here.
BASE_LABEL = "org.soma-schedulers.base"
IMAGE_LABEL = "org.soma-schedulers.image"

_APT_DIR = Path("/etc/apt")

# dpkg exclusions of Debian's official "-slim" images.
_SLIM_DPKG_CFG = """\
# Written by soma_schedulers.testing.images (like Debian's -slim images)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""

_APT_DOCKER_CLEAN = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order:: "gz";
APT::AutoRemove::SuggestsImportant "false";
"""


__all__ = ["HarnessError", "ImageUnavailable", "LogFunc", "base_suite", "build_image", "debian_mirror",
           "docker_client", "ensure_base_image", "image_exists", "image_size", "main"]


def _default_log(line: str) -> None:
    logger.info("%s", line)


# --------------------------------------------------------------------------- docker


def docker_client() -> Any:
    """Return a connected ``docker.DockerClient``.

    Raises :class:`ImageUnavailable` when the ``docker`` Python package is not
    installed or the Docker daemon cannot be reached.
    """
    try:
        import docker
    except ImportError as exc:
        raise ImageUnavailable(
            "the 'docker' Python package is not installed (pip install docker)"
        ) from exc
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # docker.errors.DockerException, requests errors...
        raise ImageUnavailable(f"Docker daemon not reachable: {exc}") from exc
    return client


def image_exists(client: Any, tag: str) -> bool:
    """True if ``tag`` is in the local image store."""
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def image_size(client: Any, tag: str) -> int:
    """Size in bytes of a local image (as ``docker images`` reports it)."""
    return int(client.images.get(tag).attrs.get("Size", 0))


@contextlib.contextmanager
def _image_lock(what: str) -> Iterator[None]:
    """Serialise image creation between processes (e.g. pytest-xdist workers)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", what)
    path = Path(tempfile.gettempdir()) / f"soma-schedulers-image-{safe}.lock"
    with open(path, "a+") as fh:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o666)
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- mirror


def _parse_deb822(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
            continue
        if line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
            continue
        if ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _apt_source_uris(apt_dir: Path = _APT_DIR) -> list[tuple[str, list[str]]]:
    """(uri, suites) of the enabled binary ``deb`` sources, in apt's order."""
    found: list[tuple[str, list[str]]] = []
    files: list[Path] = []
    if (apt_dir / "sources.list").is_file():
        files.append(apt_dir / "sources.list")
    d = apt_dir / "sources.list.d"
    if d.is_dir():
        files.extend(sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources")))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for st in _parse_deb822(text):
                if st.get("enabled", "yes").lower() in ("no", "false", "0"):
                    continue
                if "deb" not in st.get("types", "").split():
                    continue
                suites = st.get("suites", "").split()
                for uri in st.get("uris", "").split():
                    found.append((uri, suites))
        else:
            for raw in text.splitlines():
                line = raw.split("#", 1)[0].strip()
                # deb [opts] uri suite components...
                m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m:
                    found.append((m.group(1), [m.group(2)]))
    return found


def debian_mirror(apt_dir: Path = _APT_DIR) -> str:
    """Debian archive URI for debootstrap.

    ``$SOMA_SCHEDULERS_DEBIAN_MIRROR`` wins; otherwise the first enabled ``deb``
    source of the host whose suites are not ``-security`` ones (and whose URI
    looks like a Debian archive) is used.
    """
    env = os.environ.get(MIRROR_ENV, "").strip()
    if env:
        return env
    candidates = [
        (uri, suites)
        for uri, suites in _apt_source_uris(apt_dir)
        if re.match(r"^(https?|file|ftp)://", uri)
        and not any(s.endswith(("-security", "/updates")) for s in suites)
    ]
    for uri, _ in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    if candidates:
        return candidates[0][0]
    raise ImageUnavailable(
        f"no Debian mirror found in {apt_dir}/sources.list(.d); set {MIRROR_ENV}"
    )


# --------------------------------------------------------------------------- base images

_BASE_RE = re.compile(r"^(?:docker\.io/)?(?:library/)?debian:([a-z]+)(?:-slim)?$")


def base_suite(tag: str) -> str:
    """Debian suite of a base image tag: ``debian:trixie-slim`` -> ``trixie``."""
    m = _BASE_RE.match(tag)
    if not m:
        raise ImageUnavailable(f"don't know how to build base image {tag!r} (expected debian:<suite>[-slim])")
    return m.group(1)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    try:
        with open("/proc/mounts") as fh:
            points = [line.split()[1].replace("\\040", " ") for line in fh]
    except OSError:
        return []
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _safe_rmtree(path: Path, log: LogFunc) -> None:
    """Remove a debootstrap directory, unmounting leftovers (proc, sys) first."""
    for mp in _mounts_under(path):
        subprocess.run(["umount", "-l", mp], check=False, capture_output=True)
    left = _mounts_under(path)
    if left:
        log(f"WARNING: not removing {path}: still mounted: {', '.join(left)}")
        return
    shutil.rmtree(path, ignore_errors=True)


def _empty_dir(d: Path, keep: Callable[[Path], bool] = lambda _p: False) -> None:
    """Delete the entries of ``d`` (not ``d`` itself) except those ``keep`` accepts."""
    if not d.is_dir():
        return
    for child in d.iterdir():
        if keep(child):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink()


def _slim_rootfs(rootfs: Path) -> None:
    """Trim a fresh debootstrap tree like Debian's ``-slim`` images."""
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(_SLIM_DPKG_CFG)
    (rootfs / "etc/apt/apt.conf.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(_APT_DOCKER_CLEAN)
    for sub in ("usr/share/man", "usr/share/groff", "usr/share/info", "usr/share/lintian",
                "usr/share/linda"):
        _empty_dir(rootfs / sub)
    _empty_dir(rootfs / "usr/share/locale", keep=lambda p: p.name == "locale.alias")
    doc = rootfs / "usr/share/doc"
    if doc.is_dir():
        for pkg in doc.iterdir():
            if pkg.is_dir() and not pkg.is_symlink():
                _empty_dir(pkg, keep=lambda p: p.name == "copyright")
    # apt caches and lists: keep the directory layout (archives/partial ...).
    for sub in ("var/cache/apt", "var/lib/apt/lists"):
        d = rootfs / sub
        if d.is_dir():
            for f in d.rglob("*"):
                if (f.is_file() or f.is_symlink()) and f.name != "lock":
                    f.unlink()
    # Docker provides these at run time.
    for rel in ("etc/hostname", "etc/resolv.conf"):
        target = rootfs / rel
        if target.is_file() or target.is_symlink():
            target.unlink()
    (rootfs / "etc/hostname").write_text("localhost\n")
    (rootfs / "etc/resolv.conf").write_text("")


def _run_logged(argv: list[str], log: LogFunc, every: float = 5.0) -> None:
    """Run ``argv``, logging a line now and then, raising with the tail on failure."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    assert proc.stdout is not None
    tail: list[str] = []
    last = 0.0
    for line in proc.stdout:
        line = line.rstrip()
        tail = ([*tail, line])[-30:]
        now = time.monotonic()
        if now - last >= every or line.startswith(("E:", "W:")):
            log(f"  {line}")
            last = now
    rc = proc.wait()
    if rc:
        raise ImageUnavailable(
            f"{argv[0]} failed (exit {rc}):\n" + "\n".join(tail)
        )


def ensure_base_image(tag: str, log: LogFunc = _default_log) -> str:
    """Make sure the Debian base image ``tag`` exists locally and return ``tag``.

    Order: local image store, ``docker pull`` (skipped when
    ``$SOMA_SCHEDULERS_NO_PULL=1``), then ``debootstrap --variant=minbase`` +
    ``docker import`` (needs root and the ``debootstrap`` program).  The
    imported image carries ``LABEL org.soma-schedulers.base=debootstrap``.
    """
    suite = base_suite(tag)
    client = docker_client()
    if image_exists(client, tag):
        return tag
    with _image_lock(tag):
        if image_exists(client, tag):
            return tag
        if os.environ.get(NO_PULL_ENV, "") not in ("1", "true", "yes"):
            log(f"base image {tag}: trying docker pull")
            try:
                repo, _, tg = tag.partition(":")
                client.images.pull(repo, tag=tg or "latest")
                log(f"base image {tag}: pulled")
                return tag
            except Exception as exc:
                log(f"base image {tag}: pull failed ({str(exc).splitlines()[0][:160]}); building with debootstrap")
        debootstrap = shutil.which("debootstrap") or next(
            (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if os.access(p, os.X_OK)), None
        )
        if not debootstrap:
            raise ImageUnavailable(
                f"base image {tag} is not available locally, cannot be pulled, and "
                "'debootstrap' is not installed (apt-get install debootstrap)"
            )
        if os.geteuid() != 0:
            raise ImageUnavailable(
                f"base image {tag} is not available locally, cannot be pulled, and "
                "debootstrap needs root; build it once as root with "
                f"'python -m soma_schedulers.testing.images base {tag}'"
            )
        mirror = debian_mirror()
        tmp = Path(tempfile.mkdtemp(prefix=f"soma-debootstrap-{suite}-"))
        rootfs = tmp / "rootfs"
        t0 = time.monotonic()
        try:
            log(f"base image {tag}: debootstrap --variant=minbase {suite} from {mirror} (20-60 s)")
            _run_logged([debootstrap, "--variant=minbase", suite, str(rootfs), mirror], log)
            t1 = time.monotonic()
            log(f"base image {tag}: debootstrap done in {t1 - t0:.1f} s; trimming and importing")
            _slim_rootfs(rootfs)
            tarball = tmp / "rootfs.tar"
            subprocess.run(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball), "."],
                check=True, capture_output=True,
            )
            repo, _, tg = tag.partition(":")
            changes = [
                f"LABEL {BASE_LABEL}=debootstrap",
                f"LABEL {BASE_LABEL}.suite={suite}",
                'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
                'CMD ["bash"]',
            ]
            client.api.import_image_from_file(str(tarball), repository=repo, tag=tg or "latest",
                                              changes=changes)
            if not image_exists(client, tag):
                raise ImageUnavailable(f"docker import of {tag} did not produce the image")
            log(f"base image {tag}: imported in {time.monotonic() - t1:.1f} s "
                f"({image_size(client, tag) / 1e6:.0f} MB, total {time.monotonic() - t0:.1f} s)")
        except subprocess.CalledProcessError as exc:
            raise ImageUnavailable(f"building {tag} failed: {exc.stderr!r}") from exc
        finally:
            _safe_rmtree(tmp, log)
    return tag


# --------------------------------------------------------------------------- builds


def build_image(
    name: str,
    context_dir: str | os.PathLike[str],
    dockerfile: str | None = None,
    buildargs: dict[str, str] | None = None,
    log: LogFunc = _default_log,
    nocache: bool = False,
    include: dict[str, Path] | None = None,
) -> tuple[str, float, int]:
    """Build ``context_dir`` into the image tagged ``name``.

    Uses the classic builder through the Docker API with its layer cache
    (``nocache=True`` for a cold build), streaming ``Step``/output lines to
    ``log``.  ``include`` adds folders to the context (``{"common": path}``:
    ``COPY common/...`` then works), the context's own files unchanged, so the
    layer cache still hits.  Returns ``(tag, seconds, size_bytes)``.  Raises
    :class:`ImageUnavailable` with the last output lines when the build fails.
    """
    import tarfile

    import docker.errors
    import docker.utils

    client = docker_client()
    context = Path(context_dir)
    if not context.is_dir():
        raise ImageUnavailable(f"build context {context} does not exist")
    t0 = time.monotonic()
    tail: list[str] = []
    fileobj = None
    if include:  # the context as docker-py would send it (no .dockerignore here), plus the folders
        fileobj = docker.utils.tar(str(context), dockerfile=(dockerfile, None))
        with tarfile.open(fileobj=fileobj, mode="a") as tar:
            for arcname, folder in include.items():
                if not Path(folder).is_dir():
                    raise ImageUnavailable(f"{folder} (added to the build context of {name}) does not exist")
                tar.add(str(folder), arcname=arcname)
        fileobj.seek(0)
    with _image_lock(name):
        log(f"building {name} from {context}" + (f" ({buildargs})" if buildargs else ""))
        try:
            stream = client.api.build(
                path=None if fileobj else str(context),
                fileobj=fileobj,
                custom_context=fileobj is not None,
                dockerfile=dockerfile,
                tag=name,
                buildargs=buildargs or {},
                rm=True,
                forcerm=True,
                nocache=nocache,
                pull=False,
                labels={IMAGE_LABEL: name},
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    raise ImageUnavailable(
                        f"docker build of {name} failed: {detail}\n" + "\n".join(tail[-40:])
                    )
                text = chunk.get("stream")
                if not text:
                    continue
                for line in text.splitlines():
                    line = line.rstrip()
                    if not line:
                        continue
                    tail.append(line)
                    del tail[:-80]
                    if line.startswith(("Step ", "Successfully", " ---> Using cache")) or not line.startswith(" --->"):
                        log(f"  [{name}] {line}")
        except docker.errors.APIError as exc:
            raise ImageUnavailable(f"docker build of {name} failed: {exc}") from exc
    seconds = time.monotonic() - t0
    size = image_size(client, name)
    log(f"built {name} in {seconds:.1f} s, {size / 1e6:.0f} MB")
    return name, seconds, size


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m soma_schedulers.testing.images`` (:mod:`.images_cli`)."""
    from .images_cli import main as cli  # lazily: the CLI knows the clusters, this module does not

    return cli(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
