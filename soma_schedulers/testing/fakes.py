"""A scripted command runner: unit-test a command-line backend without a cluster.

:class:`ScriptedRunner` is a :class:`~soma_schedulers.runner.CommandRunner`
whose commands never run: each one gets the answer a test scripted for it,
and every call is recorded. It takes the place of a backend's runner
(``scheduler.runner = fake``: being a ``CommandRunner``, no ``type: ignore``
is needed), and gives what the real runner gives: a
:class:`~soma_schedulers.runner.CommandResult`, the real
:class:`~soma_schedulers.errors.CommandError` (same ``argv``, ``returncode``,
``stderr``, ``stdout``) for a non-zero exit under ``check=True``, the real
retry policy (``retries``, ``backoff``), ``prefix``, ``describe()``,
``full_argv()`` and ``close()``::

    from soma_schedulers import Job, SchedulerConfig
    from soma_schedulers import constants as C
    from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler
    from soma_schedulers.testing.fakes import ScriptedRunner

    fake = ScriptedRunner({
        "sbatch": "42",                                  # stdout, exit status 0
        "squeue": ["42|2026-01-01T00:00:00|PENDING|Priority|N/A|",           # one answer per poll, in order
                   "42|2026-01-01T00:00:00|RUNNING|None|2026-01-01T00:00:00|"],
        "scancel": (1, "", "scancel: error: Invalid job id specified"),  # status, stdout, stderr
    })
    scheduler = SlurmScheduler(SchedulerConfig(status_cache_seconds=0))
    scheduler.runner = fake
    [job_id] = scheduler.job_submission([Job(command=["true"])])
    assert scheduler.get_job_status(job_id) == C.QUEUED_ACTIVE
    assert scheduler.get_job_status(job_id) == C.RUNNING
    [sbatch] = fake.calls_of("sbatch")
    assert sbatch.retry is False and b"true" in (sbatch.input or b"")  # never retried; script on stdin
    assert [call.command for call in fake.history] == ["sbatch", "squeue", "squeue"]

An answer (:data:`Answer`) is one of:

* a ``str``: the standard output, exit status 0;
* a ``(returncode, stdout, stderr)`` tuple; under ``check=True`` a non-zero
  status raises what the real runner raises:
  :class:`~soma_schedulers.errors.CommandError`, or
  :class:`~soma_schedulers.errors.CommandNotFoundError` for status 127 or a
  missing executable;
* an exception instance: raised as it is, whatever ``check`` says (script
  a :class:`~soma_schedulers.errors.BridgeError` this way);
* :func:`not_found` or :func:`times_out`: the error the real runner makes
  when the command is not installed or does not answer in time;
* a callable taking the :class:`Call` (its ``argv``, ``input`` ...) and
  returning one of the above;
* a ``list`` of the above: one item per call, in order (successive polls);
  a call after the last item is an error.

Answers are found by command name (``argv[0]``). :meth:`ScriptedRunner.script`
adds finer rules with ``when``: an argument that must be present (``"-O"``)
or a predicate on the :class:`Call`; those rules are tried in the order they
were added, before the command's plain answer. A command without a matching
answer raises :class:`UnscriptedCommandError`, an :class:`AssertionError`
(not a :class:`~soma_schedulers.errors.DRMError`: a backend does not take it
for a DRMS failure, the test fails).

Real command output ends with a newline, and backends rely on it to tell a
complete last line from one cut short: with ``ensure_newline`` (the default)
a non-empty scripted stdout or stderr gets one when it has none. Set it to
False to script output exactly as given (a recorded answer, or one cut short).

Each attempt is recorded as a :class:`Call` in ``history`` (see also
:meth:`ScriptedRunner.calls_of` and :meth:`ScriptedRunner.argvs`); ``calls``
counts them, as the real runner's does. An attempt the runner retries (a
timeout with ``retries`` > 0 and ``retry=True``) takes the next answer;
``retries`` is 0 and ``backoff`` 0.0 unless given, so by default each
``run()`` is one attempt.
"""

from __future__ import annotations

import shlex
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ..config import BridgeConfig
from ..errors import CommandError, CommandTimeoutError
from ..runner import CommandResult, CommandRunner

__all__ = [
    "Answer",
    "Call",
    "Reply",
    "ScriptedFailure",
    "ScriptedRunner",
    "UnscriptedCommandError",
    "not_found",
    "times_out",
]


@dataclass(frozen=True)
class Call:
    """One command the runner was asked to run (one attempt), as the backend gave it.

    ``timeout`` is the one in force (the call's, else the runner's); ``retry``
    and ``check`` are the arguments of :meth:`ScriptedRunner.run`.
    """

    argv: tuple[str, ...]
    input: bytes | None = None
    timeout: float = 60.0
    check: bool = True
    retry: bool = True

    @property
    def command(self) -> str:
        """The command name, ``argv[0]``."""
        return self.argv[0]


@dataclass(frozen=True)
class ScriptedFailure:
    """A failure the runner turns into the real runner's error for the call (see
    :func:`not_found`, :func:`times_out`): ``kind`` is ``"not_found"`` or ``"timeout"``."""

    kind: Literal["not_found", "timeout"]
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("not_found", "timeout"):
            raise ValueError(f"unknown scripted failure {self.kind!r} (not_found, timeout)")


def not_found() -> ScriptedFailure:
    """The command is not installed: :class:`~soma_schedulers.errors.CommandNotFoundError`.

    Without a bridge prefix, raised whatever ``check`` says, with ``returncode``
    None (the executable could not start). With one, the bridge answers status
    127 and ``<name>: command not found``, so ``check=True`` raises the error
    and ``check=False`` returns that result, as with the real runner.
    """
    return ScriptedFailure("not_found")


def times_out(seconds: float | None = None) -> ScriptedFailure:
    """The command does not answer in time: :class:`~soma_schedulers.errors.CommandTimeoutError`
    for ``seconds`` (default: the call's timeout), retried as the real runner retries it."""
    return ScriptedFailure("timeout", seconds)


#: What a call gets: stdout, ``(returncode, stdout, stderr)``, an exception to raise, or a failure.
Reply: TypeAlias = str | tuple[int, str, str] | BaseException | ScriptedFailure
#: A :data:`Reply`, or a callable making one from the :class:`Call`.
Answer: TypeAlias = Reply | Callable[[Call], Reply]
#: Which calls a rule answers: an argument that must be present, or a predicate.
When: TypeAlias = str | Callable[[Call], bool]


class UnscriptedCommandError(AssertionError):
    """No scripted answer for a command (or its list of answers is used up); ``argv`` is the call."""

    def __init__(self, argv: Sequence[str], message: str) -> None:
        self.argv = list(argv)
        super().__init__(message)


@dataclass
class _Rule:
    """The answers for one command name, for the calls ``when`` selects (all when None)."""

    when: When | None
    answers: deque[Answer]
    repeat: bool  # one answer for every call (else one per call, consumed)
    given: int = 0

    def matches(self, call: Call) -> bool:
        if self.when is None:
            return True
        if isinstance(self.when, str):
            return self.when in call.argv[1:]
        return self.when(call)


class ScriptedRunner(CommandRunner):
    """A command runner answering from a script and recording every call (see the module doc).

    ``answers`` maps command names to answers (as :meth:`script` without
    ``when``). ``prefix`` plays a bridge prefix (``("docker", "exec", "-i",
    "c")``): ``prefix``, ``describe()``, ``full_argv()`` and the errors' messages
    then say so, as the real runner's would; nothing runs anyway.
    ``ensure_newline``, ``timeout``, ``retries`` and ``backoff`` may be changed
    at any time. Thread-safe: a backend may call it from several threads.
    """

    def __init__(
        self,
        answers: Mapping[str, Answer | list[Answer]] | None = None,
        *,
        ensure_newline: bool = True,
        prefix: Sequence[str] = (),
        timeout: float = 60.0,
        retries: int = 0,
        backoff: float = 0.0,
    ) -> None:
        bridge = BridgeConfig(mode="prefix", prefix=tuple(prefix)) if prefix else BridgeConfig(mode="none")
        super().__init__(bridge, timeout=timeout, retries=retries, backoff=backoff)
        self.ensure_newline = ensure_newline
        #: Every call, in order (also those that found no answer).
        self.history: list[Call] = []
        #: True once :meth:`close` was called.
        self.closed = False
        self._rules: dict[str, list[_Rule]] = {}
        self._script_lock = threading.Lock()
        for command, answer in (answers or {}).items():
            self.script(command, answer)

    # -- scripting ------------------------------------------------------------------------------
    def script(self, command: str, answer: Answer | list[Answer], *, when: When | None = None) -> None:
        """Answer ``command`` with ``answer`` (a list: one item per call, in order).

        Without ``when``, this is the command's plain answer (replacing any
        earlier one). With ``when`` (an argument that must be present, or a
        predicate on the :class:`Call`), it answers only the calls it selects,
        before the plain answer; scripting the same ``when`` again replaces it.
        """
        rule = _Rule(when, deque(answer) if isinstance(answer, list) else deque([answer]),
                     repeat=not isinstance(answer, list))
        with self._script_lock:
            rules = self._rules.setdefault(command, [])
            rules[:] = [r for r in rules if r.when != when]
            if when is None:
                rules.append(rule)
            else:
                rules.insert(sum(r.when is not None for r in rules), rule)

    # -- what was called ------------------------------------------------------------------------
    def calls_of(self, command: str) -> list[Call]:
        """The recorded calls of ``command`` (``argv[0]``), in order."""
        with self._script_lock:
            return [c for c in self.history if c.argv[0] == command]

    def argvs(self, command: str | None = None) -> list[list[str]]:
        """The argv of every recorded call (of ``command`` only, if given), as lists."""
        with self._script_lock:
            return [list(c.argv) for c in self.history if command is None or c.argv[0] == command]

    # -- the CommandRunner interface ------------------------------------------------------------
    def attempt(self, argv: Sequence[str], input: bytes | None, timeout: float, check: bool,
                retry: bool) -> CommandResult:
        """Answer one attempt from the script (the real runner's retries and errors around it)."""
        if not argv:
            raise CommandError(list(argv), None, "empty command")
        call = Call(tuple(argv), input, timeout, check, retry)
        self.count_call()
        answer = self._answer_for(call)
        reply = answer(call) if callable(answer) else answer
        return self._reply(call, reply)

    def close(self) -> None:
        """Record that the backend closed its runner (:attr:`closed`)."""
        self.closed = True
        super().close()

    # -- answering ------------------------------------------------------------------------------
    def _answer_for(self, call: Call) -> Answer:
        """Record ``call`` and take its answer from the first matching rule."""
        with self._script_lock:
            self.history.append(call)
            rules = self._rules.get(call.argv[0], [])
            rule = next((r for r in rules if r.matches(call)), None)
            if rule is None:
                scripted = ", ".join(sorted(self._rules)) or "nothing"
                why = "no scripted answer matches" if rules else "unscripted command"
                raise UnscriptedCommandError(call.argv, f"{why}: {shlex.join(call.argv)} (scripted: {scripted})")
            if rule.repeat:
                return rule.answers[0]
            if not rule.answers:
                raise UnscriptedCommandError(
                    call.argv, f"{call.argv[0]} was called more often than scripted: its {rule.given} "
                    f"answer(s) are used up at {shlex.join(call.argv)}")
            rule.given += 1
            return rule.answers.popleft()

    def _ended(self, text: str) -> str:
        """``text`` with the final newline of real output, under ``ensure_newline``."""
        if self.ensure_newline and text and not text.endswith("\n"):
            return text + "\n"
        return text

    def _reply(self, call: Call, reply: Reply) -> CommandResult:
        """The result of ``call`` for ``reply``, or the error the real runner would raise."""
        argv = list(call.argv)
        prefix = self.prefix
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, ScriptedFailure):
            if reply.kind == "timeout":
                where = f"({self.describe()})" if prefix else ""
                raise CommandTimeoutError(argv, call.timeout if reply.seconds is None else reply.seconds, where)
            if not prefix:
                raise self.not_installed(argv)
            reply = (127, "", f"{argv[0]}: command not found")
        if isinstance(reply, str):
            reply = (0, reply, "")
        if not (isinstance(reply, tuple) and len(reply) == 3 and isinstance(reply[0], int)):
            raise TypeError(f"the scripted answer for {argv[0]} is {reply!r}: expected a str, a "
                            "(returncode, stdout, stderr) tuple, an exception or a ScriptedFailure")
        result = CommandResult(call.argv, reply[0], self._ended(reply[1]), self._ended(reply[2]), 0.0)
        if result.returncode != 0 and call.check:
            raise self.failure(result)
        return result
