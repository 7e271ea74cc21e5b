import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from turbine_dagster.core.evaluation.selection import GateDecision
from turbine_dagster.core.models.catboost_model import train_catboost_model
from turbine_dagster.core.models.checkpoints import VALIDATION_METRICS, Checkpoint, save_checkpoints
from turbine_dagster.core.models.interface import predict_malignant_proba
from turbine_dagster.core.models.params import CatBoostSearchParams, TFTrainingParams
from turbine_dagster.core.models.tf_model import train_tf_model
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.core.registry.versions import (
    RegistryLookupError,
    model_reference,
    scoring_threshold,
)
from turbine_dagster.core.schema import MALIGNANT, TARGET

TEAM = "team_a"
# Early stopping ends this run after 5 of 12 epochs (best epoch 2), so epoch 12 is never reached.
TF_PARAMS = TFTrainingParams(
    hidden_units=(16, 8), epochs=12, learning_rate=0.05, patience=3, checkpoint_epochs=(4, 2, 12)
)
# The final fit stops after 28 of 60 trees (best: 18), so 60 trees are never reached.
CATBOOST_PARAMS = CatBoostSearchParams(
    param_grid={"depth": [3], "learning_rate": [0.3]},
    cv_folds=2,
    iterations=60,
    early_stopping_rounds=10,
    thread_count=2,
    checkpoint_iterations=(10, 5, 60),
)


@pytest.fixture(scope="module")
def tf_result(split):
    return train_tf_model(*split, TF_PARAMS)


@pytest.fixture(scope="module")
def catboost_result(split):
    return train_catboost_model(*split, CATBOOST_PARAMS)


def register(registry: ModelRegistry, result, train: pd.DataFrame, checkpoints=None):
    return registry.register(
        TEAM,
        result.model,
        threshold=0.3,
        metrics={"malignant_recall": 0.97},
        partition=f"{TEAM}|2026-11-23",
        run_id="run",
        data_version="d1",
        reference=train,
        checkpoints=result.checkpoints if checkpoints is None else checkpoints,
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tf_result, catboost_result, split) -> ModelRegistry:
    """v0001: Keras with checkpoints, serving; v0002: CatBoost with checkpoints; v0003: CatBoost without."""
    registry = ModelRegistry(str(tmp_path_factory.mktemp("registry")))
    train, _ = split
    register(registry, tf_result, train)
    registry.promote_if(TEAM, 1, lambda serving: GateDecision(True, "first"))
    register(registry, catboost_result, train)
    register(registry, catboost_result, train, checkpoints=[])
    return registry


def ids(checkpoints) -> list[str]:
    return [checkpoint.checkpoint_id for checkpoint in checkpoints]


def test_keras_keeps_the_configured_epochs_it_reached_and_the_best(tf_result):
    assert tf_result.epochs_run < 12  # early stopping: epoch 12 has no checkpoint
    assert ids(tf_result.checkpoints) == ["epoch-0002", "epoch-0004", "best"]
    assert [checkpoint.step for checkpoint in tf_result.checkpoints] == [2, 4, tf_result.best_epoch]
    assert tf_result.checkpoints[-1].model is tf_result.model


def test_keras_checkpoint_metrics_are_those_of_their_epoch(tf_result, split):
    _, validation = split
    is_malignant = (validation[TARGET] == MALIGNANT).to_numpy()

    for checkpoint in tf_result.checkpoints:
        assert set(checkpoint.metrics) == set(VALIDATION_METRICS)
        assert checkpoint.metrics["val_loss"] == tf_result.history["val_loss"][checkpoint.step - 1]
        assert checkpoint.metrics["val_roc_auc"] == roc_auc_score(is_malignant, checkpoint.validation_p_malignant)
        assert 0 < checkpoint.threshold < 1


def test_keras_checkpoints_do_not_change_the_training(tf_result, split):
    without = train_tf_model(*split, TFTrainingParams(**{**TF_PARAMS.__dict__, "checkpoint_epochs": ()}))

    assert without.history == tf_result.history
    assert ids(without.checkpoints) == ["best"]


def test_catboost_keeps_snapshots_at_the_configured_tree_counts_it_reached_and_the_best(catboost_result):
    assert ids(catboost_result.checkpoints) == ["iteration-0005", "iteration-0010", "best"]
    assert [checkpoint.model.tree_count_ for checkpoint in catboost_result.checkpoints] == [
        checkpoint.step for checkpoint in catboost_result.checkpoints
    ]
    best = catboost_result.checkpoints[-1]
    assert best.model is catboost_result.model
    assert best.step == catboost_result.model.tree_count_ == catboost_result.best_iteration + 1
    assert all(best.metrics["val_loss"] <= checkpoint.metrics["val_loss"] for checkpoint in catboost_result.checkpoints)


@pytest.mark.parametrize("version", [1, 2], ids=["keras", "catboost"])
def test_registered_checkpoints_reload_to_the_predictions_recorded_in_training(
    registry, version, tf_result, catboost_result, split
):
    _, validation = split
    recorded = {1: tf_result, 2: catboost_result}[version].checkpoints

    for checkpoint in recorded:
        model_version, stored = registry.resolve(TEAM, f"v{version:04d}", checkpoint.checkpoint_id)
        reloaded = registry.load_model(model_version, stored)
        np.testing.assert_array_equal(
            predict_malignant_proba(reloaded, validation),
            checkpoint.validation_p_malignant,
            err_msg=f"v{version:04d} {checkpoint.checkpoint_id}",
        )
        assert {**stored.to_dict(), "artifact_uri": None} == checkpoint.to_dict()  # id, step, metrics, threshold


def test_checkpoints_are_native_files_under_the_version_listed_in_its_entry(registry, tf_result):
    folder = registry.root / TEAM / "versions" / "v0001"
    entry = json.loads((folder / "entry.json").read_text())

    assert [item["checkpoint_id"] for item in entry["checkpoints"]] == ["epoch-0002", "epoch-0004", "best"]
    assert entry["checkpoints"][0] == {
        **tf_result.checkpoints[0].to_dict(),
        "artifact_uri": str(folder / "checkpoints" / "epoch-0002.keras"),
    }
    assert sorted(path.name for path in (folder / "checkpoints").iterdir()) == [
        "best.keras",
        "epoch-0002.keras",
        "epoch-0004.keras",
    ]


def test_checkpoints_handed_over_as_files_and_json_register_unchanged(tmp_path, catboost_result, split):
    train, validation = split
    saved = save_checkpoints(catboost_result.checkpoints, tmp_path / "staging")
    handed_over = [Checkpoint.from_dict(json.loads(json.dumps(checkpoint.to_dict()))) for checkpoint in saved]
    registry = ModelRegistry(str(tmp_path / "registry"))

    version = register(registry, catboost_result, train, checkpoints=handed_over)

    for checkpoint, recorded in zip(version.checkpoints, catboost_result.checkpoints, strict=True):
        assert checkpoint.artifact_uri.startswith(str(registry.root / TEAM / "versions" / "v0001" / "checkpoints"))
        np.testing.assert_array_equal(
            predict_malignant_proba(registry.load_model(version, checkpoint.checkpoint_id), validation),
            recorded.validation_p_malignant,
        )


def test_resolve_defaults_to_the_serving_version_and_its_own_model(registry):
    version, checkpoint = registry.resolve(TEAM)

    assert (version.label, checkpoint) == ("v0001", None)
    assert model_reference(version) == "v0001" and scoring_threshold(version) == 0.3


def test_resolve_accepts_numbers_and_labels_and_names_the_checkpoint(registry, catboost_result):
    for reference in (2, "2", "v0002"):
        version, checkpoint = registry.resolve(TEAM, reference, "iteration-0005")
        assert (version.version, checkpoint.step) == (2, 5)
    assert model_reference(version, checkpoint) == "v0002/iteration-0005"
    assert scoring_threshold(version, checkpoint) == catboost_result.checkpoints[0].threshold


def test_the_default_challenger_is_the_newest_version_that_does_not_serve(registry, tmp_path):
    assert registry.newest_not_serving(TEAM).label == "v0003"
    assert ModelRegistry(str(tmp_path / "empty")).newest_not_serving(TEAM) is None


def test_an_unknown_version_lists_every_version_with_its_checkpoints(registry):
    with pytest.raises(RegistryLookupError) as raised:
        registry.resolve(TEAM, "v0009", "best")

    assert str(raised.value) == (
        f"team 'team_a' has no version v0009 in {registry.root}; available: "
        "v0001 (checkpoints: epoch-0002, epoch-0004, best), "
        "v0002 (checkpoints: iteration-0005, iteration-0010, best), v0003 (no checkpoints)"
    )


def test_an_unknown_checkpoint_lists_the_checkpoints_of_the_version(registry):
    with pytest.raises(
        RegistryLookupError,
        match=r"v0001 of team 'team_a' has no checkpoint 'epoch-0012'; its "
        r"checkpoints: epoch-0002 \(epoch 2\), epoch-0004 \(epoch 4\), best",
    ):
        registry.resolve(TEAM, 1, "epoch-0012")
    with pytest.raises(
        RegistryLookupError,
        match="v0003 of team 'team_a' has no checkpoint 'best'; it was registered without checkpoints",
    ):
        registry.resolve(TEAM, "v0003", "best")


def test_without_a_serving_version_resolve_lists_the_versions_to_name(tmp_path, catboost_result, split):
    registry = ModelRegistry(str(tmp_path / "registry"))
    register(registry, catboost_result, split[0], checkpoints=[])

    with pytest.raises(RegistryLookupError, match=r"no serving version .*name one of its versions: v0001 \(no "):
        registry.resolve(TEAM)


def test_a_checkpoint_of_another_model_kind_is_refused_before_anything_is_written(
    tmp_path, tf_result, catboost_result, split
):
    registry = ModelRegistry(str(tmp_path / "registry"))

    with pytest.raises(
        ValueError,
        match="checkpoint 'epoch-0002' for team 'team_a' holds a tensorflow model, but the version's model is catboost",
    ):
        register(registry, catboost_result, split[0], checkpoints=tf_result.checkpoints[:1])
    assert not (registry.root / TEAM).exists()


def test_checkpoint_steps_beyond_the_training_length_are_refused():
    with pytest.raises(ValueError, match=r"checkpoint_epochs \[30\] lie outside 1..20 \(epochs=20\)"):
        TFTrainingParams(epochs=20, checkpoint_epochs=[5, 30])
    with pytest.raises(ValueError, match=r"checkpoint_iterations \[0\] lie outside 1..100 \(iterations=100\)"):
        CatBoostSearchParams(iterations=100, checkpoint_iterations=(0,))


def test_configured_steps_are_sorted_without_repeats():
    assert TFTrainingParams(epochs=20, checkpoint_epochs=[10, 5, 10]).checkpoint_epochs == (5, 10)


def test_on_s3_checkpoints_are_stored_and_reload_as_locally(s3_environment, catboost_result, split):
    from turbine_dagster_tests.conftest import create_bucket

    create_bucket("checkpoints")
    train, validation = split
    staged = save_checkpoints(catboost_result.checkpoints[:1], "s3://checkpoints/staging")  # handed over as a file
    registry = ModelRegistry("s3://checkpoints/registry")

    version = register(registry, catboost_result, train, checkpoints=[*staged, catboost_result.checkpoints[-1]])

    assert [checkpoint.artifact_uri for checkpoint in registry.get(TEAM, 1).checkpoints] == [
        "s3://checkpoints/registry/team_a/versions/v0001/checkpoints/iteration-0005.cbm",
        "s3://checkpoints/registry/team_a/versions/v0001/checkpoints/best.cbm",
    ]
    for checkpoint_id, recorded in (
        ("iteration-0005", catboost_result.checkpoints[0]),
        ("best", catboost_result.checkpoints[-1]),
    ):
        np.testing.assert_array_equal(
            predict_malignant_proba(registry.load_model(version, checkpoint_id), validation),
            recorded.validation_p_malignant,
        )
