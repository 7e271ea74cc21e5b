"""deploy/iam on moto's S3 with IAM enforcement on: each component can do its work with its own policy, and no more.

Each component gets an IAM user with its policy file as is. Data is seeded with enforcement off; everything
else runs with it on (``/moto-api/reset-auth``), as one component. Moto evaluates actions and resources,
wildcards, Allow and Deny; it evaluates no condition keys (the policies use none). Buckets, roots and the
compute-log prefix are the ones deploy/helm/values.yaml configures.
"""

import dataclasses
import json
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from upath import UPath

from turbine_dagster.core.evaluation.selection import GateDecision
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.settings import Settings
from turbine_dagster_tests.conftest import create_bucket, set_s3_environment
from turbine_dagster_tests.deploy.conftest import DEPLOY_DIR, load_yaml

COMPONENTS = ("training", "prediction", "webserver", "daemon")
TEAM = "team_b"  # not the team test_s3_production uses in the same buckets


def helm_setting(name: str) -> str:
    values = load_yaml(DEPLOY_DIR / "helm" / "values.yaml")
    (training,) = [d for d in values["dagster-user-deployments"]["deployments"] if d["name"] == "turbine-training"]
    return {entry["name"]: entry["value"] for entry in training["env"]}[name]


LANDING_ROOT, STORAGE_ROOT = helm_setting("TURBINE_LANDING_ROOT"), helm_setting("TURBINE_STORAGE_ROOT")
_LOGS = load_yaml(DEPLOY_DIR / "helm" / "values.yaml")["computeLogManager"]["config"]["s3ComputeLogManager"]
LOG_BUCKET, LOG_PREFIX = _LOGS["bucket"], _LOGS["prefix"]


@dataclasses.dataclass(frozen=True)
class Credentials:
    key: str
    secret: str

    def storage_options(self, endpoint: str) -> dict:
        return {"key": self.key, "secret": self.secret, "endpoint_url": endpoint}


def set_enforcement(server: str, on: bool) -> None:
    # text/plain: a form content type would leave moto's handler an empty body.
    request = urllib.request.Request(
        f"{server}/moto-api/reset-auth",
        data=b"0" if on else b"inf",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request, timeout=10).read()


@contextmanager
def acting_as(server: str, credentials: Credentials, monkeypatch) -> Iterator[None]:
    """IAM enforced, and the AWS SDK's keys (read by the production resources and the log manager) those of one user."""
    import boto3
    import s3fs

    def use(key: str, secret: str) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        s3fs.S3FileSystem.clear_instance_cache()  # clients made with other keys
        boto3.DEFAULT_SESSION = None  # its credentials are resolved once

    use(credentials.key, credentials.secret)
    set_enforcement(server, True)
    try:
        yield
    finally:
        set_enforcement(server, False)
        use("testing", "testing")


@pytest.fixture(scope="module")
def deployment(s3_server, week):
    """IAM users with the policies, demo landing data, and a registry where v0001 served and v0002 serves."""
    import boto3
    import dagster as dg

    from turbine_dagster.core.data.demo import write_demo_data
    from turbine_dagster.defs.resources import production_resources
    from turbine_dagster_tests.defs.helpers import failure_messages
    from turbine_dagster_tests.defs.test_training_assets import FAST_TRAINING, TRAINING_GRAPH

    with pytest.MonkeyPatch.context() as monkeypatch:
        set_s3_environment(monkeypatch, s3_server)
        for bucket in {UPath(LANDING_ROOT).drive, UPath(STORAGE_ROOT).drive, LOG_BUCKET}:
            create_bucket(bucket)
        iam, credentials = boto3.client("iam"), {}
        for component in COMPONENTS:
            user = f"turbine-{component}-{uuid.uuid4().hex[:6]}"
            iam.create_user(UserName=user)
            iam.put_user_policy(
                UserName=user,
                PolicyName=f"turbine-{component}",
                PolicyDocument=(DEPLOY_DIR / "iam" / f"{component}.json").read_text(),
            )
            key = iam.create_access_key(UserName=user)["AccessKey"]
            credentials[component] = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        write_demo_data(UPath(LANDING_ROOT), [TEAM], [week], labeled_rows=400, scoring_rows=300)

        settings = dataclasses.replace(
            Settings.from_env({}), environment="production", landing_root=LANDING_ROOT, storage_root=STORAGE_ROOT
        )
        with acting_as(s3_server, credentials["training"], monkeypatch):
            trained = dg.materialize(
                TRAINING_GRAPH,
                partition_key=f"{TEAM}|{week}",
                resources=production_resources(settings),
                run_config={"ops": FAST_TRAINING},
                raise_on_error=False,
            )
            registry = ModelRegistry(f"{STORAGE_ROOT}/registry")
            if trained.success:  # a second version, promoted: v0001 becomes one that served
                first = registry.serving(TEAM)
                second = registry.register(
                    TEAM,
                    registry.load_model(first),
                    threshold=first.threshold,
                    metrics=first.metrics,
                    partition=first.partition,
                    run_id="second",
                    data_version=first.data_version,
                    reference=registry.load_reference(first),
                )
                registry.promote_if(TEAM, second.version, lambda serving: GateDecision(True, "second"))
        yield {
            "server": s3_server,
            "credentials": credentials,
            "settings": settings,
            "training": (trained.success, failure_messages(trained)),
            "monkeypatch": monkeypatch,
        }


def registry_as(deployment, component: str) -> ModelRegistry:
    options = deployment["credentials"][component].storage_options(deployment["server"])
    return ModelRegistry(f"{STORAGE_ROOT}/registry", storage_options=options)


def path_as(deployment, component: str, uri: str) -> UPath:
    return UPath(uri, **deployment["credentials"][component].storage_options(deployment["server"]))


@contextmanager
def enforced_as(deployment, component: str):
    with acting_as(deployment["server"], deployment["credentials"][component], deployment["monkeypatch"]):
        yield


def test_the_training_graph_runs_with_the_training_policy(deployment):
    succeeded, failures = deployment["training"]
    assert succeeded, failures
    with enforced_as(deployment, "training"):
        history = registry_as(deployment, "training").pointer_history(TEAM)
    assert [(move["version"], move["previous_version"]) for move in history] == [(1, None), (2, 1)]


def test_the_prediction_pipeline_runs_with_the_prediction_policy(deployment, week):
    import dagster as dg

    from turbine_dagster.defs.prediction.assets import prediction_assets
    from turbine_dagster.defs.prediction.checks import prediction_checks
    from turbine_dagster.defs.resources import production_resources
    from turbine_dagster_tests.defs.helpers import failure_messages

    with enforced_as(deployment, "prediction"):
        result = dg.materialize(
            [*prediction_assets, *prediction_checks],
            partition_key=f"{TEAM}|{week}",
            resources=production_resources(deployment["settings"]),
            raise_on_error=False,
        )
    assert result.success, failure_messages(result)
    assert {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()} >= {
        "batch_predictions",
        "drift_report",
    }


def test_prediction_reads_the_registry_and_its_models_but_cannot_change_them(deployment):
    def promote(serving):
        return GateDecision(True, "try")

    with enforced_as(deployment, "prediction"):
        registry = registry_as(deployment, "prediction")
        serving = registry.serving(TEAM)
        assert serving.version == 2 and registry.load_model(serving) is not None
        with pytest.raises(PermissionError):
            registry.promote_if(TEAM, 1, promote)
        with pytest.raises(PermissionError):
            registry.rollback(TEAM, 1, reason="prediction must not do this")
        with pytest.raises(PermissionError):
            registry.register(
                TEAM,
                registry.load_model(serving),
                threshold=0.5,
                metrics={},
                partition=None,
                run_id=None,
                data_version=None,
                reference=registry.load_reference(serving),
            )
        with pytest.raises(PermissionError):
            path_as(deployment, "prediction", serving.artifact_uri).write_bytes(b"not a model")
        with pytest.raises(PermissionError):
            path_as(deployment, "prediction", serving.artifact_uri).fs.rm_file(serving.artifact_uri)
        assert registry.serving(TEAM).version == 2
        assert [e["kind"] for e in registry.events(TEAM)][-1] == "promoted"


@pytest.mark.parametrize(
    ("component", "uri"),
    [
        ("prediction", f"{LANDING_ROOT}/team={TEAM}/week=2026-01-04/cases.csv"),
        ("prediction", f"{STORAGE_ROOT}/assets/tf_model/{TEAM}/2026-01-04.keras"),
        ("prediction", f"{STORAGE_ROOT}/checkpoints/team={TEAM}/week=2026-01-04/epoch-0001.keras"),
        ("training", f"{LANDING_ROOT}/team={TEAM}/week=2026-01-04/cases.csv"),
        ("training", f"{STORAGE_ROOT}/predictions/team={TEAM}/week=2026-01-04/predictions.parquet"),
        ("training", f"{STORAGE_ROOT}/assets/drift_report/{TEAM}/2026-01-04.json"),
        ("webserver", f"{STORAGE_ROOT}/registry/{TEAM}/serving.json"),
        ("daemon", f"{STORAGE_ROOT}/registry/{TEAM}/serving.json"),
    ],
)
def test_no_component_writes_outside_its_own_prefixes(deployment, component, uri):
    with enforced_as(deployment, component), pytest.raises(PermissionError):
        path_as(deployment, component, uri).write_bytes(b"{}")


def test_the_webserver_and_the_daemon_cannot_read_models(deployment):
    for component in ("webserver", "daemon"):
        with enforced_as(deployment, component), pytest.raises(PermissionError):
            path_as(deployment, component, f"{STORAGE_ROOT}/registry/{TEAM}/serving.json").read_bytes()


def test_compute_logs_are_written_by_runs_sensors_and_backfills_and_read_by_the_webserver_only(deployment, tmp_path):
    import boto3
    from botocore.exceptions import ClientError
    from dagster._core.storage.compute_log_manager import ComputeIOType
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    def manager():
        return S3ComputeLogManager(
            bucket=LOG_BUCKET,
            prefix=LOG_PREFIX,
            local_dir=str(tmp_path / uuid.uuid4().hex),
            endpoint_url=deployment["server"],
        )

    written = {}
    for component in ("training", "prediction", "daemon"):
        log_key = [uuid.uuid4().hex, "compute_logs", component]
        with enforced_as(deployment, component):
            with manager().open_log_stream(log_key, ComputeIOType.STDERR) as stream:
                stream.write(f"written by {component}\n")
            key = f"{LOG_PREFIX}/storage/{'/'.join(log_key)}.err"
            with pytest.raises(ClientError, match="AccessDenied"):
                boto3.client("s3").get_object(Bucket=LOG_BUCKET, Key=key)
        written[component] = log_key

    with enforced_as(deployment, "webserver"):
        for component, log_key in written.items():
            assert manager().get_log_data(log_key).stderr == f"written by {component}\n".encode()
        with pytest.raises(ClientError, match="AccessDenied"):
            boto3.client("s3").put_object(Bucket=LOG_BUCKET, Key=f"{LOG_PREFIX}/storage/forged.err", Body=b"x")


def test_every_policy_names_only_the_configured_buckets_and_prefixes():
    allowed = {
        f"arn:aws:s3:::{UPath(LANDING_ROOT).drive}",
        f"arn:aws:s3:::{UPath(STORAGE_ROOT).drive}",
        f"arn:aws:s3:::{LOG_BUCKET}",
    }
    prefixes = tuple(f"arn:aws:s3:::{root.removeprefix('s3://')}/" for root in (LANDING_ROOT, STORAGE_ROOT)) + (
        f"arn:aws:s3:::{LOG_BUCKET}/{LOG_PREFIX}/",
    )
    for component in COMPONENTS:
        policy = json.loads((DEPLOY_DIR / "iam" / f"{component}.json").read_text())
        for statement in policy["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all(r in allowed or r.startswith(prefixes) for r in resources), (component, statement["Sid"])
            assert "*" not in statement["Action"] and not any(a.endswith(":*") for a in statement["Action"])


def test_the_prediction_policy_covers_exactly_the_prediction_locations_assets():
    from turbine_dagster.defs.prediction.assets import prediction_assets

    keys = {key.to_user_string() for asset in prediction_assets for key in asset.keys}
    # batch_predictions writes under predictions/ itself; the others go through the IO manager under assets/.
    assert keys == {"batch_predictions", "drift_report", "challenger_comparison"}
    assets = f"arn:aws:s3:::{STORAGE_ROOT.removeprefix('s3://')}/assets"
    io_managed = {f"{assets}/{key}/*" for key in keys - {"batch_predictions"}}
    prediction = json.loads((DEPLOY_DIR / "iam" / "prediction.json").read_text())
    training = json.loads((DEPLOY_DIR / "iam" / "training.json").read_text())
    (writes,) = [s for s in prediction["Statement"] if s["Sid"] == "WritePredictionsAndMonitoring"]
    (denied,) = [s for s in training["Statement"] if s["Effect"] == "Deny"]
    assert io_managed <= set(writes["Resource"]) and set(denied["Resource"]) == io_managed
