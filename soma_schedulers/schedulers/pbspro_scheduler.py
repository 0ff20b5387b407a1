"""The former import path of the ``pbspro`` and ``torque`` types, kept for existing imports.

The implementation lives in the :mod:`soma_schedulers.schedulers.pbs` package; every public
name of that package (``pbs.__all__``) is reachable here too, and so is ``Observation``.
"""

from __future__ import annotations

from typing import Any

from ..polled import Observation
from . import pbs

__all__ = [*pbs.__all__, "Observation"]


def __getattr__(name: str) -> Any:
    """The package's public names, looked up there (one list: ``pbs.__all__``)."""
    if name in pbs.__all__:
        return getattr(pbs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

