"""Command line of the DRMS test images (prints build times and image sizes)::

    python -m soma_schedulers.testing.images build slurm slurm-24.11
    python -m soma_schedulers.testing.images build --no-cache slurm
    python -m soma_schedulers.testing.images base debian:trixie-slim
    python -m soma_schedulers.testing.images list

(``python -m soma_schedulers.testing.images_cli`` is the same.) It lives apart from
:mod:`.images`, which builds images and knows no clusters.
"""

from __future__ import annotations

import argparse
import sys
import time

from .cluster_images import build_cluster_images, build_spec_image
from .cluster_specs import CLUSTERS
from .harness_errors import HarnessError
from .images import docker_client, ensure_base_image, image_size

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); the exit code."""
    parser = argparse.ArgumentParser(prog="python -m soma_schedulers.testing.images",
                                     description="Docker images for the DRMS test clusters, built without any "
                                                 "image registry.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the images of cluster specs")
    b.add_argument("specs", nargs="*", help="cluster spec names (default: all)")
    b.add_argument("--no-cache", action="store_true", help="cold build (ignore the layer cache)")
    b.add_argument("-q", "--quiet", action="store_true", help="only print the summary")
    base = sub.add_parser("base", help="make a Debian base image (pull or debootstrap)")
    base.add_argument("tags", nargs="+", help="e.g. debian:bookworm-slim debian:trixie-slim")
    sub.add_parser("list", help="list the known cluster specs")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        if args.cmd == "list":
            for spec in CLUSTERS.values():
                print(f"{spec.name:20} {spec.scheduler_type:8} {spec.image_tag:32} "
                      f"FROM {spec.base_image:22} nodes={spec.nodes}")
            return 0
        if args.cmd == "base":
            for tag in args.tags:
                t0 = time.monotonic()
                ensure_base_image(tag, log=say)
                client = docker_client()
                print(f"{tag}: {time.monotonic() - t0:.1f} s, {image_size(client, tag) / 1e6:.0f} MB")
            return 0
        names = args.specs or list(CLUSTERS)
        unknown = [n for n in names if n not in CLUSTERS]
        if unknown:
            parser.error(f"unknown cluster spec(s) {unknown}; known: {sorted(CLUSTERS)}")
        rows: list[tuple[str, str, float, int]] = []
        done: set[str] = set()
        for n in names:
            spec = CLUSTERS[n]
            if spec.image_tag in done:
                rows.append((n, spec.image_tag, 0.0, image_size(docker_client(), spec.image_tag)))
                continue
            log = (lambda _l: None) if args.quiet else say
            t0 = time.monotonic()
            parent = next((p for p in CLUSTERS.values() if p.image_tag == spec.base_image), None)
            if parent is not None:  # built on another spec's image (slurm-ssh, slurm-drmaa): that one first
                build_cluster_images(parent, log=log)
            else:
                ensure_base_image(spec.base_image, log=log)
            tb = time.monotonic() - t0
            tag, secs, size = build_spec_image(spec, log=log, nocache=args.no_cache)
            if tb > 1:
                say(f"(base image {spec.base_image} took {tb:.1f} s)")
            rows.append((n, tag, secs, size))
            done.add(spec.image_tag)
        print(f"\n{'spec':20} {'image':32} {'build s':>8} {'size MB':>8}")
        for n, tag, secs, size in rows:
            print(f"{n:20} {tag:32} {secs:8.1f} {size / 1e6:8.0f}")
        return 0
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # also: python -m soma_schedulers.testing.images
    sys.exit(main())
