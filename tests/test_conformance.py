"""The shipped conformance suite, collected for this repository's own run.

Targets are chosen with ``--scheduler`` / ``--drms`` (default: local_basic).
"""

from soma_schedulers.testing.suite import *  # noqa: F403
