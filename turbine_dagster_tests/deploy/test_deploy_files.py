"""The deployment files: deploy/dagster.yaml, deploy/helm/values.yaml and the Dockerfile.

No cluster and no Docker engine needed. Each file is checked against the schemas of the installed
Dagster packages and against the local dagster.yaml and workspace.yaml, so the deployment cannot
drift from what runs locally.
"""

import json
import re
import subprocess
import tomllib
from typing import Any

import pytest
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import ConfigurableClassData, class_from_code_pointer
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config
from dagster_postgres import DagsterPostgresStorage

from turbine_dagster.core.capacity import queue_limits_from_instance_yaml
from turbine_dagster_tests.deploy.conftest import DEPLOY_DIR, REPO_ROOT, load_yaml

# Everything deploy/dagster.yaml reads from the environment (deploy/README.md, "What to set").
INSTANCE_ENVIRONMENT = {
    "DAGSTER_PG_HOST": "postgres.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USERNAME": "turbine",
    "DAGSTER_PG_PASSWORD": "not-a-password",
    "DAGSTER_PG_DB": "dagster",
    "TURBINE_COMPUTE_LOG_BUCKET": "turbine-dagster-logs",
    "TURBINE_COMPUTE_LOG_PREFIX": "turbine/compute-logs",
}
CONFIGURABLE_SECTIONS = ("run_launcher", "compute_logs", "run_coordinator")


def env_vars_read_by(config: Any) -> set[str]:
    if isinstance(config, dict):
        if set(config) == {"env"}:
            return {config["env"]}
        return set().union(*(env_vars_read_by(value) for value in config.values()))
    if isinstance(config, list):
        return set().union(*(env_vars_read_by(value) for value in config))
    return set()


@pytest.fixture
def production_environment(monkeypatch):
    for name, value in INSTANCE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


# --- deploy/dagster.yaml -------------------------------------------------------------------------------


def test_deploy_instance_config_passes_dagster_instance_validation(production_environment):
    config, custom_instance_class = dagster_instance_config(str(DEPLOY_DIR))
    assert custom_instance_class is None
    assert set(CONFIGURABLE_SECTIONS) | {"storage", "concurrency", "run_monitoring"} <= set(config)


@pytest.mark.parametrize("section", CONFIGURABLE_SECTIONS)
def test_each_configured_class_accepts_its_config(production_environment, deploy_instance_config, section):
    entry = deploy_instance_config[section]
    # Resolved as the instance resolves it: `dagster.core.*` names `dagster._core.*`.
    pointer = ConfigurableClassData(entry["module"], entry["class"], config_yaml="{}")
    configured_class = class_from_code_pointer(pointer.module_name, pointer.class_name)
    result = process_config(configured_class.config_type(), entry.get("config", {}))
    assert result.success, [error.message for error in result.errors]


def test_postgres_connection_comes_from_the_environment(production_environment, deploy_instance_config):
    postgres = deploy_instance_config["storage"]["postgres"]
    assert all(set(value) == {"env"} for key, value in postgres["postgres_db"].items() if key != "scheme")
    result = process_config(DagsterPostgresStorage.config_type(), postgres)
    assert result.success, [error.message for error in result.errors]
    assert result.value["postgres_db"]["password"] == "not-a-password"


def test_missing_password_variable_is_named_in_the_error(production_environment, deploy_instance_config, monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    result = process_config(DagsterPostgresStorage.config_type(), deploy_instance_config["storage"]["postgres"])
    assert not result.success
    assert any("DAGSTER_PG_PASSWORD" in error.message for error in result.errors)


def test_every_variable_the_instance_reads_is_documented(deploy_instance_config):
    readme = (DEPLOY_DIR / "README.md").read_text()
    read = env_vars_read_by(deploy_instance_config)
    assert read == set(INSTANCE_ENVIRONMENT)
    assert {name for name in read if f"`{name}`" not in readme} == set()


def test_deploy_queue_and_pool_limits_equal_the_local_instance(deploy_instance_config, local_instance_config):
    assert deploy_instance_config["concurrency"] == local_instance_config["concurrency"]
    # Locally the queue also gives API launches with only `dagster/partition` their partition's tags
    # (turbine_dagster/run_coordinator.py). The deployed webserver and daemon run Dagster's own images, without
    # turbine_dagster, so they keep Dagster's class; the limit's key is the same.
    assert deploy_instance_config["run_coordinator"] == {"module": "dagster.core.run_coordinator",
                                                         "class": "QueuedRunCoordinator"}
    assert local_instance_config["run_coordinator"] == {"module": "turbine_dagster.run_coordinator",
                                                        "class": "PartitionTaggingRunCoordinator"}
    for key in ("enabled", "free_slots_after_run_end_seconds"):
        assert deploy_instance_config["run_monitoring"][key] == local_instance_config["run_monitoring"][key]


def test_capacity_planner_reads_the_same_limits_from_both_instances():
    assert queue_limits_from_instance_yaml(DEPLOY_DIR / "dagster.yaml") == queue_limits_from_instance_yaml(
        REPO_ROOT / "dagster.yaml"
    )


# --- deploy/helm/values.yaml ---------------------------------------------------------------------------


def deployments(helm_values) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in helm_values["dagster-user-deployments"]["deployments"]}


def env_of(deployment) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in deployment["env"]}


def test_helm_values_serve_the_workspace_code_locations(helm_values):
    workspace = load_yaml(REPO_ROOT / "workspace.yaml")
    locations = {
        entry["python_module"]["location_name"]: entry["python_module"]["module_name"]
        for entry in workspace["load_from"]
    }
    served = {name: entry["dagsterApiGrpcArgs"] for name, entry in deployments(helm_values).items()}
    assert served == {name: ["-m", module] for name, module in locations.items()}
    assert helm_values["dagster-user-deployments"]["enabled"] is True


@pytest.mark.parametrize("location", ["turbine-training", "turbine-prediction"])
def test_each_code_location_runs_in_production_with_the_aws_secret(helm_values, location):
    deployment = deployments(helm_values)[location]
    assert env_of(deployment)["TURBINE_ENV"] == "production"
    assert {"name": "turbine-aws"} in deployment["envSecrets"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["port"] == 3030


def snake_case(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower() if key != "applyLimitPerUniqueValue" else key:
                snake_case(item) for key, item in value.items()}
    if isinstance(value, list):
        return [snake_case(item) for item in value]
    return value


def test_helm_queue_and_pool_limits_equal_the_local_instance(helm_values, local_instance_config):
    concurrency = helm_values["concurrency"]
    assert concurrency["enabled"] is True
    helm_concurrency = snake_case({"pools": concurrency["pools"], "runs": concurrency["runs"]})
    assert helm_concurrency == local_instance_config["concurrency"]

    monitoring = helm_values["dagsterDaemon"]["runMonitoring"]
    local_monitoring = local_instance_config["run_monitoring"]
    assert monitoring["enabled"] == local_monitoring["enabled"]
    assert monitoring["freeSlotsAfterRunEndSeconds"] == local_monitoring["free_slots_after_run_end_seconds"]


def test_helm_run_coordinator_leaves_the_limits_to_concurrency(helm_values):
    # Dagster refuses an instance with limits both in run_coordinator and concurrency.
    coordinator = helm_values["dagsterDaemon"]["runCoordinator"]
    assert (coordinator["enabled"], coordinator["type"]) == (True, "QueuedRunCoordinator")
    assert not any(coordinator["config"]["queuedRunCoordinator"].values())


def test_helm_values_hold_no_database_password(helm_values):
    assert helm_values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in helm_values["postgresql"]


def test_gpu_settings_of_the_training_location_make_a_valid_gpu_pod(helm_values):
    settings = env_of(deployments(helm_values)["turbine-training"])
    gpus = settings["TURBINE_GPU_COUNT"]
    tag = {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": gpus}}},
        "pod_spec_config": {
            "node_selector": json.loads(settings["TURBINE_GPU_NODE_SELECTOR"]),
            "tolerations": json.loads(settings["TURBINE_GPU_TOLERATIONS"]),
        },
    }
    k8s_config = get_user_defined_k8s_config({"dagster-k8s/config": json.dumps(tag)})
    job_config = DagsterK8sJobConfig(job_image="turbine-dagster-gpu:test", dagster_home="/opt/dagster/dagster_home",
                                     instance_config_map="turbine-dagster-instance")
    pod = construct_dagster_k8s_job(job_config, ["dagster"], "dagster-run-test", k8s_config).spec.template.spec

    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": gpus} and int(gpus) >= 1
    assert pod.node_selector == json.loads(settings["TURBINE_GPU_NODE_SELECTOR"])
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]


# --- Dockerfile ----------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO_ROOT / "Dockerfile").read_text()
    logical_lines = re.sub(r"\\\n", " ", text).splitlines()
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in logical_lines)
        if line and not line.startswith("#")
    ]


def instruction(name: str) -> list[str]:
    return [argument for keyword, argument in dockerfile_instructions() if keyword == name]


def build_arguments() -> dict[str, str]:
    return dict(argument.split("=", 1) for argument in instruction("ARG") if "=" in argument)


def simulate_install(tmp_path, variant: str) -> subprocess.CompletedProcess:
    """Run the Dockerfile's RUN step with pip, useradd and chown replaced by recorders."""
    (run_step,) = instruction("RUN")
    stubs = "pip() { echo \"pip $*\"; }; useradd() { :; }; chown() { :; }; "
    environment = {**build_arguments(), "VARIANT": variant, "DAGSTER_HOME": str(tmp_path / "home"),
                   "PATH": "/usr/bin:/bin"}
    return subprocess.run(["sh", "-c", stubs + run_step], env=environment, capture_output=True, text=True, check=False)


def test_dockerfile_builds_from_python_311_slim():
    assert build_arguments()["PYTHON_VERSION"] == "3.11"
    assert instruction("FROM") == ["python:${PYTHON_VERSION}-slim"]


def test_dockerfile_copies_only_files_that_exist():
    copied = [path for argument in instruction("COPY") for path in argument.split()[:-1]]
    assert copied == ["pyproject.toml", "README.md", "turbine_dagster"]
    assert all((REPO_ROOT / path).exists() for path in copied)


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_both_variants_install_the_package(tmp_path, variant):
    done = simulate_install(tmp_path, variant)
    assert done.returncode == 0, done.stderr
    assert "pip install ." in done.stdout.splitlines()


def test_only_the_gpu_variant_adds_cuda_tensorflow_at_the_project_pin(tmp_path):
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    dependencies = pyproject["project"]["dependencies"]
    (pin,) = [dep.removeprefix("tensorflow") for dep in dependencies if dep.startswith("tensorflow")]
    assert f"tensorflow[and-cuda]{pin}" in simulate_install(tmp_path, "gpu").stdout.splitlines()[-1]
    assert "and-cuda" not in simulate_install(tmp_path, "cpu").stdout


def test_an_unknown_variant_fails_the_build(tmp_path):
    done = simulate_install(tmp_path, "tpu")
    assert done.returncode != 0 and "VARIANT must be cpu or gpu" in done.stderr


def test_image_serves_a_code_location_over_grpc_on_port_3030():
    assert instruction("EXPOSE") == ["3030"]
    (command,) = instruction("CMD")
    argv = json.loads(command)
    assert argv[:3] == ["dagster", "api", "grpc"]
    assert argv[argv.index("--port") + 1] == "3030"
    assert argv[argv.index("--module-name") + 1] == "turbine_dagster.locations.training"
