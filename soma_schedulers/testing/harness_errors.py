"""The errors of the Docker test harness, in a module of their own so that image building
(:mod:`.images`), cluster specs and cluster life-cycle can all raise them without importing
each other."""

from __future__ import annotations

__all__ = ["HarnessError", "ImageUnavailable", "SourceUnavailable"]


class HarnessError(Exception):
    """Base error of the Docker test harness."""


class ImageUnavailable(HarnessError):
    """An image cannot be obtained or built on this machine (the message says why)."""


class SourceUnavailable(ImageUnavailable):
    """The image builds from an upstream source that is not here and may not be downloaded."""
