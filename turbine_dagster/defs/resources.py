"""Resource sets: the only place where local and production differ.

``TURBINE_ENV`` (read once in ``turbine_dagster.settings``) picks the set; assets ask for resources
by type and never know which set they got.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field
from upath import UPath

from turbine_dagster.core.data import landing
from turbine_dagster.core.data.history import ParseCache
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.defs.environment import SETTINGS
from turbine_dagster.defs.io_managers import ArtifactIOManager
from turbine_dagster.defs.object_store import s3fs_options
from turbine_dagster.settings import Settings

GPU_POOL = "gpu"
K8S_CONFIG_TAG = "dagster-k8s/config"


def gpu_k8s_config(settings: Settings = SETTINGS) -> dict[str, Any]:
    """The Kubernetes request of a model step: the GPUs it trains on (TensorFlow mirrors across all it sees,
    CatBoost trains on all it sees), and the node pool that has them.

    Ignored by the local executors; read from op tags by ``k8s_job_executor``, which runs every step in its
    own pod. The run pod (``K8sRunLauncher``, from run tags) only orchestrates and asks for no GPU.
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
    parse_cache_root: str | None = Field(
        None,
        description="Where labeled files, once parsed, are kept and reused while unchanged (a folder or an s3:// "
        "URI); unset: every load parses every file.",
    )
    s3: S3Resource | None = Field(None, description="S3 connection settings when the root is an s3:// URI.")

    def path(self) -> UPath:
        return landing.root_path(self.root, s3fs_options(self.s3))

    def parse_cache(self) -> ParseCache | None:
        """A parse cache for one load (it records what that load reused and parsed); None when none is set."""
        if self.parse_cache_root is None:
            return None
        return ParseCache(landing.root_path(self.parse_cache_root, s3fs_options(self.s3)))


class ModelRegistryResource(dg.ConfigurableResource):
    """Versioned models per team with a serving pointer; the only thing the prediction side reads."""

    root: str = Field(description="Registry root: a folder or an s3:// URI.")
    s3: S3Resource | None = Field(None, description="S3 connection settings when the root is an s3:// URI.")

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.root, s3fs_options(self.s3))


class PartitionFolders(dg.ConfigurableResource):
    """Files an asset writes itself (predictions, checkpoints), in a hive layout per team and week."""

    root: str = Field(description="A folder or an s3:// URI.")
    s3: S3Resource | None = Field(None, description="S3 connection settings when the root is an s3:// URI.")

    def team_folder(self, team: str, *within: str) -> UPath:
        return UPath(self.root, **s3fs_options(self.s3)).joinpath(*within) / f"team={landing.validate_team(team)}"

    def folder(self, team: str, week: str, *within: str) -> UPath:
        return self.team_folder(team, *within) / f"week={landing.validate_week(week)}"


def storage_resources(settings: Settings, s3: S3Resource | None = None) -> dict[str, Any]:
    """Landing zone, registry and asset storage under the configured roots, over S3 when ``s3`` is given. Parsed
    landing files are cached beside the assets (``assets/parse-cache``: no asset key holds a '-'), where the
    training location may write."""
    artifacts = f"{settings.storage_root}/assets"
    return {
        "landing_zone": LandingZone(root=settings.landing_root, parse_cache_root=f"{artifacts}/parse-cache", s3=s3),
        "registry": ModelRegistryResource(root=f"{settings.storage_root}/registry", s3=s3),
        "prediction_store": PartitionFolders(root=f"{settings.storage_root}/predictions", s3=s3),
        "checkpoint_store": PartitionFolders(root=f"{settings.storage_root}/checkpoints", s3=s3),
        "io_manager": ArtifactIOManager(base_path=artifacts, file_format="parquet", s3=s3),
        "json_io_manager": ArtifactIOManager(base_path=artifacts, file_format="json", s3=s3),
        "keras_io_manager": ArtifactIOManager(base_path=artifacts, file_format="keras", s3=s3),
        "catboost_io_manager": ArtifactIOManager(base_path=artifacts, file_format="cbm", s3=s3),
        "logistic_io_manager": ArtifactIOManager(base_path=artifacts, file_format="logreg", s3=s3),
    }


def local_resources(settings: Settings) -> dict[str, Any]:
    """The embedded default: local folders (or s3:// roots reached with the default AWS settings)."""
    return storage_resources(settings)


def production_resources(settings: Settings) -> dict[str, Any]:
    """Everything on S3; endpoint, region and credentials come from the environment only."""
    s3 = S3Resource(
        endpoint_url=dg.EnvVar("TURBINE_S3_ENDPOINT_URL"),
        region_name=dg.EnvVar("AWS_REGION"),
        aws_access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
    )
    for name, root in (
        ("TURBINE_LANDING_ROOT", settings.landing_root),
        ("TURBINE_STORAGE_ROOT", settings.storage_root),
    ):
        if not root.startswith("s3://"):
            raise ValueError(f"TURBINE_ENV=production needs {name} to be an s3:// URI, got {root!r}")
    return {**storage_resources(settings, s3), "s3": s3}


def resources_for(settings: Settings) -> dict[str, Any]:
    return production_resources(settings) if settings.environment == "production" else local_resources(settings)


def executor_for(settings: Settings, preload_modules: Sequence[str]) -> dg.ExecutorDefinition:
    """Production runs each step in its own Kubernetes pod. Locally Dagster's default executor, whose multiprocess
    mode (the default; ``in_process`` stays selectable in the run config) here starts step processes with
    ``forkserver``: each is forked from a server that imported ``preload_modules`` once per run, where a spawned
    process paid Python, Dagster and TensorFlow start-up for every step (4–7 s each)."""
    if settings.environment == "production":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    forkserver = {"forkserver": {"preload_modules": list(preload_modules)}}

    def forkserver_unless_chosen(config: dict) -> dict:
        if "multiprocess" in config:
            return {"multiprocess": {"start_method": forkserver, **config["multiprocess"]}}
        return config

    default = dg.multi_or_in_process_executor
    return default.configured(
        forkserver_unless_chosen,
        config_schema=dg.Field(
            default.config_schema.config_type, default_value={"multiprocess": {}}, is_required=False
        ),
    )
