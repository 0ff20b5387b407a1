"""The errors of the Docker test harness, in a module of their own so that image building
(:mod:`.images`), cluster specs and cluster life-cycle can all raise them without importing
each other."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

__all__ = ["HarnessError", "ImageUnavailable", "SourceUnavailable", "run_or_report"]

_T = TypeVar("_T")


class HarnessError(Exception):
    """Base error of the Docker test harness."""


class ImageUnavailable(HarnessError):
    """An image cannot be obtained or built on this machine (the message says why)."""


class SourceUnavailable(ImageUnavailable):
    """The image builds from an upstream source that is not here and may not be downloaded."""


def run_or_report(what: str, run: Callable[[], _T]) -> _T | int:
    """``run()``, for the harness's command lines: when it raises :class:`SourceUnavailable`,
    print ``SKIPPED: <what>: <reason>`` and give exit status 0; for another :class:`HarnessError`,
    print one ``error:`` line on stderr and give 2."""
    try:
        return run()
    except SourceUnavailable as exc:
        print(f"SKIPPED: {what}: {str(exc).splitlines()[0]}", flush=True)
        return 0
    except HarnessError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
