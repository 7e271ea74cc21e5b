"""Code versions: an asset's version follows its own code and defaults, and Dagster's staleness follows versions."""

import dagster as dg
import pytest
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest  # what the webserver's staleStatus reads, without it

from turbine_dagster.defs import code_versions
from turbine_dagster.defs.prediction.assets import prediction_assets
from turbine_dagster.defs.training.champion_assets import champion_assets
from turbine_dagster.defs.training.data_assets import data_assets
from turbine_dagster.defs.training.evaluation_assets import evaluation_assets
from turbine_dagster.defs.training.model_assets import model_assets
from turbine_dagster_tests.conftest import TEAM
from turbine_dagster_tests.defs.helpers import failure_messages, materialize, settings_with_demo_data
from turbine_dagster_tests.defs.test_training_assets import FAST_TRAINING

ASSETS = [*data_assets, *model_assets, *evaluation_assets, *champion_assets, *prediction_assets]
TF_OUTPUTS = {"tf_model", "tf_model_checkpoints", "tf_model_out_of_fold"}
# A change to the FCN block's code: module, old text, new text.
FCN_BLOCK_CHANGE = (
    "turbine_dagster.core.models.fcn",
    'keras.layers.LayerNormalization(name="norm")',
    'keras.layers.LayerNormalization(epsilon=1e-5, name="norm")',
)


def versions(assets) -> dict[str, str]:
    return {key.to_user_string(): version for asset in assets for key, version in asset.code_versions_by_key.items()}


def with_source_changed(monkeypatch, module: str, old: str, new: str) -> None:
    """From now on the code-version machinery reads ``module`` with ``old`` replaced by ``new``."""
    read = code_versions.module_source

    def changed(name: str) -> str:
        text = read(name)
        if name == module:
            assert old in text, f"{old!r} not in {module}"
            text = text.replace(old, new)
        return text

    monkeypatch.setattr(code_versions, "module_source", changed)
    code_versions.clear_cache()


@pytest.fixture(autouse=True)
def fresh_source_cache():
    code_versions.clear_cache()
    yield
    code_versions.clear_cache()


def reversioned(assets) -> list[dg.AssetsDefinition]:
    return [code_versions.versioned(asset) for asset in assets]


def versions_changed_by(monkeypatch, module: str, old: str, new: str) -> set[str]:
    """The assets whose code version changes when ``module`` reads ``new`` where it read ``old``."""
    before = versions(ASSETS)
    with_source_changed(monkeypatch, module, old, new)
    after = versions(reversioned(ASSETS))
    return {key for key in before if before[key] != after[key]}


def test_every_asset_of_both_locations_has_a_code_version():
    from turbine_dagster.locations.prediction import defs as prediction
    from turbine_dagster.locations.training import defs as training

    for defs in (training, prediction):
        graph = defs.resolve_asset_graph()
        unversioned = [
            key.to_user_string() for key in graph.materializable_asset_keys if not graph.get(key).code_version
        ]
        assert not unversioned


def test_versions_are_deterministic():
    before = versions(ASSETS)
    code_versions.clear_cache()
    assert versions(reversioned(ASSETS)) == before
    assert len(set(before.values())) >= 9  # one function, one version: the two evaluations share theirs


def test_a_change_to_the_fcn_block_changes_tf_model_and_nothing_else(monkeypatch):
    assert versions_changed_by(monkeypatch, *FCN_BLOCK_CHANGE) == TF_OUTPUTS


def test_a_changed_model_default_changes_that_model_only(monkeypatch):
    changed = versions_changed_by(
        monkeypatch,
        "turbine_dagster.core.models.params",
        "hidden_units: tuple[int, ...] = (64, 32)",
        "hidden_units: tuple[int, ...] = (128, 64)",
    )
    assert changed == TF_OUTPUTS


def test_a_change_in_shared_core_code_changes_every_asset_that_runs_it(monkeypatch):
    changed = versions_changed_by(
        monkeypatch, "turbine_dagster.core.data.cases", "UNUSUALLY_LARGE_FACTOR = 1.25", "UNUSUALLY_LARGE_FACTOR = 1.5"
    )
    assert "raw_data" in changed and "batch_predictions" in changed  # both flag unusually large values
    assert not changed & {"tf_model", "catboost_model", "tf_evaluation"}


def test_comments_docstrings_and_descriptions_change_no_version(monkeypatch):
    before = versions(ASSETS)
    with_source_changed(
        monkeypatch,
        "turbine_dagster.core.models.fcn",
        "    def build(self, input_shape):\n",
        '    def build(self, input_shape):\n        """Builds."""  # a comment\n',
    )
    assert versions(reversioned(ASSETS)) == before
    with_source_changed(
        monkeypatch,
        "turbine_dagster.defs.training.model_assets",
        'description="Upper bound on epochs; early stopping usually ends sooner. Empty: sized to the data (200 up to "',
        'description="At most this many epochs; empty: by the data (200 up to "',
    )
    assert versions(reversioned(ASSETS)) == before


@pytest.fixture(scope="module")
def materialized_everything(tmp_path_factory, week):
    """The whole graph, data to predictions, materialized once for one partition on a persistent instance."""
    settings = settings_with_demo_data(tmp_path_factory.mktemp("versions"), week, scoring_rows=300)
    with dg.instance_for_test() as instance:
        result = materialize(ASSETS, settings, f"{TEAM}|{week}", instance=instance, run_config={"ops": FAST_TRAINING})
        assert result.success, failure_messages(result)
        yield instance, settings, f"{TEAM}|{week}"


def stale(instance, assets, partition: str) -> set[str]:
    """The assets that Dagster reports unsynced (the UI's "Unsynced"), for one partition."""
    resolver = CachingStaleStatusResolver(instance, AssetGraph.from_assets(assets), LoadingContextForTest(instance))
    keys = {key for asset in assets for key in asset.keys}
    return {key.to_user_string() for key in keys if resolver.get_status(key, partition) == StaleStatus.STALE}


def test_after_a_change_to_the_fcn_block_the_model_and_then_everything_downstream_is_unsynced(
    materialized_everything, monkeypatch
):
    instance, settings, partition = materialized_everything
    assert stale(instance, ASSETS, partition) == set()

    with_source_changed(monkeypatch, *FCN_BLOCK_CHANGE)
    changed = reversioned(ASSETS)
    by_name = {asset.op.name: asset for asset in changed}
    # The model: a new code version. Dagster marks a dependent once the asset it reads has a new data version.
    assert stale(instance, changed, partition) == TF_OUTPUTS

    def rematerialize(*names: str) -> None:
        config = {op: value for op, value in FAST_TRAINING.items() if op in names}
        result = materialize(
            changed,
            settings,
            partition,
            instance=instance,
            run_config={"ops": config},
            selection=[key for name in names for key in by_name[name].keys],
        )
        assert result.success, failure_messages(result)

    unsynced_as_it_propagates = []
    for layer in (
        ["tf_model"],
        ["tf_evaluation", "champion_model"],
        ["serving_champion"],
        ["batch_predictions", "drift_report"],
    ):
        rematerialize(*layer)
        unsynced_as_it_propagates.append(stale(instance, changed, partition))
    assert unsynced_as_it_propagates == [
        {"tf_evaluation", "champion_model"},  # champion_model reads tf_model itself and its evaluation
        {"serving_champion"},
        {"batch_predictions", "drift_report"},
        set(),
    ]  # the data and the other model were never unsynced: their code did not change
