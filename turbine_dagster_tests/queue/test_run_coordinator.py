"""The run coordinator gives a run launched with only ``dagster/partition`` its partition's tags before it is queued,
so that the per-team limit counts it; runs launched with their tags are queued untouched."""

import sys

import dagster as dg
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.remote_representation.external_data import PartitionExecutionErrorSnap, PartitionTagsSnap
from dagster._core.test_utils import create_run_for_test

from turbine_dagster_tests.queue.probe_defs import defs

COORDINATOR = {
    "run_coordinator": {"module": "turbine_dagster.run_coordinator", "class": "PartitionTaggingRunCoordinator"}
}
JOB = "gpu_probe_job"
ORIGIN = RemoteJobOrigin(
    repository_origin=RemoteRepositoryOrigin(
        code_location_origin=GrpcServerCodeLocationOrigin(host="localhost", port=4000, location_name="probe"),
        repository_name="__repository__",
    ),
    job_name=JOB,
)
CODE_ORIGIN = JobPythonOrigin(
    JOB,
    RepositoryPythonOrigin(
        executable_path=sys.executable, code_pointer=ModuleCodePointer("turbine_dagster_tests.queue.probe_defs", "defs")
    ),
)


class Workspace:
    """The one workspace call the coordinator makes, answered from the probe job's own tag functions."""

    def __init__(self, fail: bool = False):
        self.fail, self.calls = fail, 0

    def get_partition_tags(self, repository, job_name, partition_name, instance, selected_asset_keys):
        self.calls += 1
        assert (repository.location_name, repository.repository_name, job_name) == ("probe", "__repository__", JOB)
        if self.fail:
            return PartitionExecutionErrorSnap(error=None)
        job = defs.resolve_job_def(job_name)
        return PartitionTagsSnap(
            name=partition_name, tags=job.get_tags_for_partition_key(partition_name, selected_asset_keys=None)
        )


def _submit(instance, tags: dict, workspace: Workspace) -> dg.DagsterRun:
    run = create_run_for_test(
        instance,
        job_name=JOB,
        tags=tags,
        remote_job_origin=ORIGIN,
        job_code_origin=CODE_ORIGIN,
        status=dg.DagsterRunStatus.NOT_STARTED,
    )
    instance.submit_run(run.run_id, workspace)
    return instance.get_run_by_id(run.run_id)


def test_a_run_with_only_its_partition_gets_the_partitions_tags_before_it_is_queued(week):
    with dg.instance_for_test(overrides=COORDINATOR) as instance:
        run = _submit(instance, {"dagster/partition": f"team_b|{week}"}, Workspace())
    assert run.status == dg.DagsterRunStatus.QUEUED
    assert (run.tags["dagster/partition/team"], run.tags["dagster/partition/week"]) == ("team_b", week)
    assert run.tags["team"] == "team_b"  # the job's own tags of the partition too, as the Launchpad writes them


def test_a_run_launched_with_its_partitions_tags_is_queued_untouched(week):
    tags = {"dagster/partition": f"team_b|{week}", "dagster/partition/team": "team_b", "dagster/partition/week": week}
    workspace = Workspace()
    with dg.instance_for_test(overrides=COORDINATOR) as instance:
        run = _submit(instance, tags, workspace)
    assert workspace.calls == 0 and run.status == dg.DagsterRunStatus.QUEUED
    assert "team" not in run.tags


def test_a_partition_without_tags_still_queues_the_run(week):
    with dg.instance_for_test(overrides=COORDINATOR) as instance:
        run = _submit(instance, {"dagster/partition": f"team_b|{week}"}, Workspace(fail=True))
    assert run.status == dg.DagsterRunStatus.QUEUED and "dagster/partition/team" not in run.tags


def test_the_coordinator_keeps_the_instances_run_queue_limits():
    config = {
        **COORDINATOR,
        "concurrency": {
            "runs": {
                "max_concurrent_runs": 3,
                "tag_concurrency_limits": [
                    {"key": "dagster/partition/team", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
                ],
            }
        },
    }
    with dg.instance_for_test(overrides=config) as instance:
        queue = instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == 3 and queue.tag_concurrency_limits[0]["key"] == "dagster/partition/team"
