"""Job scripts for batch systems: every argument, path and env value quoted for ``/bin/sh``.

The script redirects stdin/stdout/stderr and changes directory itself, then
checks the executable exists, so launch errors (missing executable, bad
working directory, unreadable stdin, unwritable output) are told apart from
the program's own exit code: the script runs the backend's ``report``
shell command with the reason and exits 127. Job data never passes through
any other parser (no ``#PBS -o`` path parsing, no ``%j`` expansion).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from .errors import JobSpecError
from .job import Job

__all__ = ["LAUNCH_ERROR_EXIT", "build_script", "sh_quote"]

#: Exit code of a job script whose command could not be started.
LAUNCH_ERROR_EXIT = 127

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sh_quote(text: str) -> str:
    """Quote ``text`` as one ``/bin/sh`` word that contains no carriage return.

    A script must hold no CR (sbatch refuses "DOS line breaks"), so each CR is
    spliced in from ``$soma_cr``, which every script defines first.
    """
    if "\r" not in text:
        return shlex.quote(text)
    return '"$soma_cr"'.join(shlex.quote(part) if part else "" for part in text.split("\r"))


def build_script(
    job: Job,
    directives: Sequence[str] = (),
    *,
    report: str = ":",
    prelude: Sequence[str] = (),
) -> str:
    """Return the ``/bin/sh`` script that runs ``job``.

    ``directives`` are the DRMS's ``#SBATCH``/``#PBS`` lines, written first.
    ``report`` is a shell command run (with ``$soma_reason`` set) when the
    command cannot be launched.
    """
    q = sh_quote
    lines = ["#!/bin/sh", *directives]
    for d in directives:
        if "\n" in d or "\r" in d:
            raise JobSpecError(f"a native specification item contains a newline: {d!r}")
    lines.append("soma_cr=$(printf '\\r')")
    lines.append("soma_fail() { soma_reason=$1; printf 'soma_schedulers: %s\\n' \"$1\" >&2; "
                 f"{report}; exit {LAUNCH_ERROR_EXIT}; }}")
    lines.extend(prelude)
    for key, value in (job.env or {}).items():
        if not _ENV_NAME.match(key):
            raise JobSpecError(f"environment variable name {key!r} is not valid in a job script")
        lines.append(f"export {key}={q(value)}")

    def redirect(op: str, path: str | None, what: str) -> None:
        # Probe in a subshell first: a failed redirection on `exec` would end the script.
        if path:
            lines.append(f"( : {op[-1]}{q(path)} ) 2>/dev/null || soma_fail {q(f'cannot {what} {path}')}")
            lines.append(f"exec {op}{q(path)}")
        else:
            lines.append(f"exec {op}/dev/null")

    redirect(">", job.stdout_file, "write stdout file")
    if job.join_stderrout:
        lines.append("exec 2>&1")
    else:
        redirect("2>", job.stderr_file, "write stderr file")
    if job.working_directory:
        wd = job.working_directory
        lines.append(f"cd -- {q(wd)} 2>/dev/null || soma_fail {q('cannot change to working directory ' + wd)}")
    redirect("<", job.stdin, "read stdin file")
    exe = job.command[0]
    lines.append(
        f"command -v -- {q(exe)} >/dev/null 2>&1 || soma_fail {q('command not found: ' + exe)}"
    )
    lines.append("exec " + " ".join(q(arg) for arg in job.command))
    return "\n".join(lines) + "\n"
