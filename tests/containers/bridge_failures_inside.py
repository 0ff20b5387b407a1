"""Failure behaviour of the ssh bridge against a real sshd, run INSIDE the engine container.

``python -m soma_schedulers.testing.bridge slurm|htcondor|openpbs|torque --mode failures`` runs this
file in the lab's explicit engine (see ``soma_schedulers/testing/bridge.py``),
which sets ``SOMA_BRIDGE_HOST`` and friends; anywhere else it is skipped (and
pytest does not collect it by name). Every case: a clear ``DRMError`` saying
which failure, within the timeout; nothing hangs.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from soma_schedulers import (
    BridgeConfig,
    BridgeError,
    CommandNotFoundError,
    CommandTimeoutError,
    DRMError,
    Job,
    SchedulerConfig,
)
from soma_schedulers import constants as C
from soma_schedulers.runner import CommandRunner
from soma_schedulers.scheduler import get_scheduler_implementation

HOST = os.environ.get("SOMA_BRIDGE_HOST", "")
USER = os.environ.get("SOMA_BRIDGE_USER", "")
IDENTITY = os.environ.get("SOMA_BRIDGE_IDENTITY", "")
KNOWN = os.environ.get("SOMA_BRIDGE_KNOWN_HOSTS", "")
SCHEDULER = os.environ.get("SOMA_BRIDGE_SCHEDULER", "slurm")  # the host's: slurm, htcondor, pbspro, torque
#: A status command of the host, its submission command and a job id of its form.
STATUS = {"slurm": ["squeue", "-h"], "htcondor": ["condor_q"]}.get(SCHEDULER, ["qstat"])
SUBMIT = {"slurm": "sbatch", "htcondor": "condor_submit"}.get(SCHEDULER, "qsub")
JOB_ID = "12345.0" if SCHEDULER == "htcondor" else "12345"
SLACK = 3.0  # seconds allowed beyond a timeout on a loaded 2-core machine

pytestmark = pytest.mark.skipif(
    not HOST, reason="runs inside the bridge lab's engine: python -m soma_schedulers.testing.bridge slurm --mode failures")


def bridge(**kw: Any) -> BridgeConfig:
    cfg: dict[str, Any] = {
        "mode": "ssh", "host": HOST, "user": USER, "identity_file": IDENTITY,
        "ssh_options": ("-o", f"UserKnownHostsFile={KNOWN}", "-o", "StrictHostKeyChecking=yes"),
    }
    cfg.update(kw)
    return BridgeConfig(**cfg)


@pytest.fixture
def make_runner() -> Iterator[Callable[..., CommandRunner]]:
    made: list[CommandRunner] = []

    def make(timeout: float = 5.0, retries: int = 0, **kw: Any) -> CommandRunner:
        runner = CommandRunner(bridge(**kw), timeout=timeout, retries=retries, backoff=0.1)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.close()


def failing(call: Callable[[], object], kind: type[DRMError]) -> tuple[DRMError, float]:
    t0 = time.monotonic()
    with pytest.raises(kind) as info:
        call()
    return info.value, time.monotonic() - t0


def test_the_bridge_works_and_reuses_its_connection(make_runner: Callable[..., CommandRunner]) -> None:
    runner = make_runner()
    first = runner.run(STATUS)
    seconds = sorted(runner.run(STATUS).seconds for _ in range(5))
    assert first.returncode == 0
    assert seconds[2] < 0.5, seconds  # a multiplexed session, not a handshake
    assert runner.describe() == f"ssh bridge to {USER}@{HOST}"


def test_stdin_crosses_ssh_byte_for_byte(make_runner: Callable[..., CommandRunner]) -> None:
    data = bytes(range(256)) * 64 + b"\n#!/bin/sh\n'\"$`\\\r\n"
    out = make_runner().run(["sha256sum"], input=data).stdout.split()[0]
    assert out == hashlib.sha256(data).hexdigest()


def test_host_unreachable(make_runner: Callable[..., CommandRunner]) -> None:
    exc, seconds = failing(lambda: make_runner(port=2222).run(STATUS), BridgeError)
    assert isinstance(exc, BridgeError) and exc.reason == "unreachable", exc
    assert f"{HOST}:2222" in str(exc) and "unreachable" in str(exc)
    assert seconds < 5.0 + SLACK


def test_host_name_unknown(make_runner: Callable[..., CommandRunner]) -> None:
    exc, seconds = failing(lambda: make_runner(host="no-such-host.invalid").run(STATUS), BridgeError)
    assert isinstance(exc, BridgeError) and exc.reason == "unreachable", exc
    assert "no-such-host.invalid" in str(exc) and seconds < 5.0 + SLACK


def test_unreachable_is_retried_then_reported(make_runner: Callable[..., CommandRunner]) -> None:
    runner = make_runner(port=2222, retries=2)
    exc, seconds = failing(lambda: runner.run([SUBMIT], input=b"#!/bin/sh\n", retry=False), BridgeError)
    # never connected, so even a submission may be retried: 3 attempts, 0.1 + 0.2 s of backoff
    assert isinstance(exc, BridgeError) and exc.reason == "unreachable" and 0.3 <= seconds < 3 * 5.0 + SLACK


@pytest.mark.parametrize("how", ["unauthorized key", "unknown user"])
def test_authentication_refused(make_runner: Callable[..., CommandRunner], how: str) -> None:
    kw = ({"identity_file": os.path.expanduser("~/.ssh/stranger_key")} if how == "unauthorized key"
          else {"user": "nobody-soma"})
    runner = make_runner(retries=2, **kw)
    exc, seconds = failing(lambda: runner.run(STATUS), BridgeError)
    assert isinstance(exc, BridgeError) and exc.reason == "auth" and not exc.transient, exc
    assert "refused ssh authentication" in str(exc) and "Permission denied" in str(exc)
    assert seconds < 5.0 + SLACK  # not retried: retrying cannot help
    assert runner.calls == 1  # one attempt, not retried


def test_host_key_unknown(make_runner: Callable[..., CommandRunner]) -> None:
    options = ("-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes")
    exc, seconds = failing(lambda: make_runner(ssh_options=options).run(STATUS), BridgeError)
    assert isinstance(exc, BridgeError) and exc.reason == "hostkey", exc
    assert "known_hosts" in str(exc) and seconds < 5.0 + SLACK


def test_command_missing_on_the_host(make_runner: Callable[..., CommandRunner]) -> None:
    exc, seconds = failing(lambda: make_runner().run(["soma-no-such-drms-command", "-x"]), CommandNotFoundError)
    assert "soma-no-such-drms-command" in str(exc) and "on the host" in str(exc) and f"{USER}@{HOST}" in str(exc)
    assert seconds < 5.0 + SLACK


def test_slow_host_command(make_runner: Callable[..., CommandRunner]) -> None:
    runner = make_runner(timeout=1.5, retries=1)
    exc, seconds = failing(lambda: runner.run(["sleep", "30"]), CommandTimeoutError)
    assert "no answer within 1.5 s" in str(exc) and f"ssh bridge to {USER}@{HOST}" in str(exc)
    assert 3.0 <= seconds < 2 * 1.5 + 0.1 + SLACK  # one retry, bounded
    assert runner.run(["true"]).returncode == 0  # the shared connection survived


def test_silent_host(make_runner: Callable[..., CommandRunner]) -> None:
    """A port that accepts and never speaks: the handshake waits, the timeout ends it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        runner = make_runner(host="127.0.0.1", port=server.getsockname()[1], timeout=2.0)
        exc, seconds = failing(lambda: runner.run(STATUS), DRMError)
        assert isinstance(exc, (CommandTimeoutError, BridgeError)), exc
        assert "127.0.0.1" in str(exc) and seconds < 2.0 + SLACK
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_slow_prefix_is_killed_with_its_children() -> None:
    runner = CommandRunner(BridgeConfig(mode="prefix", prefix=("sh", "-c", 'sleep 31.25; exec "$@"', "sh")),
                           timeout=1.0, retries=0)
    exc, seconds = failing(lambda: runner.run(STATUS), CommandTimeoutError)
    assert "no answer within 1 s (bridge: sh -c" in str(exc) and seconds < 1.0 + SLACK
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-f", "sleep 31.25"], capture_output=True, text=True).stdout
    assert not left.strip(), f"the bridge's children survived: {left}"


def test_scheduler_says_which(make_runner: Callable[..., CommandRunner]) -> None:
    cfg = SchedulerConfig(bridge=bridge(port=2222), command_timeout=3, command_retries=0,
                          status_cache_seconds=0, undetermined_timeout=60)
    with get_scheduler_implementation(SCHEDULER)(cfg) as sched:
        t0 = time.monotonic()
        assert sched.job_submission([Job(command=["/bin/true"])]) == [None]
        assert "unreachable" in (sched.last_submission_errors[0] or "")
        sched.track_job(JOB_ID)
        assert sched.get_job_status(JOB_ID) == C.UNDETERMINED
        assert time.monotonic() - t0 < 2 * 3 + SLACK
