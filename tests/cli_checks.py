"""Checks of the ``soma-schedulers`` command line's output, shared by test_cli.py and
tests/containers/test_cli_slurm.py (which imports it: tests/ is on ``sys.path`` there too, being
the directory of the conftest.py)."""

from __future__ import annotations

import re
import subprocess


def one_line_error(out: subprocess.CompletedProcess[str], *words: str) -> str:
    """The process exited 2 with exactly one line on stderr, ``soma-schedulers: ...`` (or
    ``soma-schedulers ACTION: ...`` for a usage error), which contains ``words``."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert out.stderr.count("\n") == 1 and re.match(r"soma-schedulers( [a-z-]+)?: ", out.stderr), out.stderr
    for word in words:
        assert word in out.stderr, (word, out.stderr)
    return out.stderr
