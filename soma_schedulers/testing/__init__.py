"""The conformance suite, shipped as a pytest plugin.

Run it against any registered backend::

    pytest --pyargs soma_schedulers.testing.suite --scheduler=mytype [--scheduler-config=my.ini]

or against a real DRMS started in Docker (needs the repository's ``containers/``)::

    pytest --pyargs soma_schedulers.testing.suite --drms=slurm
"""

from .target import Target, wait_for_end

__all__ = ["Target", "wait_for_end"]
