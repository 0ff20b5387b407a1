"""The runner of Soma-Workflow's own suite: reading its output, comparing the control with ours."""

from __future__ import annotations

from soma_schedulers.testing.somaworkflow_suite import RunResult, compare, parse_output

OUTPUT = """\
test_workflow_simple (soma_workflow.test.job_tests.test_workflow_api.WorkflowApiTests.test_workflow_simple) ... ok
Ran 1 test in 0.000s
OK
********* soma-workflow tests: BarrierTest *********
============ Resource : srv-1 ===================
Mode : local
File system : local path
test_result (soma_workflow.test.workflow_tests.test_barrier_jobs.BarrierTest.test_result) ... ERROR:zro:noise
ERROR
======================================================================
ERROR: test_result (soma_workflow.test.workflow_tests.test_barrier_jobs.BarrierTest.test_result)
Ran 1 test in 2.1s
FAILED (errors=1)
deleted.============ Resource : vm ===================
Mode : light
File system : local path
test_result (soma_workflow.test.workflow_tests.test_barrier_jobs.BarrierTest.test_result) ... ok
Ran 1 test in 2.0s
deleted.********* soma-workflow tests: SimpleTest *********
============ Resource : vm ===================
File system : local path
test_a (soma_workflow.test.workflow_tests.test_simple.SimpleTest) ... ok
test_b (soma_workflow.test.workflow_tests.test_simple.SimpleTest) ... skipped 'x'
Ran 2 tests in 1s
File system : file transfer
test_a (soma_workflow.test.workflow_tests.test_simple.SimpleTest) ... ok
Ran 1 test in 1s
"""


def test_parse_output_per_resource_and_file_system() -> None:
    assert parse_output(OUTPUT, "srv-1") == {
        "api/WorkflowApiTests.test_workflow_simple": "passed",
        "server/BarrierTest.test_result [local path]": "failed",
        "light/BarrierTest.test_result [local path]": "passed",
        "light/SimpleTest.test_a [local path]": "passed",
        "light/SimpleTest.test_b [local path]": "skipped",
        "light/SimpleTest.test_a [file transfer]": "passed",
    }


def test_compare_counts_only_what_the_control_passes() -> None:
    control = RunResult("local_basic", {"a/X.t": "passed", "a/Y.t": "failed", "a/FakePipelineTest.test_result": "passed",
                                        "a/Z.t": "passed"})
    ours = RunResult("soma_schedulers.local_basic", {"a/X.t": "passed", "a/Y.t": "failed",
                                                     "a/FakePipelineTest.test_result": "failed"})
    regressions, upstream = compare(control, ours)
    assert regressions == ["a/Z.t: control passed, ours did not run"]
    assert len(upstream) == 1 and upstream[0].startswith("a/FakePipelineTest.test_result: control passed, ours failed")
