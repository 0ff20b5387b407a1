"""The out-of-container bridge without a DRMS: detection, ssh command lines, quoting, failures.

Real-sshd cases run inside the engine container (tests/containers/bridge_failures_inside.py,
``python -m soma_schedulers.testing.bridge slurm``); here ssh is either the real client against
a closed or silent local port, or a stand-in script that behaves like ssh without a server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soma_schedulers import BridgeConfig, BridgeError, CommandNotFoundError, CommandTimeoutError, DRMError
from soma_schedulers import runner as runner_mod
from soma_schedulers.config import config_from_mapping
from soma_schedulers.errors import ConfigurationError
from soma_schedulers.runner import CommandRunner, container_markers, runtime_signs
from soma_schedulers.testing.suite import ARG

ID = "8fcf439c5deac015a721fce0550b69fb4fa8140fd7ce0e8664420bdab78640ad"
V1_HOST = "".join(f"{i}:{c}:/\n" for i, c in enumerate(["cpu", "cpuacct", "memory", "pids"], 1)) + "0::/\n"
HOST_MOUNTS = (
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw\n"
    f"254 42 0:94 / /var/lib/docker/overlay2/{ID}/merged rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X\n"
)
CONTAINER_MOUNTS = (
    "290 250 0:70 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/Y\n"
    f"330 290 254:0 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw\n"
)


def fake_root(tmp_path: Path, *, dockerenv: bool = False, containerenv: bool = False, cgroup: str = V1_HOST,
              mountinfo: str = HOST_MOUNTS) -> str:
    for who in ("self", "1"):
        (tmp_path / "proc" / who).mkdir(parents=True, exist_ok=True)
        (tmp_path / "proc" / who / "cgroup").write_text(cgroup)
    (tmp_path / "proc" / "self" / "mountinfo").write_text(mountinfo)
    if dockerenv:
        (tmp_path / ".dockerenv").touch()
    if containerenv:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / ".containerenv").touch()
    return str(tmp_path)


# -- detection -------------------------------------------------------------------------------------

def test_a_host_with_dockerenv_is_not_a_container(tmp_path: Path) -> None:
    """This development machine: /.dockerenv at its root, a Docker host's mounts, no container cgroup."""
    assert container_markers(fake_root(tmp_path, dockerenv=True), environ={}) == []


@pytest.mark.parametrize(("case", "cgroup", "mountinfo", "sign"), [
    ("docker, cgroup v1 (cgroupfs)", f"4:memory:/docker/{ID}\n0::/docker/{ID}\n", HOST_MOUNTS, "cgroup /docker/"),
    ("docker, cgroup v2, systemd driver", f"0::/system.slice/docker-{ID}.scope\n", HOST_MOUNTS, "cgroup /docker-"),
    ("docker, cgroup v2, private cgroup namespace", "0::/\n", CONTAINER_MOUNTS, "/etc/hostname bind-mounted"),
    ("kubernetes", "0::/kubepods/burstable/pod1234/abcd\n", HOST_MOUNTS, "cgroup /kubepods"),
])
def test_runtime_signs(tmp_path: Path, case: str, cgroup: str, mountinfo: str, sign: str) -> None:
    root = fake_root(tmp_path, dockerenv=True, cgroup=cgroup, mountinfo=mountinfo)
    markers = container_markers(root, environ={})
    assert "/.dockerenv" in markers and any(m.startswith(sign) for m in markers), (case, markers)
    assert runtime_signs(root)


def test_other_markers(tmp_path: Path) -> None:
    assert container_markers(fake_root(tmp_path, containerenv=True), environ={}) == ["/run/.containerenv"]
    root = fake_root(tmp_path / "x")
    assert container_markers(root, environ={"CASA_HOST_DIR": "/casa", "APPTAINER_CONTAINER": "/c.sif"}) == [
        "$CASA_HOST_DIR", "$APPTAINER_CONTAINER"]


def test_this_machine_is_judged_by_proc_not_by_dockerenv() -> None:
    if not runtime_signs():
        assert "/.dockerenv" not in container_markers(environ={})


@pytest.fixture
def no_env_markers(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*runner_mod.ENV_MARKERS, runner_mod.BRIDGE_HOST_ENV):
        monkeypatch.delenv(var, raising=False)


def test_auto_mode(monkeypatch: pytest.MonkeyPatch, no_env_markers: None) -> None:
    monkeypatch.setattr(runner_mod, "container_markers", lambda: ["cgroup /docker/x"])
    assert CommandRunner(BridgeConfig(), probe_command="sh").prefix == []  # the command is here
    auto = CommandRunner(BridgeConfig(), probe_command="soma-no-such-squeue")
    assert auto.prefix[-2:] == ["--", "localhost"] and auto.describe() == "ssh bridge to localhost"
    auto.close()
    monkeypatch.setenv(runner_mod.BRIDGE_HOST_ENV, "login1")
    auto = CommandRunner(BridgeConfig(user="bob", port=2222), probe_command="soma-no-such-squeue")
    assert auto.describe() == "ssh bridge to bob@login1:2222"
    auto.close()
    monkeypatch.setattr(runner_mod, "container_markers", lambda: [])
    assert CommandRunner(BridgeConfig(), probe_command="soma-no-such-squeue").prefix == []  # not a container
    with pytest.raises(CommandNotFoundError, match="configure the out-of-container bridge"):
        CommandRunner(BridgeConfig(), probe_command="soma-no-such-squeue").run(["soma-no-such-squeue"])


# -- ssh command lines -------------------------------------------------------------------------------

def test_ssh_command_line() -> None:
    cfg = BridgeConfig(mode="ssh", host="h", user="u", port=2222, identity_file="/k",
                       ssh_options=("-o", "ControlPersist=600", "-v"))
    runner = CommandRunner(cfg, timeout=7)
    full = runner.full_argv(["squeue", "-h"])
    assert full[:4] == ["ssh", "-o", "ControlPersist=600", "-v"]  # the user's options first: they win
    for pair in (["-o", "BatchMode=yes"], ["-o", "ConnectTimeout=7"], ["-p", "2222"], ["-i", "/k"], ["-l", "u"],
                 ["-o", "IdentitiesOnly=yes"], ["-o", "ControlMaster=no"]):
        assert any(full[i:i + 2] == pair for i in range(len(full))), pair
    assert full[-3:] == ["--", "h", "squeue -h"]
    control = next(a for a in full if a.startswith("ControlPath="))[len("ControlPath="):]
    directory = os.path.dirname(control)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700 and len(control) < 100
    runner.close()
    assert not os.path.exists(directory)
    no_reuse = CommandRunner(BridgeConfig(mode="ssh", host="h", reuse=False))
    assert "ControlPath=none" in no_reuse.full_argv(["true"])


def test_ssh_shared_dir_and_prefix_shared_dir() -> None:
    ssh = CommandRunner(BridgeConfig(mode="ssh", host="h", shared_dir="/shared dir"))
    assert ssh.full_argv(["sbatch"])[-1] == "cd -- '/shared dir' && sbatch"
    ssh.close()
    prefix = CommandRunner(BridgeConfig(mode="prefix", prefix=("env",), shared_dir="/"))
    assert prefix.run(["pwd"]).stdout == "/\n"


SHELLS = [s for s in ("sh", "dash", "bash", "zsh", "ksh") if shutil.which(s)]
DUMP_ARGV = "import json, sys; sys.stdout.write(json.dumps(sys.argv[1:]))"


@pytest.mark.parametrize("shell", SHELLS)
def test_quoting_survives_every_posix_login_shell(shell: str) -> None:
    runner = CommandRunner(BridgeConfig(mode="ssh", host="h", shared_dir="/"))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(ARG, max_size=6))
    def check(args: list[str]) -> None:
        remote = runner.full_argv([sys.executable, "-c", DUMP_ARGV, *args])[-1]
        # What sshd does: the remote user's login shell runs the one command string.
        out = subprocess.run([shell, "-c", remote], capture_output=True, check=True).stdout
        assert json.loads(out) == args

    check()
    runner.close()


# -- failures with a stand-in ssh ----------------------------------------------------------------------

FAKE_SSH = r"""#!/bin/sh
# Behaves like ssh to a host that runs commands with sh, or fails as $FAKE_SSH_FAIL says.
case "$FAKE_SSH_FAIL" in
  auth) echo "u@h: Permission denied (publickey)." >&2; exit 255;;
  hostkey) echo "Host key verification failed." >&2; exit 255;;
  unreachable) echo "ssh: connect to host h port 22: Connection refused" >&2; exit 255;;
  dropped) echo "Connection to h closed by remote host." >&2; exit 255;;
esac
while [ "$1" != "--" ]; do shift; done
shift 2
exec sh -c "$1"
"""


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / "ssh").write_text(FAKE_SSH)
    (tmp_path / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    yield


def fake_runner(retries: int = 2) -> CommandRunner:
    return CommandRunner(BridgeConfig(mode="ssh", host="h", user="u", reuse=False), timeout=5, retries=retries,
                         backoff=0.01)


@pytest.mark.parametrize(("fail", "reason", "words", "calls"), [
    ("auth", "auth", "refused ssh authentication", 1),
    ("hostkey", "hostkey", "known_hosts", 1),
    ("unreachable", "unreachable", "unreachable over ssh", 3),
    ("dropped", "failed", "ssh bridge to u@h failed", 3),
])
def test_ssh_failures_say_which(fake_ssh: None, monkeypatch: pytest.MonkeyPatch, fail: str, reason: str,
                                words: str, calls: int) -> None:
    monkeypatch.setenv("FAKE_SSH_FAIL", fail)
    runner = fake_runner()
    with pytest.raises(BridgeError) as info:
        runner.run(["squeue"])
    assert info.value.reason == reason and words in str(info.value), str(info.value)
    assert runner.calls == calls  # retried only when retrying can help


def test_submission_retried_only_when_never_connected(fake_ssh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for fail, calls in (("unreachable", 3), ("dropped", 1)):
        monkeypatch.setenv("FAKE_SSH_FAIL", fail)
        runner = fake_runner()
        with pytest.raises(BridgeError):
            runner.run(["sbatch"], input=b"#!/bin/sh\n", retry=False)
        assert runner.calls == calls, fail


def test_ssh_stdin_command_missing_and_exit_255(fake_ssh: None) -> None:
    runner = fake_runner()
    data = bytes(range(256)) * 4
    assert runner.run(["od", "-An", "-v", "-tx1"], input=data).stdout.split() == [f"{b:02x}" for b in data]
    with pytest.raises(CommandNotFoundError, match=r"not found on the host \(ssh bridge to u@h\)"):
        runner.run(["soma-no-such-command"])
    # A command's own exit status 255, without ssh's words, is the command's error.
    with pytest.raises(DRMError) as info:
        runner.run(["sh", "-c", "echo own >&2; exit 255"])
    assert not isinstance(info.value, BridgeError) and "own" in str(info.value)


def test_reused_shell_protocol(fake_ssh: None) -> None:
    """The default (reuse): long-lived remote shells, one command at a time each, framed output."""
    runner = CommandRunner(BridgeConfig(mode="ssh", host="h", shared_dir="/"), timeout=5, retries=0, max_sessions=3)
    data = bytes(range(256)) * 8 + b"no newline at the end"
    assert runner.run(["od", "-An", "-v", "-tx1"], input=data).stdout.split() == [f"{b:02x}" for b in data]
    result = runner.run(["sh", "-c", "printf 'out'; printf 'err' >&2; exit 7"], check=False)
    assert (result.returncode, result.stdout, result.stderr) == (7, "out", "err")
    assert runner.run(["sh", "-c", "echo; echo"]).stdout == "\n\n"
    assert runner.run(["pwd"]).stdout == "/\n"
    assert runner.run(["cat"]).stdout == ""  # stdin is /dev/null, not the shell's own input
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        results[i] = runner.run([sys.executable, "-c", DUMP_ARGV, f"job {i}", "'$x'"]).stdout

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: json.loads(out) for i, out in results.items()} == {i: [f"job {i}", "'$x'"] for i in range(12)}
    ssh = runner._ssh
    assert ssh is not None and 1 <= ssh.pool.count() <= 3  # the pool never exceeds max_sessions
    runner.close()
    assert not ssh.pool.count()


@pytest.mark.parametrize("reuse", [True, False])
def test_login_shell_gives_the_profile_path(fake_ssh: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            reuse: bool) -> None:
    """Commands only a login's PATH has (OpenPBS's /opt/pbs/bin) are found; without login they are not."""
    tools = tmp_path / "opt-bin"
    tools.mkdir()
    (tools / "soma-profile-only").write_text("#!/bin/sh\necho found \"$@\"\n")
    (tools / "soma-profile-only").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".profile").write_text(f'PATH="{tools}:$PATH"\n')
    monkeypatch.setenv("HOME", str(home))
    login = CommandRunner(BridgeConfig(mode="ssh", host="h", reuse=reuse), timeout=5, retries=0)
    assert login.run(["soma-profile-only", "a b", "$x"]).stdout == "found a b $x\n"
    login.close()
    plain = CommandRunner(BridgeConfig(mode="ssh", host="h", reuse=reuse, login=False), timeout=5, retries=0)
    with pytest.raises(CommandNotFoundError):
        plain.run(["soma-profile-only"])
    plain.close()


def test_reused_shell_timeout_and_death(fake_ssh: None) -> None:
    runner = CommandRunner(BridgeConfig(mode="ssh", host="h"), timeout=5, retries=0)
    t0 = time.monotonic()
    with pytest.raises(CommandTimeoutError, match=r"ssh bridge to h"):
        runner.run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - t0 < 2.5
    assert runner.run(["echo", "next"]).stdout == "next\n"  # a new shell took over
    with pytest.raises(BridgeError, match="the remote shell ended") as info:
        runner.run(["sh", "-c", "kill -9 $PPID"])  # the shell dies during the command
    assert info.value.reason == "failed" and info.value.transient
    assert runner.run(["echo", "again"]).stdout == "again\n"
    runner.close()


def test_ssh_not_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    runner = CommandRunner(BridgeConfig(mode="ssh", host="h"), timeout=2)
    with pytest.raises(CommandNotFoundError, match=r"ssh \(the out-of-container bridge.* is not installed"):
        runner.run(["squeue"])
    runner.close()


# -- failures with the real ssh client, no server ----------------------------------------------------

needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client here")


@needs_ssh
def test_real_ssh_host_unreachable() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = CommandRunner(BridgeConfig(mode="ssh", host="127.0.0.1", port=port), timeout=5, retries=0)
    t0 = time.monotonic()
    with pytest.raises(BridgeError) as info:
        runner.run(["squeue"])
    assert info.value.reason == "unreachable" and f"127.0.0.1:{port}" in str(info.value)
    assert time.monotonic() - t0 < 5
    runner.close()


@needs_ssh
def test_real_ssh_silent_host_times_out() -> None:
    """The host accepts the connection and never answers: the call ends at its timeout, nothing hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        held: list[socket.socket] = []
        threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
        runner = CommandRunner(BridgeConfig(mode="ssh", host="127.0.0.1", port=server.getsockname()[1]),
                               timeout=1.5, retries=1, backoff=0.1)
        t0 = time.monotonic()
        with pytest.raises(DRMError) as info:
            runner.run(["squeue"])
        seconds = time.monotonic() - t0
        runner.close()
        for conn in held:
            conn.close()
    assert isinstance(info.value, (CommandTimeoutError, BridgeError)) and "127.0.0.1" in str(info.value)
    assert seconds < 2 * 1.5 + 0.1 + 2


def test_slow_prefix_times_out_and_its_children_die(tmp_path: Path) -> None:
    marker = tmp_path / "still-alive"
    slow = ("sh", "-c", f'(sleep 3; touch {marker}) & sleep 30; exec "$@"', "sh")
    runner = CommandRunner(BridgeConfig(mode="prefix", prefix=slow), timeout=0.5, retries=0)
    t0 = time.monotonic()
    with pytest.raises(CommandTimeoutError, match=r"no answer within 0.5 s \(bridge: sh -c"):
        runner.run(["squeue"])
    assert time.monotonic() - t0 < 2.5
    time.sleep(3.2)
    assert not marker.exists()  # the whole process group was killed


def test_prefix_host_gone() -> None:
    gone = ("sh", "-c", "echo 'Error response from daemon: No such container: x' >&2; exit 1", "sh")
    with pytest.raises(BridgeError, match="cannot reach the host") as info:
        CommandRunner(BridgeConfig(mode="prefix", prefix=gone), retries=0).run(["squeue"])
    assert info.value.reason == "unreachable"


# -- prefix with kept shells (BRIDGE_SHELLS) ------------------------------------------------------------

def _shell_pids(runner: CommandRunner) -> set[int]:
    pool = runner._shells
    assert pool is not None
    return {s.proc.pid for s in pool._shells}


def test_prefix_shells_keep_argv_stdin_and_exit_codes(tmp_path: Path) -> None:
    # "env" keeps its stdin open, as "docker exec -i NAME" does: the shells are started through it.
    runner = CommandRunner(BridgeConfig(mode="prefix", prefix=("env",), shells=True, shared_dir=str(tmp_path)),
                           retries=0)
    argv = ["a b", "$HOME", "`id`", "'", '"', "\\", "\n", "", "é中😀", "-n"]
    out = runner.run([sys.executable, "-c", "import json, os, sys; print(json.dumps([sys.argv[1:], os.getcwd()]))",
                      *argv])
    assert json.loads(out.stdout) == [argv, str(tmp_path)]
    data = bytes(range(256)) * 3
    hexed = runner.run([sys.executable, "-c", "import sys; print(sys.stdin.buffer.read().hex())"], input=data)
    assert hexed.stdout.strip() == data.hex()  # every byte of stdin arrives
    failed = runner.run(["sh", "-c", "echo oops >&2; exit 3"], check=False)
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, "", "oops\n")
    with pytest.raises(CommandNotFoundError, match="no-such-command-42 not found"):
        runner.run(["no-such-command-42"])
    pids = _shell_pids(runner)
    assert len(pids) == 1  # one kept shell served every command, one at a time
    runner.close()
    assert runner._shells is None


def test_prefix_shells_used_from_threads_and_after_a_shell_dies() -> None:
    runner = CommandRunner(BridgeConfig(mode="prefix", prefix=("env",), shells=True), retries=0, max_sessions=3)
    results: dict[int, str] = {}

    def work(i: int) -> None:
        results[i] = runner.run(["sh", "-c", f"sleep 0.2; echo {i}"]).stdout

    threads = [threading.Thread(target=work, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"{i}\n" for i in range(9)}
    assert 1 <= len(_shell_pids(runner)) <= 3
    for pid in _shell_pids(runner):
        os.kill(pid, 9)
    time.sleep(0.1)
    assert runner.run(["echo", "again"]).stdout == "again\n"  # a dead shell is replaced
    runner.close()


def test_prefix_shells_container_gone() -> None:
    gone = ("sh", "-c", "echo 'Error response from daemon: No such container: x' >&2; exit 1", "sh")
    with pytest.raises(BridgeError, match="its shell ended: Error response from daemon") as info:
        CommandRunner(BridgeConfig(mode="prefix", prefix=gone, shells=True), retries=0).run(["squeue"])
    assert info.value.reason == "unreachable"


# -- configuration ----------------------------------------------------------------------------------------

def test_bridge_keys() -> None:
    cfg = config_from_mapping({
        "OUT_OF_CONTAINER": "ssh", "BRIDGE_SSH_HOST": "login1", "BRIDGE_SSH_USER": "bob", "BRIDGE_SSH_PORT": "2222",
        "BRIDGE_SSH_IDENTITY": "/k", "BRIDGE_SSH_OPTIONS": "-o 'ProxyJump=gw 1'", "BRIDGE_SSH_REUSE": "no",
        "BRIDGE_SHARED_DIR": "/shared", "BRIDGE_SSH_LOGIN": "no",
    }).bridge
    assert cfg.login is False and cfg.shells is False
    assert config_from_mapping({"BRIDGE_COMMAND": "docker exec -i x", "BRIDGE_SHELLS": "yes"}).bridge.shells is True
    assert (cfg.mode, cfg.host, cfg.user, cfg.port, cfg.identity_file, cfg.reuse, cfg.shared_dir) == (
        "ssh", "login1", "bob", 2222, "/k", False, "/shared")
    assert cfg.ssh_options == ("-o", "ProxyJump=gw 1")
    assert config_from_mapping({"BRIDGE_COMMAND": "docker exec -i 'my host'"}).bridge.prefix == (
        "docker", "exec", "-i", "my host")
    for bad in ({"BRIDGE_SSH_REUSE": "maybe"}, {"BRIDGE_SHARED_DIR": "rel/dir"}, {"OUT_OF_CONTAINER": "nfs"}):
        with pytest.raises(ConfigurationError):
            config_from_mapping(bad)
