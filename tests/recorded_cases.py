"""The job cases recorded from real DRMS images (tests/fixtures/*/capture.py) and the end the
contract gives each of them, whatever the DRMS (test_pbs_unit.py, test_slurm_unit.py replay them).

The capture scripts run as scripts: they put this directory on ``sys.path`` to import it.
"""

from __future__ import annotations

from soma_schedulers import constants as C

PY = "python3"  # as the jobs see it, in the images
#: case -> the command of a job that ends that way by itself.
COMMANDS: dict[str, list[str]] = {
    "finished_ok": ["/bin/true"],
    "exit3": ["/bin/sh", "-c", "exit 3"],
    "self_sigterm": [PY, "-c", "import os; os.kill(os.getpid(), 15)"],
    "self_sigkill": [PY, "-c", "import os; os.kill(os.getpid(), 9)"],
    "launch_error": ["/nonexistent/soma-missing-program"],
}
#: case -> (status, exit_status, exit_value, term_sig) for the jobs of :data:`COMMANDS`.
ENDS: dict[str, tuple[str, str, int | None, int | None]] = {
    "finished_ok": (C.DONE, C.FINISHED_REGULARLY, 0, None),
    "exit3": (C.DONE, C.FINISHED_REGULARLY, 3, None),
    "self_sigterm": (C.DONE, C.FINISHED_TERM_SIG, None, 15),
    "self_sigkill": (C.DONE, C.FINISHED_TERM_SIG, None, 9),
    "launch_error": (C.FAILED, C.EXIT_ABORTED, 127, None),
}
