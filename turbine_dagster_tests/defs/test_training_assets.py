import dagster as dg
import pandas as pd
import pytest

from turbine_dagster.core.evaluation.policy import CLINICAL_POLICY
from turbine_dagster.core.evaluation.selection import QualityBars
from turbine_dagster.core.models.logistic_regression import LogisticModel
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.core.schema import BENIGN, FEATURE_COLUMNS, TARGET
from turbine_dagster.core.storage.model_files import load_model
from turbine_dagster.defs.resources import GPU_POOL, K8S_CONFIG_TAG, PartitionFolders, local_resources
from turbine_dagster.defs.training.champion_assets import champion_assets, quality_bars_result
from turbine_dagster.defs.training.data_assets import raw_data, splits
from turbine_dagster.defs.training.evaluation_assets import evaluation_assets
from turbine_dagster.defs.training.model_assets import TFModelConfig, logistic_model, model_assets, tf_model
from turbine_dagster_tests.conftest import TEAM
from turbine_dagster_tests.defs.helpers import (
    asset_metadata,
    column_types,
    failure_messages,
    materialize,
    materialized_keys,
    settings_with_demo_data,
)

FAST_TRAINING = {
    "splits": {"config": {"folds": 3}},
    "tf_model": {"config": {"epochs": 3, "patience": 2, "checkpoint_epochs": [1, 2]}},
    "catboost_model": {
        "config": {
            "iterations": 30,
            "depth": [3],
            "learning_rate": [0.1],
            "l2_leaf_reg": [1.0, 3.0],
            "cv_folds": 2,
            "early_stopping_rounds": 10,
            "checkpoint_iterations": [10],
        }
    },
    "tf_evaluation": {"config": {"n_bootstrap": 100}},
    "catboost_evaluation": {"config": {"n_bootstrap": 100}},
    "logistic_evaluation": {"config": {"n_bootstrap": 100}},
    # The clinical bars hold here as everywhere: the logistic candidate trains fully in a few seconds and clears them.
    "champion_model": {"config": {"n_bootstrap": 100}},
}
TRAINING_GRAPH = [raw_data, splits, *model_assets, *evaluation_assets, *champion_assets]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, week):
    """One materialization of data → models → evaluation, shared by the assertions below."""
    root = tmp_path_factory.mktemp("training")
    settings = settings_with_demo_data(root, week, scoring_rows=0)
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(
            TRAINING_GRAPH, settings, f"{TEAM}|{week}", instance=instance, run_config={"ops": FAST_TRAINING}
        )
        result.tf_model_log = [e.user_message for e in instance.all_logs(result.run_id) if e.step_key == "tf_model"]
    result.settings = settings
    return result, root / "storage" / "assets", week


def test_models_and_evaluations_materialize(trained):
    result, _, _ = trained
    assert result.success, failure_messages(result)
    assert {"tf_model", "catboost_model", "tf_evaluation", "catboost_evaluation"} <= materialized_keys(result)


def test_model_artifacts_are_native_files(trained):
    _, assets, week = trained
    assert (assets / "tf_model" / TEAM / f"{week}.keras").stat().st_size > 0
    assert (assets / "catboost_model" / TEAM / f"{week}.cbm").stat().st_size > 0
    assert (assets / "logistic_model" / TEAM / f"{week}.logreg").stat().st_size > 0
    assert not list(assets.rglob("*.tmp-*")) and not list(assets.rglob(".*"))


def _metadata(result, asset):
    return result.asset_materializations_for_node(asset)[0].metadata


def test_training_metadata_is_complete(trained):
    result, _, _ = trained
    tf_metadata = _metadata(result, "tf_model")
    for key in (
        "param_count",
        "epochs_run",
        "best_epochs",
        "mean_best_val_loss",
        "training_seconds",
        "device",
        "learning_curves",
        "folds",
        "path",
        "artifact_bytes",
    ):
        assert key in tf_metadata
    assert "data:image/png;base64," in tf_metadata["learning_curves"].value
    assert tf_metadata["path"].value.endswith(".keras")
    catboost_metadata = _metadata(result, "catboost_model")
    for key in ("chosen_parameters", "search_rows", "best_iterations", "feature_importance", "device", "path"):
        assert key in catboost_metadata
    assert tf_metadata["folds"].value == catboost_metadata["folds"].value == 3
    chosen = catboost_metadata["chosen_parameters"].value  # one search for all folds
    assert chosen["depth"] == 3 and chosen["l2_leaf_reg"] in (1.0, 3.0)
    assert catboost_metadata["search_rows"].value == asset_metadata(result, "train_split")["dagster/row_count"].value
    assert tf_metadata["batch_size"].value == 32 and tf_metadata["replicas"].value == 1


def test_out_of_fold_tables_carry_their_column_schema_and_row_count(trained):
    result, _, _ = trained
    for model in ("tf_model", "catboost_model", "logistic_model"):
        metadata = asset_metadata(result, f"{model}_out_of_fold")
        types = column_types(metadata)
        assert types["p_malignant"] == "double" and types[TARGET] == "int64" and "fold" in types
        assert metadata["dagster/row_count"].value == asset_metadata(result, "train_split")["dagster/row_count"].value


def test_the_logistic_model_its_checkpoint_out_of_fold_scores_and_evaluation_materialize(trained):
    result, assets, week = trained
    assert {
        "logistic_model",
        "logistic_model_checkpoints",
        "logistic_model_out_of_fold",
        "logistic_evaluation",
    } <= materialized_keys(result)
    model = load_model(assets / "logistic_model" / TEAM / f"{week}.logreg")
    assert isinstance(model, LogisticModel)
    checkpoint = assets.parent / "checkpoints" / "logistic_model" / f"team={TEAM}" / f"week={week}" / "best.logreg"
    assert isinstance(load_model(checkpoint), LogisticModel)
    report = pd.read_json(assets / "logistic_evaluation" / TEAM / f"{week}.json", typ="series")
    assert "malignant" in report["at_operating_threshold"]["classification_report"]


def test_logistic_model_metadata_shows_its_coefficients_and_training(trained):
    result, _, _ = trained
    metadata = _metadata(result, "logistic_model")
    assert metadata["folds"].value == 3 and metadata["training_seconds"].value >= 0
    assert len(metadata["solver_iterations"].value) == 3
    assert metadata["path"].value.endswith(".logreg")
    coefficients = metadata["coefficients"].value
    assert "| feature" in coefficients and "towards" in coefficients and "malignant" in coefficients


def test_only_the_keras_and_catboost_models_hold_a_gpu_slot():
    assert tf_model.op.pool == GPU_POOL and K8S_CONFIG_TAG in tf_model.op.tags
    assert logistic_model.op.pool is None and K8S_CONFIG_TAG not in logistic_model.op.tags


def test_one_log_line_per_epoch(trained):
    result, _, _ = trained
    lines = [m for m in result.tf_model_log if m.startswith("fold ") and " epoch " in m and "val_loss" in m]
    assert len(lines) == _metadata(result, "tf_model")["epochs_run"].value


def test_evaluation_metadata_has_metrics_and_plots(trained):
    result, assets, week = trained
    metadata = _metadata(result, "catboost_evaluation")
    for key in ("malignant_recall", "roc_auc", "pr_auc", "threshold", "metrics"):
        assert key in metadata
    for plot in ("roc_curve", "pr_curve", "confusion_matrix"):
        assert "data:image/png;base64," in metadata[plot].value
    report = pd.read_json(assets / "catboost_evaluation" / TEAM / f"{week}.json", typ="series")
    assert "malignant" in report["at_operating_threshold"]["classification_report"]


def test_single_class_training_split_fails_naming_the_partition(week, tmp_path):
    benign_only = pd.DataFrame({c: [1.0] * 20 for c in FEATURE_COLUMNS})
    benign_only[TARGET] = BENIGN
    benign_only["fold"] = [0, 1] * 10
    resources = {"checkpoint_store": PartitionFolders(root=str(tmp_path))}
    with (
        dg.build_asset_context(partition_key=f"{TEAM}|{week}", resources=resources) as context,
        pytest.raises(dg.Failure, match=rf"tf_model for {TEAM}\|{week}: train split .* has a single class"),
    ):
        list(tf_model(context=context, config=TFModelConfig(epochs=1), train_split=benign_only))


def test_champion_records_both_verdicts_and_plots(trained):
    result, _, _ = trained
    metadata = _metadata(result, "champion_model")
    assert metadata["champion"].value in ("tf_model", "catboost_model", "logistic_model")
    assert set(metadata["verdicts"].value) == {"recall_first", "win_count"}
    assert "malignant recall" in metadata["comparison"].value
    assert metadata["reason"].value.startswith(metadata["champion"].value)
    assert metadata["champion_plots"].value.count("data:image/png;base64,") == 3


def test_first_champion_is_registered_and_serves(trained):
    result, _, week = trained
    registry = ModelRegistry(f"{result.settings.storage_root}/registry")
    serving = registry.serving(TEAM)
    assert serving is not None and serving.version == 1 and serving.partition == f"{TEAM}|{week}"
    assert serving.model_type == _metadata(result, "champion_model")["champion"].value.removesuffix("_model").replace(
        "tf", "tensorflow"
    )
    assert _metadata(result, "serving_champion")["promoted"].value is True
    assert len(registry.load_reference(serving)) > 0


def _bars_champion(evidence_recall: float, holdout_recall: float) -> dict:
    interval = {"point": 0.0, "low": 0.0, "high": 1.0}
    return {
        "champion": "tf_model",
        "metrics": {"malignant_recall": holdout_recall, "roc_auc": 0.99},
        "all_evidence_metrics": {"malignant_recall": evidence_recall, "roc_auc": 0.99},
        "all_evidence_cases": 512,
        "all_evidence_intervals": {"malignant_recall": interval, "roc_auc": interval},
    }


def test_quality_bars_are_judged_on_all_the_evidence_not_the_holdout_alone():
    bars = QualityBars(min_malignant_recall=0.95, min_roc_auc=0.98)
    below = quality_bars_result(_bars_champion(evidence_recall=0.90, holdout_recall=1.0), bars)
    assert not below.passed and "malignant recall 0.9000 is below the bar 0.9500" in below.description
    assert "judged on 512 out-of-fold and holdout cases" in below.description
    # One missed cancer of a small holdout does not decide: the pooled evidence clears the bar.
    passed = quality_bars_result(_bars_champion(evidence_recall=0.98, holdout_recall=0.93), bars)
    assert passed.passed
    assert passed.metadata["holdout_malignant_recall"].value == 0.93 and passed.metadata["cases"].value == 512


def test_champion_records_every_candidate_and_which_one_won(trained):
    result, _, _ = trained
    metadata = _metadata(result, "champion_model")
    table = metadata["candidates"].value
    champion = metadata["champion"].value
    assert f"**{champion}** (champion)" in table
    for candidate in ("tf_model", "catboost_model", "logistic_model"):
        assert f"| {candidate} |" in table or f"**{candidate}**" in table
    registry = ModelRegistry(f"{result.settings.storage_root}/registry")
    version = registry.get(TEAM, metadata["registry_version"].value)
    assert version.metrics["candidate"] == champion
    candidates = version.metrics["candidates_out_of_fold"]
    assert set(candidates) == {"tf_model", "catboost_model", "logistic_model"}
    assert all(0 <= figures["malignant_precision"] <= 1 for figures in candidates.values())
    assert version.metrics["all_evidence_malignant_recall"] == metadata["all_evidence_malignant_recall"].value
    calibration = version.metrics["performance_estimate_calibration"]["calibration"]
    assert calibration["cases"] == 400  # every labeled case: out-of-fold and holdout
    assert metadata["calibration_error"].value == calibration["expected_calibration_error"]


def test_checkpoints_are_registered_with_the_champion_version(trained):
    result, _, _ = trained
    registry = ModelRegistry(f"{result.settings.storage_root}/registry")
    version = registry.serving(TEAM)
    expected = {
        "tensorflow": {"epoch-0001", "epoch-0002", "best"},
        "catboost": {"iteration-0010", "best"},
        "logistic": {"best"},
    }
    assert {c.checkpoint_id for c in version.checkpoints} == expected[version.model_type]
    assert all(registry.load_model(version, c.checkpoint_id) is not None for c in version.checkpoints)


def test_champion_metadata_names_its_decision_data_threshold_method_and_bound(trained):
    result, _, _ = trained
    metadata = _metadata(result, "champion_model")
    decision_data = metadata["decision_data"].value
    assert "recall first" in decision_data and "win count" in decision_data
    assert "out-of-fold" in decision_data and "the holdout was not read" in decision_data
    assert metadata["threshold_method"].value == "split-conformal on out-of-fold scores"
    assert 0 < metadata["out_of_fold_recall_lower_bound"].value < 1
    assert metadata["split_scheme"].value == "case-id-sha256-holdout:0.1"
    assert "Data: holdout" in metadata["holdout_metrics"].value


def _rerun_champion_and_gate(trained, storage_root) -> dg.ExecuteInProcessResult:
    """The champion and the gate once more for the same partition, upstream read from ``storage_root``."""
    import dataclasses

    result, _, week = trained
    settings = dataclasses.replace(result.settings, storage_root=str(storage_root))
    return dg.materialize(
        TRAINING_GRAPH,
        partition_key=f"{TEAM}|{week}",
        resources=local_resources(settings),
        selection=["champion_model", "serving_champion"],
        raise_on_error=False,
        run_config={"ops": {"champion_model": FAST_TRAINING["champion_model"]}},
    )


def test_gate_pairs_candidate_and_serving_champion_on_the_holdout_only_under_the_same_split_scheme(trained, tmp_path):
    import shutil

    from turbine_dagster.core.evaluation.selection import GateDecision

    result, assets, _ = trained
    storage = tmp_path / "storage"
    shutil.copytree(assets.parent, storage)

    paired = _rerun_champion_and_gate(trained, storage)
    assert paired.success, failure_messages(paired)
    gate = _metadata(paired, "serving_champion")
    assert gate["challenger_version"].value == 2 and gate["gate_paired"].value is True
    for key in (
        "gate_candidate_only_misses",
        "gate_candidate_only_catches",
        "gate_p_value",
        "gate_candidate_malignant_precision",
        "gate_serving_malignant_recall",
    ):
        assert key in gate
    registry = ModelRegistry(f"{storage}/registry")
    event = [e for e in registry.events(TEAM) if e["version"] == 2 and e["kind"] in ("promoted", "refused")][-1]
    assert event["details"]["paired"] is True and "p_value" in event["details"]

    # A version from before the fixed holdout may have trained on holdout cases: no pairing, and the reason says why.
    legacy_model = registry.load_model(registry.get(TEAM, 1))
    legacy = registry.register(
        TEAM,
        legacy_model,
        threshold=0.5,
        metrics={"malignant_recall": 1.0},
        partition=None,
        run_id=None,
        data_version=None,
        reference=pd.DataFrame({c: [1.0] for c in FEATURE_COLUMNS}),
    )
    registry.promote_if(TEAM, legacy.version, lambda serving: GateDecision(True, "legacy version, test set-up"))
    unpaired = _rerun_champion_and_gate(trained, storage)
    assert unpaired.success, failure_messages(unpaired)
    gate = _metadata(unpaired, "serving_champion")
    assert gate["gate_paired"].value is False
    assert f"serving v{legacy.version:04d} was trained under split scheme none recorded" in gate["reason"].value

    # A version trained under the larger 0.2 holdout never saw a case of the 0.1 one: paired again.
    wider = registry.register(
        TEAM,
        legacy_model,
        threshold=0.5,
        metrics={"malignant_recall": 1.0},
        partition=None,
        run_id=None,
        data_version=None,
        reference=pd.DataFrame({c: [1.0] for c in FEATURE_COLUMNS}),
        split_scheme="case-id-sha256-holdout:0.2",
    )
    registry.promote_if(TEAM, wider.version, lambda serving: GateDecision(True, "wider holdout, test set-up"))
    paired_again = _rerun_champion_and_gate(trained, storage)
    assert paired_again.success, failure_messages(paired_again)
    assert _metadata(paired_again, "serving_champion")["gate_paired"].value is True


def _rerun(trained, storage_root, selection, run_config) -> dg.ExecuteInProcessResult:
    import dataclasses

    result, _, week = trained
    settings = dataclasses.replace(result.settings, storage_root=str(storage_root))
    return dg.materialize(
        TRAINING_GRAPH,
        partition_key=f"{TEAM}|{week}",
        resources=local_resources(settings),
        selection=selection,
        raise_on_error=False,
        run_config={"ops": run_config},
    )


def test_materializing_the_gate_alone_after_a_failed_quality_check_promotes_nothing(trained, tmp_path):
    import shutil

    _, assets, _ = trained
    storage = tmp_path / "storage"
    shutil.copytree(assets.parent, storage)
    registry = ModelRegistry(f"{storage}/registry")
    serving_before = registry.serving(TEAM).version

    # A run that tightens the ROC-AUC bar beyond reach: the blocking check fails, the run stops before the gate...
    strict = {"champion_model": {"config": {"n_bootstrap": 100, "min_roc_auc": 0.9999}}}
    stopped = _rerun(trained, storage, ["champion_model", "serving_champion"], strict)
    assert not stopped.success and "serving_champion" not in materialized_keys(stopped)
    candidate = max(version.version for version in registry.versions(TEAM))
    assert candidate > serving_before  # ...but the candidate is registered

    # ...and the gate materialized on its own (one click in the UI) re-checks the bars from the registry entry.
    alone = _rerun(trained, storage, ["serving_champion"], {})
    assert alone.success, failure_messages(alone)
    gate = _metadata(alone, "serving_champion")
    assert gate["promoted"].value is False and gate["challenger_version"].value == candidate
    assert "does not meet the quality bars (ROC-AUC" in gate["reason"].value
    assert registry.serving(TEAM).version == serving_before
    event = [e for e in registry.events(TEAM) if e["version"] == candidate and e["kind"] == "refused"][-1]
    assert event["details"]["clinical_policy"]["min_roc_auc"] == 0.9999  # the bar the candidate's run applied
    assert event["details"]["clinical_policy"]["version"] == CLINICAL_POLICY.version


@pytest.mark.parametrize(
    "step, config, named",
    [
        ("champion_model", {"min_malignant_recall": 0.0}, "min_malignant_recall 0"),
        ("champion_model", {"min_roc_auc": 0.5}, "min_roc_auc 0.5"),
        ("serving_champion", {"margin": 0.99}, "margin 0.99"),
        ("serving_champion", {"min_precision": 0.0}, "min_precision 0"),
        ("tf_evaluation", {"target_recall": 0.5}, "target_recall 0.5"),
    ],
)
def test_run_config_cannot_loosen_the_clinical_policy(trained, tmp_path, step, config, named):
    import shutil

    _, assets, _ = trained
    storage = tmp_path / "storage"
    shutil.copytree(assets.parent, storage)
    versions_before = len(ModelRegistry(f"{storage}/registry").versions(TEAM))

    result = _rerun(trained, storage, [step], {step: {"config": config}})
    assert not result.success and materialized_keys(result) == set()
    message = failure_messages(result)
    assert "never loosen it" in message and named in message, message
    assert len(ModelRegistry(f"{storage}/registry").versions(TEAM)) == versions_before
