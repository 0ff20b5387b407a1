"""The process's DRMAA session, shared by every ``DrmaaScheduler``.

DRMAA 1.0 allows one session per process: the first scheduler opens it, the last one to sleep or
be cleaned exits it, and a later one reopens it with the previous contact string (a DRMS such as
SGE gives the jobs of a resumed session their ends). When it opens, the session reads
``drmaaImplementation`` and chooses the DRMS :attr:`~SharedSession.family` once.
"""

from __future__ import annotations

import contextlib
import threading
from types import ModuleType
from typing import Any

from ...errors import SchedulerUnavailableError
from .common import one_line
from .families import family_for
from .family import Family
from .sge import SgeFamily

__all__ = ["SESSION", "SharedSession"]


class SharedSession:
    """The process's DRMAA session (one lock around every call on it) and its DRMS family."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.module: ModuleType | None = None
        self.session: Any = None
        self.users: set[int] = set()
        self.contact: str | None = None
        self._implementation = ""
        #: The DRMS family of :attr:`implementation` (chosen when it is read: the session opens).
        self.family: type[Family] = SgeFamily

    @property
    def implementation(self) -> str:
        """DRMAA's ``drmaaImplementation`` string (e.g. ``SGE 8.1.9``); setting it chooses :attr:`family`."""
        return self._implementation

    @implementation.setter
    def implementation(self, value: str) -> None:
        self._implementation = value
        self.family = family_for(value)

    def acquire(self, user: int, module: ModuleType, contact: str | None) -> Any:
        """The open session (opened now if none is, resuming ``contact`` or the last one), for ``user``."""
        with self.lock:
            if self.session is None:
                session = module.Session()
                last = contact or self.contact
                try:
                    try:
                        session.initialize(last)
                    except module.errors.DrmaaException:
                        if not last or contact:
                            raise
                        session.initialize(None)  # the previous session cannot be resumed
                except module.errors.DrmaaException as exc:
                    raise SchedulerUnavailableError(f"cannot open a DRMAA session: {one_line(exc)}") from None
                self.module, self.session = module, session
                with contextlib.suppress(module.errors.DrmaaException):
                    self.contact = str(session.contact) or None
                    self.implementation = str(session.drmaaImplementation)
            self.users.add(user)
            return self.session

    def release(self, user: int) -> None:
        """``user`` no longer needs the session: exit it when no other user does."""
        with self.lock:
            self.users.discard(user)
            if self.users or self.session is None or self.module is None:
                return
            with contextlib.suppress(self.module.errors.DrmaaException):
                self.session.exit()
            self.session = None


#: The process's shared session (replaced by tests).
SESSION = SharedSession()
