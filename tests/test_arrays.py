"""Bulk submission through arrays: grouping (arrays.plan), the array script, the polled base's
job_submission with a backend that has arrays, its fall-back when the DRMS refuses them."""

from __future__ import annotations

import subprocess
from collections.abc import Hashable, Sequence

import pytest

from soma_schedulers import ArraysRefused, BridgeConfig, Job, SchedulerConfig, SubmissionError
from soma_schedulers.arrays import array_script, plan
from soma_schedulers.polled import Observation, PolledScheduler
from soma_schedulers.scripts import build_script


def _jobs(*queues: str | None) -> list[tuple[int, Job]]:
    return [(n, Job(command=["true"], queue=q)) for n, q in enumerate(queues)]


def test_plan_groups_by_key_in_order_and_chunks_by_size() -> None:
    planned = plan(_jobs("a", "b", "a", "a", "a", "b", None), lambda j: j.queue, min_size=2, max_size=lambda: 3)
    # a: 4 jobs = an array of 3 + 1 left over (below min_size); b: 2 jobs, an array; None: alone
    assert [[n for n, _ in g] for g in planned.arrays] == [[0, 2, 3], [1, 5]]
    assert [n for n, _ in planned.singles] == [4, 6]


def test_plan_asks_the_drms_limit_only_for_a_group_large_enough() -> None:
    def never() -> int:
        raise AssertionError("asked")

    assert [n for n, _ in plan(_jobs("a", "b"), lambda j: j.queue, 2, never).singles] == [0, 1]


def test_plan_min_and_max() -> None:
    planned = plan(_jobs("a", "a", "b", "b", "b"), lambda j: j.queue, min_size=3, max_size=lambda: 10)
    assert [[n for n, _ in g] for g in planned.arrays] == [[2, 3, 4]]
    assert [n for n, _ in planned.singles] == [0, 1]
    assert plan(_jobs("a", "a"), lambda j: j.queue, 1, lambda: 0).arrays == []  # size 0: arrays off


@pytest.mark.parametrize("index", [0, 1, 2, 7])
def test_array_script_runs_the_task_of_its_index_byte_for_byte(tmp_path, index: int) -> None:
    args = [["printf", "%s|", "a b", "it's", "$HOME", "\\n"], ["printf", "%s|", "x\ny", "*"],
            ["sh", "-c", "exit 3"]]
    scripts = [build_script(Job(command=a, stdout_file=str(tmp_path / f"out{n}"))) for n, a in enumerate(args)]
    text = array_script(scripts, "$TASK", first=0, directives=["#X directive"])
    assert text.startswith("#!/bin/sh\n#X directive\n")
    path = tmp_path / "array.sh"
    path.write_text(text)
    rc = subprocess.run(["/bin/sh", str(path)], env={"TASK": str(index), "PATH": "/usr/bin:/bin"},
                        capture_output=True).returncode
    if index == 7:
        assert rc == 127
        return
    assert rc == (3 if index == 2 else 0)
    if index < 2:
        assert (tmp_path / f"out{index}").read_text() == "".join(f"{a}|" for a in args[index][2:])
        assert not (tmp_path / f"out{1 - index}").exists()


class _ArrayBackend(PolledScheduler):
    """Submits to nothing: records what it was asked (arrays by queue, max 3 tasks)."""

    def __init__(self, config: SchedulerConfig, refuse: str | None = None, fail_queue: str | None = None) -> None:
        super().__init__(config)
        self.calls: list[list[str]] = []
        self.refuse, self.fail_queue, self.count = refuse, fail_queue, 0

    def array_key(self, job: Job) -> Hashable | None:
        return job.queue

    def max_array_size(self) -> int:
        return 3

    def submit_array(self, jobs: Sequence[Job]) -> list[str]:
        if self.refuse:
            raise ArraysRefused(self.refuse)
        if jobs[0].queue == self.fail_queue:
            raise SubmissionError(f"queue {self.fail_queue} is closed")
        self.count += 1
        self.calls.append([j.name or "" for j in jobs])
        return [f"{self.count}_{n}" for n in range(len(jobs))]

    def submit_one(self, job: Job) -> str:
        self.count += 1
        self.calls.append([job.name or ""])
        return str(self.count)

    def query_jobs(self, ids: Sequence[str]) -> dict[str, Observation]:
        return {i: Observation("queued_active") for i in ids}

    def cancel_job(self, job_id: str) -> None:
        pass


def _named(*specs: tuple[str, str]) -> list[Job]:
    return [Job(command=["true"], name=name, queue=queue) for name, queue in specs]


def test_job_submission_groups_arrays_and_keeps_the_order_of_ids() -> None:
    s = _ArrayBackend(SchedulerConfig())
    jobs = _named(("j0", "a"), ("j1", "b"), ("j2", "a"), ("j3", "a"))
    ids = s.job_submission(jobs)
    assert s.calls == [["j0", "j2", "j3"], ["j1"]]  # b alone: below the minimum (2)
    assert ids == ["1_0", "2", "1_1", "1_2"]
    assert s.get_jobs_status(ids) == dict.fromkeys(ids, "queued_active")


def test_arrays_never_submits_one_by_one() -> None:
    s = _ArrayBackend(SchedulerConfig(arrays="never"))
    assert s.job_submission(_named(("j0", "a"), ("j1", "a"))) == ["1", "2"]


def test_a_refused_array_falls_back_to_single_submissions_with_the_reason(caplog) -> None:
    s = _ArrayBackend(SchedulerConfig(), refuse="MaxArraySize is 0")
    ids = s.job_submission(_named(("j0", "a"), ("j1", "a")))
    assert ids == ["1", "2"] and s.arrays_refused == "MaxArraySize is 0"
    assert any("MaxArraySize is 0" in r.getMessage() for r in caplog.records)


def test_a_failed_array_fails_exactly_its_jobs_with_the_drms_message() -> None:
    s = _ArrayBackend(SchedulerConfig(), fail_queue="b")
    ids = s.job_submission(_named(("j0", "b"), ("j1", "a"), ("j2", "b"), ("j3", "a")))
    assert ids == [None, "1_0", None, "1_1"]
    assert s.last_submission_errors == ["queue b is closed", None, "queue b is closed", None]


def test_config_keys_for_arrays() -> None:
    from soma_schedulers.config import config_from_mapping
    from soma_schedulers.errors import ConfigurationError

    cfg = config_from_mapping({"ARRAYS": "Never", "ARRAY_MIN_SIZE": "5"})
    assert (cfg.arrays, cfg.array_min_size) == ("never", 5)
    with pytest.raises(ConfigurationError, match="arrays must be auto or never"):
        config_from_mapping({"ARRAYS": "sometimes"})
    with pytest.raises(ConfigurationError, match="array_min_size"):
        SchedulerConfig(array_min_size=0)


def test_slurm_cuts_arrays_whose_script_would_be_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    from soma_schedulers.schedulers import slurm_scheduler

    s = slurm_scheduler.SlurmScheduler(SchedulerConfig(bridge=BridgeConfig(mode="none")))
    jobs = [Job(command=["echo", "x" * 1000]) for _ in range(10)]
    size = len(s.job_script(jobs[0], directives=False)) + 16
    monkeypatch.setattr(slurm_scheduler, "MAX_SCRIPT_BYTES", 3 * size)
    assert s.array_chunks(jobs) == [3, 3, 3, 1]
    monkeypatch.setattr(slurm_scheduler, "MAX_SCRIPT_BYTES", 100 * size)
    assert s.array_chunks(jobs) == [10]


def test_chunk_sizes_keeps_each_chunk_under_the_limit() -> None:
    from soma_schedulers.arrays import chunk_sizes

    assert chunk_sizes([40, 40, 40, 40, 40], 100) == [2, 2, 1]
    assert chunk_sizes([150, 10, 10], 100) == [1, 2]  # an item over the limit goes alone
    assert chunk_sizes([], 100) == []


def test_pbs_arrays_are_cut_by_script_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from soma_schedulers.schedulers.pbs import dialects
    from soma_schedulers.schedulers.pbs.scheduler import TorqueScheduler

    s = TorqueScheduler(SchedulerConfig(bridge=BridgeConfig(mode="none")))  # its dialect pinned: no qstat
    jobs = [Job(command=["echo", "x" * 1000]) for _ in range(10)]
    size = len(s.job_script(jobs[0], directives=False)) + 16
    monkeypatch.setattr(dialects.PBSDialect, "max_array_script_bytes", 4 * size)
    assert s.array_chunks(jobs) == [4, 4, 2]


def test_array_script_writes_the_shared_first_lines_once_and_never_splits_a_quoted_word(tmp_path) -> None:
    jobs = [Job(command=["printf", "%s", f"n{i}"], env={"A": "x\ny"}, stdout_file=str(tmp_path / f"o{i}"))
            for i in range(3)]
    text = array_script([build_script(j) for j in jobs], "$TASK")
    assert text.count("soma_fail() {") == 1 and text.count("soma_cr=") == 1  # once, before the case
    assert text.index("soma_fail() {") < text.index('case "$TASK"')
    assert text.count("export A=") == 3  # job data stays in each task's branch
    path = tmp_path / "array.sh"
    path.write_text(text)
    assert subprocess.run(["/bin/sh", str(path)], env={"TASK": "2", "PATH": "/usr/bin:/bin"}).returncode == 0
    assert (tmp_path / "o2").read_text() == "n2"
