"""The production definitions on Kubernetes: k8s_job_executor for steps, GPU requests on the model steps only
(op tags, read by the executor; none in run tags, read by K8sRunLauncher for the run pod); and the run pod
K8sRunLauncher builds from deploy/dagster.yaml for each location: its environment loads the instance, and
it carries its own location's AWS keys only."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from turbine_dagster_tests.deploy.conftest import DEPLOY_DIR

PRODUCTION_ENV = {
    "TURBINE_ENV": "production",
    "TURBINE_LANDING_ROOT": "s3://turbine-landing/landing",
    "TURBINE_STORAGE_ROOT": "s3://turbine-artifacts/storage",
    "TURBINE_GPU_COUNT": "2",
    "TURBINE_GPU_NODE_SELECTOR": json.dumps({"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}),
    "TURBINE_GPU_TOLERATIONS": json.dumps([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
}

PROBE = """
import json
import dagster as dg
from turbine_dagster.locations.training import defs as training
from turbine_dagster.locations.prediction import defs as prediction

for defs in (training, prediction):
    dg.Definitions.validate_loadable(defs)
job = training.get_job_def("training_pipeline")
run_config = {"execution": {"config": {"job_namespace": "turbine", "max_concurrent": 4,
              "step_k8s_config": {"container_config": {"resources": {"requests": {"cpu": "2"}}}}}}}
print(json.dumps({
    "executor": job.executor_def.name,
    "run_config_valid": dg.validate_run_config(job, run_config) is not None,
    "run_tag": json.loads(job.run_tags.get("dagster-k8s/config", "null")),
    "op_tags": {node.name: json.loads(node.definition.tags.get("dagster-k8s/config", "null"))
                for node in job.graph.nodes},
    "resources": sorted(training.resources),
}))
"""


@pytest.fixture(scope="module")
def production():
    env = {**os.environ, **PRODUCTION_ENV}
    output = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


EXPECTED_GPU_REQUEST = {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "2"}}},
    "pod_spec_config": {
        "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}


def test_production_definitions_run_steps_with_the_k8s_job_executor(production):
    assert production["executor"] == "k8s"
    assert production["run_config_valid"]
    assert "s3" in production["resources"]


def test_only_the_model_steps_request_gpus_through_op_tags(production):
    op_tags = production["op_tags"]
    assert {step for step, tag in op_tags.items() if tag is not None} == {"tf_model", "catboost_model"}
    for step in ("tf_model", "catboost_model"):
        assert op_tags[step] == EXPECTED_GPU_REQUEST


def test_the_run_pod_requests_no_gpu(production):
    assert production["run_tag"] is None


def test_production_refuses_local_roots():
    env = {**os.environ, **PRODUCTION_ENV, "TURBINE_STORAGE_ROOT": "/tmp/storage"}
    completed = subprocess.run(
        [sys.executable, "-c", "import turbine_dagster.locations.training"], env=env, capture_output=True, text=True
    )
    assert completed.returncode != 0
    assert "TURBINE_ENV=production needs TURBINE_STORAGE_ROOT to be an s3:// URI" in completed.stderr


# --- the run pod of each location, as K8sRunLauncher builds it from deploy/dagster.yaml ---------------

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: test, user: {token: not-a-real-token}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
"""
LOAD_THE_INSTANCE_AS_A_RUN_WORKER = """
import sys
from dagster import DagsterInstance
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import deserialize_value

args = deserialize_value(sys.argv[1], ExecuteRunArgs)
with DagsterInstance.from_ref(args.instance_ref) as instance:
    print(instance.get_run_by_id(args.run_id).job_name)
"""


class RecordingKubernetesClient:
    """Stands in for the launcher's API client: keeps the Job instead of creating it."""

    def __init__(self):
        self.jobs = []

    def create_namespaced_job_with_retries(self, body, namespace):
        self.jobs.append((namespace, body))


def code_server_container_contexts() -> dict[str, dict]:
    """Each code server's DAGSTER_CONTAINER_CONTEXT, from deploy/kubernetes/code-servers.yaml."""
    contexts = {}
    for document in yaml.safe_load_all((DEPLOY_DIR / "kubernetes" / "code-servers.yaml").read_text()):
        if document["kind"] == "Deployment":
            (container,) = document["spec"]["template"]["spec"]["containers"]
            env = {entry["name"]: entry.get("value") for entry in container["env"]}
            contexts[document["metadata"]["name"]] = json.loads(env["DAGSTER_CONTAINER_CONTEXT"])
    return contexts


@pytest.fixture
def launching_instance(tmp_path, deploy_instance_config, postgres_db, monkeypatch):
    """The daemon's instance: deploy/dagster.yaml on the test Postgres, with a kubeconfig instead of the cluster's."""
    import dagster as dg

    daemon_environment = {
        **postgres_db.environment(),
        "TURBINE_COMPUTE_LOG_BUCKET": "turbine-dagster-logs",
        "TURBINE_COMPUTE_LOG_PREFIX": "turbine/compute-logs",
        "AWS_REGION": "eu-central-1",
    }
    for name, value in daemon_environment.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    launcher = deploy_instance_config["run_launcher"]
    config = {
        **deploy_instance_config,
        "run_launcher": {
            **launcher,
            "config": {
                **launcher["config"],
                "load_incluster_config": False,
                "kubeconfig_file": str(tmp_path / "kubeconfig"),
            },
        },
    }
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.run_launcher._api_client = RecordingKubernetesClient()
        yield instance


def launch_run_pod(instance, location: str, module: str, job_name: str, container_context: dict):
    """The Job K8sRunLauncher creates for a run of ``location``: launch_run with the Kubernetes API recorded."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.launcher import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster._core.utils import make_new_run_id

    origin = JobPythonOrigin(
        job_name,
        RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python",
            code_pointer=ModuleCodePointer(module, "defs", working_directory=None),
            container_image=f"registry.example.com/{location}:test",
            container_context=container_context,
        ),
    )
    run = instance.add_run(DagsterRun(job_name=job_name, run_id=make_new_run_id(), job_code_origin=origin))
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    namespace, job = instance.run_launcher._api_client.jobs[-1]
    (container,) = job.spec.template.spec.containers
    return namespace, container


def pod_environment(container, cluster: dict[str, dict[str, str]]) -> dict[str, str]:
    """What the container sees: its env, then its env_from sources looked up in ``cluster`` (ConfigMaps and
    Secrets by name), as the kubelet resolves them; explicit env wins."""
    environment = {}
    for source in container.env_from or []:
        reference = source.config_map_ref or source.secret_ref
        environment.update(cluster[reference.name])
    for variable in container.env:
        if variable.value is not None:
            environment[variable.name] = variable.value
        else:
            secret = variable.value_from.secret_key_ref
            environment[variable.name] = cluster[secret.name][secret.key]
    return environment


@pytest.mark.parametrize(
    ("location", "job_name", "own_secret", "other_secret"),
    [
        ("turbine-training", "training_pipeline", "turbine-aws-training", "turbine-aws-prediction"),
        ("turbine-prediction", "prediction_pipeline", "turbine-aws-prediction", "turbine-aws-training"),
    ],
)
def test_a_run_pod_loads_the_instance_with_its_own_environment_and_its_locations_keys_only(
    launching_instance, postgres_db, location, job_name, own_secret, other_secret
):
    module = f"turbine_dagster.locations.{location.removeprefix('turbine-')}"
    context = code_server_container_contexts()[location]
    namespace, container = launch_run_pod(launching_instance, location, module, job_name, context)
    cluster = {  # the ConfigMaps and Secrets deploy/README.md has you create
        "turbine-env": {"TURBINE_ENV": "production"},
        "turbine-postgresql": {"postgresql-password": postgres_db.server.password},
        "turbine-aws": {"AWS_REGION": "eu-central-1"},
        own_secret: {"AWS_ACCESS_KEY_ID": "own", "AWS_SECRET_ACCESS_KEY": "own"},
        other_secret: {"AWS_ACCESS_KEY_ID": "other", "AWS_SECRET_ACCESS_KEY": "other"},
    }
    secrets = [source.secret_ref.name for source in container.env_from if source.secret_ref]
    assert namespace == "turbine" and secrets == ["turbine-aws", own_secret]

    environment = pod_environment(container, cluster)
    assert {name: environment[name] for name in postgres_db.environment()} == postgres_db.environment()
    worker = subprocess.run(
        [sys.executable, "-c", LOAD_THE_INSTANCE_AS_A_RUN_WORKER, container.args[-1]],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert worker.stdout.strip().splitlines()[-1] == job_name
