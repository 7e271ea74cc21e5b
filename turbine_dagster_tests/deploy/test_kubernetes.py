"""The production definitions on Kubernetes: k8s_job_executor for steps, GPU requests on training steps
(op tags, read by the executor) and on training runs (run tags, read by K8sRunLauncher)."""

import json
import os
import subprocess
import sys

import pytest

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
    "run_tag": json.loads(job.run_tags["dagster-k8s/config"]),
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


def test_training_steps_request_gpus_through_op_tags(production):
    op_tags = production["op_tags"]
    for step in ("tf_model", "catboost_model"):
        assert op_tags[step] == EXPECTED_GPU_REQUEST
    assert op_tags["raw_data"] is None and op_tags["tf_evaluation"] is None


def test_training_runs_carry_the_same_request_in_run_tags(production):
    assert production["run_tag"] == EXPECTED_GPU_REQUEST


def test_production_refuses_local_roots():
    env = {**os.environ, **PRODUCTION_ENV, "TURBINE_STORAGE_ROOT": "/tmp/storage"}
    completed = subprocess.run([sys.executable, "-c", "import turbine_dagster.locations.training"], env=env,
                               capture_output=True, text=True)
    assert completed.returncode != 0
    assert "TURBINE_ENV=production needs TURBINE_STORAGE_ROOT to be an s3:// URI" in completed.stderr
