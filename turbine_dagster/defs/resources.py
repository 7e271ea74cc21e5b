"""Resource sets: the only place where local and production differ.

``TURBINE_ENV`` (read once in ``turbine_dagster.settings``) picks the set; assets ask for resources
by type and never know which set they got.
"""

from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath

from turbine_dagster.core import landing
from turbine_dagster.core.registry import ModelRegistry
from turbine_dagster.defs.io_managers import ArtifactIOManager
from turbine_dagster.defs.environment import SETTINGS
from turbine_dagster.settings import Settings

GPU_POOL = "gpu"
K8S_CONFIG_TAG = "dagster-k8s/config"


def gpu_k8s_config(settings: Settings = SETTINGS) -> dict[str, Any]:
    """The Kubernetes request of a training step: GPUs, and the node pool that has them.

    Ignored by the local executors; read from op tags by ``k8s_job_executor`` and from run tags by
    ``K8sRunLauncher`` (each reads only its own: dagster#22865, #26720), so both carry it.
    """
    gpus = str(settings.gpus_per_training_step)
    pod_spec: dict[str, Any] = {}
    if settings.gpu_node_selector:
        pod_spec["node_selector"] = dict(settings.gpu_node_selector)
    if settings.gpu_tolerations:
        pod_spec["tolerations"] = list(settings.gpu_tolerations)
    config: dict[str, Any] = {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}}}
    }
    if pod_spec:
        config["pod_spec_config"] = pod_spec
    return config


def gpu_op_tags(settings: Settings = SETTINGS) -> dict[str, Any]:
    return {K8S_CONFIG_TAG: gpu_k8s_config(settings)}


class LandingZone(dg.ConfigurableResource):
    """Where teams land labeled and scoring case files (hive layout: team=<t>/week=<YYYY-MM-DD>)."""

    root: str = Field(description="Landing root: a folder or an s3:// URI.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options, e.g. an S3 endpoint.")

    def path(self) -> UPath:
        return landing.root_path(self.root, self.storage_options)


class ModelRegistryResource(dg.ConfigurableResource):
    """Versioned models per team with a serving pointer; the only thing the prediction side reads."""

    root: str = Field(description="Registry root: a folder or an s3:// URI.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options, e.g. an S3 endpoint.")

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.root, self.storage_options)


def local_resources(settings: Settings) -> dict[str, Any]:
    artifacts = f"{settings.storage_root}/assets"
    return {
        "landing_zone": LandingZone(root=settings.landing_root),
        "registry": ModelRegistryResource(root=f"{settings.storage_root}/registry"),
        "io_manager": ArtifactIOManager(base_path=artifacts, file_format="parquet"),
        "json_io_manager": ArtifactIOManager(base_path=artifacts, file_format="json"),
        "keras_io_manager": ArtifactIOManager(base_path=artifacts, file_format="keras"),
        "catboost_io_manager": ArtifactIOManager(base_path=artifacts, file_format="cbm"),
    }


def resources_for(settings: Settings) -> dict[str, Any]:
    return local_resources(settings)
