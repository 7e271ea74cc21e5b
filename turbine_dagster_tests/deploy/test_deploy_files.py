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

from turbine_dagster.cli.capacity import queue_limits_from_instance_yaml
from turbine_dagster.core.planning.capacity import MODEL_STEPS_PER_RUN, CapacityInputs
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
    assert deploy_instance_config["run_coordinator"] == {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
    }
    assert local_instance_config["run_coordinator"] == {
        "module": "turbine_dagster.run_coordinator",
        "class": "PartitionTaggingRunCoordinator",
    }
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


# Each component's AWS keys, in a Secret of its own (deploy/iam holds the policy of each). `turbine-aws`
# holds the region (and endpoint) only and goes to everything.
OWN_AWS_SECRET = {
    "turbine-training": "turbine-aws-training",
    "turbine-prediction": "turbine-aws-prediction",
    "webserver": "turbine-aws-webserver",
    "daemon": "turbine-aws-daemon",
}


@pytest.mark.parametrize("location", ["turbine-training", "turbine-prediction"])
def test_each_code_location_runs_in_production_with_its_own_aws_secret(helm_values, location):
    deployment = deployments(helm_values)[location]
    assert env_of(deployment)["TURBINE_ENV"] == "production"
    # includeConfigInLaunchedRuns hands exactly these to the location's run and step pods.
    assert deployment["envSecrets"] == [{"name": "turbine-aws"}, {"name": OWN_AWS_SECRET[location]}]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["port"] == 3030


def test_no_component_keys_are_given_to_every_run(helm_values, deploy_instance_config):
    assert "envSecrets" not in helm_values["runLauncher"]["config"]["k8sRunLauncher"]
    assert deploy_instance_config["run_launcher"]["config"]["env_secrets"] == ["turbine-aws"]


def test_the_webserver_and_the_daemon_have_their_own_aws_secrets(helm_values):
    for component, values in (("webserver", helm_values["dagsterWebserver"]), ("daemon", helm_values["dagsterDaemon"])):
        assert values["envSecrets"] == [{"name": "turbine-aws"}, {"name": OWN_AWS_SECRET[component]}]


def test_run_pods_get_every_variable_the_instance_reads(deploy_instance_config):
    launcher = deploy_instance_config["run_launcher"]["config"]
    forwarded = set(launcher["env_vars"])  # copied from the daemon's environment into each run and step pod
    assert forwarded | {"DAGSTER_PG_PASSWORD"} == env_vars_read_by(deploy_instance_config)
    assert launcher["postgres_password_secret"] == "turbine-postgresql"  # the launcher adds DAGSTER_PG_PASSWORD


def snake_case(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower() if key != "applyLimitPerUniqueValue" else key: snake_case(item)
            for key, item in value.items()
        }
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


def test_model_step_gpus_of_the_helm_values_fill_the_capacity_planners_vm(helm_values):
    gpus_per_step = int(env_of(deployments(helm_values)["turbine-training"])["TURBINE_GPU_COUNT"])
    inputs = CapacityInputs()
    assert gpus_per_step == inputs.gpus_per_model_step
    assert MODEL_STEPS_PER_RUN * gpus_per_step == inputs.gpus_per_vm


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
    job_config = DagsterK8sJobConfig(
        job_image="turbine-dagster-gpu:test",
        dagster_home="/opt/dagster/dagster_home",
        instance_config_map="turbine-dagster-instance",
    )
    pod = construct_dagster_k8s_job(job_config, ["dagster"], "dagster-run-test", k8s_config).spec.template.spec

    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": gpus} and int(gpus) >= 1
    assert pod.node_selector == json.loads(settings["TURBINE_GPU_NODE_SELECTOR"])
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]


# --- deploy/kubernetes: the code servers without Helm, and who may reach them -------------------------

RELEASE = "turbine"  # the Helm release name deploy/README.md installs


def manifests(name: str) -> list[dict[str, Any]]:
    import yaml

    return list(yaml.safe_load_all((DEPLOY_DIR / "kubernetes" / name).read_text()))


def manifest_deployments() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests("code-servers.yaml") if doc["kind"] == "Deployment"}


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels is evaluated here"
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def chart_pod_labels() -> dict[str, dict[str, str]]:
    """Pod labels the dagster/dagster 1.13.27 chart writes (templates deployment-webserver, deployment-daemon,
    dagster-user-deployments/deployment-user) for release `turbine`."""
    common = {"app.kubernetes.io/instance": RELEASE}
    return {
        "webserver": {**common, "app.kubernetes.io/name": "dagster", "component": "dagster-webserver"},
        "daemon": {
            **common,
            "app.kubernetes.io/name": "dagster",
            "component": "dagster-daemon",
            "deployment": "daemon",
        },
        **{
            f"helm {name}": {
                **common,
                "app.kubernetes.io/name": "dagster-user-deployments",
                "component": "user-deployments",
                "deployment": name,
            }
            for name in ("turbine-training", "turbine-prediction")
        },
    }


def launched_pod_labels() -> dict[str, dict[str, str]]:
    """Labels of run and step pods, from dagster-k8s's own job builder."""
    job_config = DagsterK8sJobConfig(
        job_image="turbine-dagster:test",
        dagster_home="/opt/dagster/dagster_home",
        instance_config_map="turbine-dagster-instance",
    )
    return {
        component: construct_dagster_k8s_job(
            job_config,
            ["dagster"],
            f"dagster-{component}",
            component=component,
            labels={"dagster/job": "training_pipeline"},
        ).spec.template.metadata.labels
        for component in ("run_worker", "step_worker")
    }


def test_the_manifests_are_valid_kubernetes_objects():
    from kubernetes.client import ApiClient

    client = ApiClient()
    for name in ("code-servers.yaml", "network-policy.yaml"):
        for document in manifests(name):
            model = client._ApiClient__deserialize(document, f"V1{document['kind']}")
            assert client.sanitize_for_serialization(model) == document, f"{name}: unknown field in {document['kind']}"


def test_only_the_webserver_and_the_daemon_reach_the_code_servers(helm_values):
    (policy,) = manifests("network-policy.yaml")
    pods = {
        **chart_pod_labels(),
        **launched_pod_labels(),
        **{
            f"manifest {name}": doc["spec"]["template"]["metadata"]["labels"]
            for name, doc in manifest_deployments().items()
        },
    }
    protected = {name for name, labels in pods.items() if matches(policy["spec"]["podSelector"], labels)}
    assert protected == {
        "helm turbine-training",
        "helm turbine-prediction",
        "manifest turbine-training",
        "manifest turbine-prediction",
    }

    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    allowed = {
        name for name, labels in pods.items() if any(matches(peer["podSelector"], labels) for peer in rule["from"])
    }
    assert allowed == {"webserver", "daemon"}
    assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # no namespace or address blocks
    ports = {deployment["port"] for deployment in helm_values["dagster-user-deployments"]["deployments"]}
    assert rule["ports"] == [{"protocol": "TCP", "port": port} for port in sorted(ports)]


def test_the_code_servers_without_helm_serve_what_the_helm_values_serve(helm_values):
    for name, document in manifest_deployments().items():
        (container,) = document["spec"]["template"]["spec"]["containers"]
        helm = deployments(helm_values)[name]
        assert container["args"][-2:] == helm["dagsterApiGrpcArgs"]
        assert container["image"].rsplit(":", 1)[0] == helm["image"]["repository"]
        env = {entry["name"]: entry for entry in container["env"]}
        assert env["DAGSTER_CURRENT_IMAGE"]["value"] == container["image"]
        assert json.loads(env["DAGSTER_CONTAINER_CONTEXT"]["value"]) == {"k8s": {"env_secrets": [OWN_AWS_SECRET[name]]}}
        secrets = [source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source]
        assert secrets == [entry["name"] for entry in helm["envSecrets"]]


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
    stubs = 'pip() { echo "pip $*"; }; useradd() { :; }; chown() { :; }; '
    environment = {
        **build_arguments(),
        "VARIANT": variant,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
    }
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
