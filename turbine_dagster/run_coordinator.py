"""The instance's run coordinator: Dagster's run queue, where every run of a partition carries its partition's tags.

A run launched through the GraphQL API with only ``dagster/partition`` lacks the per-dimension tags
(``dagster/partition/team``) that the per-team queue limit counts; before it is queued, it gets the tags the UI
would have written for its partition."""

import logging
from collections.abc import Mapping

import dagster as dg
from dagster._core.definitions.selector import RepositorySelector
from dagster._core.remote_representation.external_data import PartitionTagsSnap

PARTITION_TAG = "dagster/partition"
DIMENSION_TAG_PREFIX = f"{PARTITION_TAG}/"

logger = logging.getLogger(__name__)


class PartitionTaggingRunCoordinator(dg.QueuedRunCoordinator):
    """``QueuedRunCoordinator`` with the same configuration; see the module docstring."""

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        missing = self.missing_partition_tags(context)
        if missing:
            self._instance.add_run_tags(context.dagster_run.run_id, missing)
            run = self._instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
            logger.info(f"run {run.run_id} of {run.job_name}: added the partition's tags {dict(missing)}")
            context = dg.SubmitRunContext(run, context.workspace)
        return super().submit_run(context)

    def missing_partition_tags(self, context: dg.SubmitRunContext) -> Mapping[str, str]:
        """The partition's tags (system and the job's own) a run launched with only ``dagster/partition`` lacks."""
        run = context.dagster_run
        partition = run.tags.get(PARTITION_TAG)
        origin = run.remote_job_origin
        if partition is None or origin is None or any(key.startswith(DIMENSION_TAG_PREFIX) for key in run.tags):
            return {}
        repository = RepositorySelector(
            location_name=origin.location_name, repository_name=origin.repository_origin.repository_name
        )
        try:
            snap = context.workspace.get_partition_tags(
                repository, run.job_name, partition, self._instance, run.asset_selection
            )
        except Exception:  # a launch must not fail here; the queue still holds it to the overall and pool limits
            logger.warning(
                f"run {run.run_id}: could not read the tags of partition {partition!r} of {run.job_name}; "
                "it is queued without them, outside its team's limit",
                exc_info=True,
            )
            return {}
        if not isinstance(snap, PartitionTagsSnap):
            logger.warning(
                f"run {run.run_id}: partition {partition!r} of {run.job_name} has no tags "
                f"({snap.error.message.strip() if snap.error else 'no detail'}); queued without them, "
                "outside its team's limit"
            )
            return {}
        return {key: value for key, value in snap.tags.items() if key not in run.tags}
