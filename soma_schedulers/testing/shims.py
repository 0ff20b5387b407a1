"""Client-command shims: a DRMS in a test container, reachable by command name from the host.

A backend under test may know nothing of this project's command runner or bridge: it simply
runs ``sbatch`` or ``qstat`` with :mod:`subprocess`. :func:`make_shims` writes one small
``/bin/sh`` script per client command of a cluster (``ClusterSpec.client_commands``) into a
private directory; put first on ``PATH``, each one runs the real command in the cluster's
controller as the test user::

    exec docker exec -i -u alice -w "$PWD" <controller> sbatch "$@"

``"$@"`` hands every argument over as one argv item (docker passes the list as it is) and
``-i`` forwards standard input, so argv and job scripts sent on stdin arrive byte for byte.
The command runs in the caller's working directory when that directory is on the cluster's
shared path (bind-mounted at the same path in every container), else in the shared directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["make_shims", "on_path", "remove_shims", "shim_script"]


def shim_script(command: str, container: str, user: str, shared_dir: str) -> str:
    """The text of one shim: ``command`` run in ``container`` as ``user``."""
    q = shlex.quote
    exec_ = f"docker exec -i -u {q(user)}"
    return (
        "#!/bin/sh\n"
        f"# soma_schedulers test shim: {command} in container {container} (as {user})\n"
        'case "$PWD" in\n'
        f'  {q(shared_dir)}|{q(shared_dir)}/*) exec {exec_} -w "$PWD" {q(container)} {q(command)} "$@" ;;\n'
        "esac\n"
        f'exec {exec_} -w {q(shared_dir)} {q(container)} {q(command)} "$@"\n'
    )


def make_shims(commands: Sequence[str], container: str, user: str, shared_dir: str) -> str:
    """Write a shim for each of ``commands`` into a new private directory (0700); return its path."""
    directory = tempfile.mkdtemp(prefix=f"soma-shims-{container}-")
    for command in commands:
        if not command or "/" in command:
            raise ValueError(f"a client command is a bare name, got {command!r}")
        path = Path(directory) / command
        path.write_text(shim_script(command, container, user, shared_dir), encoding="utf-8")
        path.chmod(0o700)
    return directory


def remove_shims(directory: str) -> None:
    """Remove a directory made by :func:`make_shims` (nothing else)."""
    if directory and Path(directory).name.startswith("soma-shims-"):
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def on_path(directory: str) -> Iterator[None]:
    """Put ``directory`` first on this process's ``PATH`` (children inherit it), then restore."""
    before = os.environ.get("PATH")
    os.environ["PATH"] = directory + (os.pathsep + before if before else "")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before
