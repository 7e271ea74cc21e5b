"""deploy/dagster.yaml on a real PostgreSQL server: runs, events and pool limits persist in Postgres.

Each test writes a DAGSTER_HOME whose dagster.yaml is taken from deploy/dagster.yaml, with the
connection supplied through the environment variables that file reads. A first instance writes, a
second instance built from the same file reads back.
"""

import dagster as dg
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_k8s import K8sRunLauncher
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from turbine_dagster.cli.instance import GPU_POOL, ensure_pool_limits
from turbine_dagster.defs.training.data_assets import SPLIT_DESCRIPTIONS, raw_data, splits
from turbine_dagster_tests.defs.helpers import failure_messages, materialize, materialized_keys

DATA_ASSETS = [raw_data, splits]
# Tested against the real server. The Kubernetes run launcher and the S3 compute logs are loaded in
# test_the_whole_production_instance_loads, outside a cluster.
SERVER_SECTIONS = ("storage", "run_coordinator", "concurrency", "run_monitoring", "telemetry")


def write_instance_home(tmp_path, config) -> str:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return str(home)


@pytest.fixture
def instance_home(tmp_path, deploy_instance_config, postgres_db, monkeypatch) -> str:
    for name, value in postgres_db.environment().items():
        monkeypatch.setenv(name, value)
    return write_instance_home(tmp_path, {key: deploy_instance_config[key] for key in SERVER_SECTIONS})


def test_storage_of_the_production_instance_is_postgres(instance_home):
    with dg.DagsterInstance.from_config(instance_home) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)


def test_materialization_history_is_read_back_from_postgres_by_another_instance(
    instance_home, postgres_db, settings, partition_key
):
    with dg.DagsterInstance.from_config(instance_home) as writer:
        result = materialize(DATA_ASSETS, settings, partition_key, instance=writer)
    assert result.success, failure_messages(result)
    assert materialized_keys(result) == {"raw_data", *SPLIT_DESCRIPTIONS}

    with dg.DagsterInstance.from_config(instance_home) as reader:
        run = reader.get_run_by_id(result.run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == partition_key

        records = reader.fetch_materializations(dg.AssetKey("raw_data"), limit=10).records
        assert [record.partition_key for record in records] == [partition_key]
        assert records[0].asset_materialization.metadata["dagster/row_count"].value == 200
        assert all(
            reader.get_materialized_partitions(dg.AssetKey(name)) == {partition_key} for name in SPLIT_DESCRIPTIONS
        )

        check_keys = list(raw_data.check_keys)
        latest = reader.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
        assert {record.status.value for record in latest.values()} == {"SUCCEEDED"}
        assert len(latest) == len(check_keys) == 5

    # Straight from the server's tables, not through Dagster.
    assert postgres_db.query("SELECT run_id, status FROM runs") == [(result.run_id, "SUCCESS")]


def test_gpu_pool_limit_written_at_setup_holds_for_every_instance(instance_home, deploy_instance_config):
    limit = deploy_instance_config["concurrency"]["pools"]["default_limit"]
    with dg.DagsterInstance.from_config(instance_home) as setup:
        assert ensure_pool_limits(setup) == limit

    with dg.DagsterInstance.from_config(instance_home) as daemon:
        assert daemon.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == limit
        assert [(pool.name, pool.limit) for pool in daemon.event_log_storage.get_pool_limits()] == [(GPU_POOL, limit)]


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster: {server: "https://127.0.0.1:6443"}
users:
  - name: test
    user: {token: not-a-real-token}
contexts:
  - name: test
    context: {cluster: test, user: test}
current-context: test
"""


def test_the_whole_production_instance_loads(tmp_path, deploy_instance_config, instance_home, monkeypatch):
    # Outside a cluster the launcher cannot load in-cluster credentials: give it a kubeconfig instead.
    # Nothing below contacts Kubernetes or S3.
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    config = dict(deploy_instance_config)
    config["run_launcher"] = {
        **config["run_launcher"],
        "config": {
            **config["run_launcher"]["config"],
            "load_incluster_config": False,
            "kubeconfig_file": str(tmp_path / "kubeconfig"),
        },
    }
    for name, value in {
        "TURBINE_COMPUTE_LOG_BUCKET": "turbine-dagster-logs",
        "TURBINE_COMPUTE_LOG_PREFIX": "turbine/compute-logs",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "eu-central-1",
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster_home" / "dagster.yaml").write_text(yaml.safe_dump(config))

    with dg.DagsterInstance.from_config(instance_home) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert (launcher.job_namespace, launcher.instance_config_map) == ("turbine", "turbine-dagster-instance")
        assert launcher.env_secrets == ["turbine-aws"] and launcher.postgres_password_secret == "turbine-postgresql"
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 7
