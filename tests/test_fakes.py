"""The scripted command runner (soma_schedulers.testing.fakes): answers, errors, recording.

Where the real runner can be asked the same thing without a DRMS (a missing command, a
timeout, an exit status), the fake's error is compared with the real one."""

from __future__ import annotations

import textwrap
import threading

import pytest

from soma_schedulers.config import BridgeConfig, SchedulerConfig
from soma_schedulers.errors import (
    BridgeError,
    CommandError,
    CommandNotFoundError,
    CommandTimeoutError,
    DRMError,
)
from soma_schedulers.runner import CommandResult, CommandRunner
from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler
from soma_schedulers.testing import fakes
from soma_schedulers.testing.fakes import (
    Call,
    ScriptedFailure,
    ScriptedRunner,
    UnscriptedCommandError,
    not_found,
    times_out,
)
from soma_schedulers.testing.faults import record_commands


def same_error(fake: CommandError, real: CommandError) -> None:
    assert type(fake) is type(real)
    assert (fake.argv, fake.returncode, fake.stdout, str(fake)) == (real.argv, real.returncode, real.stdout, str(real))


def error_of(runner: CommandRunner, argv: list[str], **kw: object) -> CommandError:
    with pytest.raises(CommandError) as info:
        runner.run(argv, **kw)  # type: ignore[arg-type]
    return info.value


# -- answers ----------------------------------------------------------------------------------------

def test_a_string_is_stdout_with_the_final_newline_of_real_output() -> None:
    fake = ScriptedRunner({"squeue": "1|RUNNING", "sacct": "", "sinfo": "a\n"})
    result = fake.run(["squeue", "-h"])
    assert isinstance(result, CommandResult)
    assert result == CommandResult(("squeue", "-h"), 0, "1|RUNNING\n", "", 0.0)
    assert fake.run(["sacct"]).stdout == "" and fake.run(["sinfo"]).stdout == "a\n"
    fake.ensure_newline = False  # output exactly as scripted: cut short
    assert fake.run(["squeue"]).stdout == "1|RUNNING"
    assert ScriptedRunner({"qsub": "4"}, ensure_newline=False).run(["qsub"]).stdout == "4"


def test_check_gives_the_real_command_error() -> None:
    fake = ScriptedRunner({"sh": (3, "out", "err")}, ensure_newline=False)
    real = CommandRunner(BridgeConfig(mode="none"), timeout=5, retries=0)
    argv = ["sh", "-c", "printf out; printf err >&2; exit 3"]
    same_error(error_of(fake, argv), error_of(real, argv))
    err = error_of(fake, argv)
    assert (err.argv, err.returncode, err.stderr, err.stdout) == (argv, 3, "err", "out")
    assert fake.run(argv, check=False) == CommandResult(tuple(argv), 3, "out", "err", 0.0)
    # with the newline real commands print
    assert error_of(ScriptedRunner({"sh": (3, "out", "err")}), argv).stderr == "err\n"


def test_status_127_is_command_not_found_as_from_the_real_runner() -> None:
    argv = ["no-such-command-soma", "-x"]
    real = CommandRunner(BridgeConfig(mode="prefix", prefix=("env",)), timeout=5, retries=0)
    real_error = error_of(real, argv)
    assert isinstance(real_error, CommandNotFoundError) and real_error.returncode == 127
    said = real.run(argv, check=False)  # what env printed
    fake = ScriptedRunner({argv[0]: (said.returncode, said.stdout, said.stderr)}, prefix=("env",))
    assert fake.run(argv, check=False) == CommandResult(tuple(argv), 127, said.stdout, said.stderr, 0.0)
    same_error(error_of(fake, argv), real_error)


def test_not_found_is_the_real_runners_error() -> None:
    argv = ["no-such-command-soma"]
    real = error_of(CommandRunner(BridgeConfig(mode="none"), retries=0), argv)
    fake = ScriptedRunner({argv[0]: not_found()})
    same_error(error_of(fake, argv), real)
    same_error(error_of(fake, argv, check=False), real)  # the command never started: check does not matter
    assert real.returncode is None
    bridged = ScriptedRunner({argv[0]: not_found()}, prefix=("docker", "exec", "-i", "c"))
    err = error_of(bridged, argv)
    assert isinstance(err, CommandNotFoundError) and err.returncode == 127
    assert "not found on the host (bridge: docker exec -i c)" in str(err)
    assert bridged.run(argv, check=False).returncode == 127  # the bridge answered: check decides


def test_times_out_is_the_real_runners_error() -> None:
    argv = ["sleep", "5"]
    for prefix in ((), ("env",)):
        real_runner = CommandRunner(BridgeConfig(mode="prefix", prefix=prefix) if prefix else BridgeConfig(mode="none"),
                                    timeout=0.2, retries=0)
        real = error_of(real_runner, argv)
        fake = ScriptedRunner({"sleep": times_out()}, timeout=0.2, prefix=prefix)
        same_error(error_of(fake, argv), real)
        same_error(error_of(ScriptedRunner({"sleep": times_out()}, prefix=prefix), argv, timeout=0.2), real)
    err = error_of(ScriptedRunner({"sleep": times_out(7)}), argv)
    assert isinstance(err, CommandTimeoutError) and err.timeout == 7
    with pytest.raises(ValueError, match="unknown scripted failure"):
        ScriptedFailure("lost")  # type: ignore[arg-type]


def test_an_exception_is_raised_as_it_is_whatever_check_says() -> None:
    down = BridgeError(["squeue"], 255, "unreachable", reason="unreachable")
    fake = ScriptedRunner({"squeue": down})
    for check in (True, False):
        with pytest.raises(BridgeError) as info:
            fake.run(["squeue"], check=check)
        assert info.value is down


def test_a_callable_answers_from_the_call() -> None:
    def sbatch(call: Call) -> tuple[int, str, str]:
        assert call.input is not None
        return (0, f"{len(call.input)} bytes for {call.argv[1]}", "")

    fake = ScriptedRunner({"sbatch": sbatch, "scancel": lambda call: CommandError(call.argv, 1, "no")})
    assert fake.run(["sbatch", "--parsable"], input=b"#!/bin/sh\n").stdout == "10 bytes for --parsable\n"
    with pytest.raises(CommandError, match="no"):
        fake.run(["scancel", "3"])


def test_a_list_answers_successive_calls_then_fails() -> None:
    fake = ScriptedRunner({"qstat": ["Q", (1, "", "down"), "R"]})
    assert fake.run(["qstat"]).stdout == "Q\n"
    with pytest.raises(CommandError):
        fake.run(["qstat"])
    assert fake.run(["qstat"]).stdout == "R\n"
    with pytest.raises(UnscriptedCommandError, match="qstat was called more often than scripted: its 3"):
        fake.run(["qstat"])
    fake.script("qstat", "F")  # a plain answer replaces the list
    assert [fake.run(["qstat"]).stdout for _ in range(3)] == ["F\n"] * 3


def test_when_selects_calls_before_the_plain_answer() -> None:
    fake = ScriptedRunner({"squeue": "plain"})
    fake.script("squeue", "exit codes", when="-O")
    fake.script("squeue", "mine", when=lambda call: "--me" in call.argv)
    assert fake.run(["squeue", "-h", "-O", "JobID"]).stdout == "exit codes\n"
    assert fake.run(["squeue", "--me", "-O", "x"]).stdout == "exit codes\n"  # first added first
    assert fake.run(["squeue", "--me"]).stdout == "mine\n"
    assert fake.run(["squeue", "-h"]).stdout == "plain\n"
    assert fake.run(["squeue", "-o", "-O"]).stdout == "exit codes\n"
    fake.script("squeue", "new exit codes", when="-O")  # the same `when` again: replaced
    assert fake.run(["squeue", "-O"]).stdout == "new exit codes\n"
    only_o = ScriptedRunner()
    only_o.script("squeue", "x", when="-O")
    with pytest.raises(UnscriptedCommandError, match="no scripted answer matches: squeue -h"):
        only_o.run(["squeue", "-h"])


def test_an_unscripted_command_fails_the_test_not_the_backend() -> None:
    fake = ScriptedRunner({"sbatch": "1\n", "squeue": ""})
    with pytest.raises(UnscriptedCommandError) as info:
        fake.run(["scancel", "42"], check=False)
    assert isinstance(info.value, AssertionError) and not isinstance(info.value, DRMError)
    assert str(info.value) == "unscripted command: scancel 42 (scripted: sbatch, squeue)"
    assert info.value.argv == ["scancel", "42"]
    assert fake.argvs() == [["scancel", "42"]]  # recorded all the same
    with pytest.raises(TypeError, match="scripted answer for squeue"):
        ScriptedRunner({"squeue": (0, "too short")}).run(["squeue"])  # type: ignore[dict-item]


# -- recording ---------------------------------------------------------------------------------------

def test_every_call_is_recorded() -> None:
    fake = ScriptedRunner({"sbatch": "7\n", "squeue": "", "sacct": (1, "", "no accounting")}, timeout=9)
    fake.run(["sbatch", "--parsable"], input=b"#!/bin/sh\ntrue\n", retry=False)
    fake.run(["squeue", "-j", "7"], timeout=2)
    fake.run(["sacct", "-j", "7"], check=False)
    fake.run(["squeue", "-j", "8"])
    assert fake.history == [
        Call(("sbatch", "--parsable"), b"#!/bin/sh\ntrue\n", 9, True, False),
        Call(("squeue", "-j", "7"), None, 2, True, True),
        Call(("sacct", "-j", "7"), None, 9, False, True),
        Call(("squeue", "-j", "8"), None, 9, True, True),
    ]
    assert [c.argv for c in fake.calls_of("squeue")] == [("squeue", "-j", "7"), ("squeue", "-j", "8")]
    assert fake.calls_of("qstat") == [] and fake.history[0].command == "sbatch"
    assert fake.argvs("sacct") == [["sacct", "-j", "7"]] and len(fake.argvs()) == 4
    assert fake.calls == 4  # counted as the real runner counts
    with pytest.raises(CommandError, match="empty command"):
        fake.run([])
    assert fake.calls == 4


def test_the_real_retry_policy_applies() -> None:
    fake = ScriptedRunner({"squeue": [times_out(), "1|RUNNING"], "sbatch": [times_out(), "7"]}, retries=2)
    assert fake.run(["squeue"]).stdout == "1|RUNNING\n"
    assert fake.argvs() == [["squeue"], ["squeue"]]  # one call per attempt
    with pytest.raises(CommandTimeoutError):
        fake.run(["sbatch"], retry=False)  # a submission is never retried
    assert [c.retry for c in fake.history] == [True, True, False] and fake.calls == 3


def test_it_is_a_command_runner_for_any_backend() -> None:
    s = SlurmScheduler(SchedulerConfig())
    fake = ScriptedRunner({"scancel": ""})
    s.runner = fake  # a CommandRunner: no type: ignore
    assert fake.prefix == [] and fake.describe() == "here" and fake.full_argv(["squeue"]) == ["squeue"]
    assert fake.backoff == 0.0 and fake.retries == 0 and fake.timeout == 60.0
    bridged = ScriptedRunner(prefix=("docker", "exec", "-i", "c"))
    assert bridged.prefix == ["docker", "exec", "-i", "c"] and bridged.describe() == "bridge: docker exec -i c"
    assert bridged.full_argv(["qstat", "-f"]) == ["docker", "exec", "-i", "c", "qstat", "-f"]
    s.clean()
    assert fake.closed
    log = record_commands(fake)  # the testing helpers that wrap a runner work on it too
    fake.run(["scancel", "3"])
    assert log.entries[-1][1] == ("scancel", "3")


def test_threads_share_the_answers() -> None:
    fake = ScriptedRunner({"squeue": [str(i) for i in range(200)]}, ensure_newline=False)
    got: list[str] = []

    def poll() -> None:
        for _ in range(50):
            got.append(fake.run(["squeue"]).stdout)

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got, key=int) == [str(i) for i in range(200)] and fake.calls == 200


def test_the_module_example_runs() -> None:
    code = textwrap.dedent((fakes.__doc__ or "").split("::\n", 1)[1].split("\nAn answer", 1)[0])
    assert "scheduler.runner = fake" in code
    exec(compile(code, "soma_schedulers.testing.fakes example", "exec"), {})
