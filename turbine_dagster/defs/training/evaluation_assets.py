"""Evaluation reports of each model on the test split, with the operating threshold chosen on validation."""

from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from turbine_dagster.core import evaluation
from turbine_dagster.core.schema import TARGET
from turbine_dagster.defs.partitions import team_week_partitions

OWNERS = ["team:data-science"]


class EvaluationConfig(dg.Config):
    target_recall: float = Field(0.98, gt=0, le=1, description="Malignant recall the operating threshold must reach on validation.")
    n_bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples of the test split for 95% intervals.")
    seed: int = Field(0)


def evaluate(model: Any, validation_split: pd.DataFrame, test_split: pd.DataFrame,
             config: EvaluationConfig) -> dg.Output[dict]:
    from turbine_dagster.core.models import predict_malignant_proba

    p_validation = predict_malignant_proba(model, validation_split)
    p_test = predict_malignant_proba(model, test_split)
    report = evaluation.evaluate_predictions(test_split[TARGET], p_test, validation_split[TARGET], p_validation,
                                             config.target_recall, config.n_bootstrap, config.seed)
    plots = evaluation.evaluation_plots_markdown(test_split[TARGET], p_test, report["threshold"])
    report["plots"] = plots  # stored with the report, so the champion can show its own curves
    bootstrap = report["bootstrap"]
    return dg.Output(report, metadata={
        **evaluation.headline_metrics(report),
        "malignant_recall_ci_low": bootstrap["malignant_recall"]["low"],
        "malignant_recall_ci_high": bootstrap["malignant_recall"]["high"],
        "metrics": dg.MetadataValue.md(evaluation.metrics_table_markdown(report)),
        **{name: dg.MetadataValue.md(markdown) for name, markdown in plots.items()},
    })


def evaluation_asset(model_name: str, kind: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{model_name.removesuffix('_model')}_evaluation",
        ins={"model": dg.AssetIn(model_name), "validation_split": dg.AssetIn(), "test_split": dg.AssetIn()},
        partitions_def=team_week_partitions,
        group_name="evaluation",
        kinds={kind, "scikit-learn"},
        owners=OWNERS,
        io_manager_key="json_io_manager",
        description=f"classification_report, ROC/PR-AUC, confusion matrix and bootstrap intervals of {model_name} "
                    "on the test split, at 0.5 and at the operating threshold chosen on validation.",
    )
    def _evaluation(config: EvaluationConfig, model: Any, validation_split: pd.DataFrame,
                    test_split: pd.DataFrame) -> dg.Output[dict]:
        return evaluate(model, validation_split, test_split, config)

    return _evaluation


tf_evaluation = evaluation_asset("tf_model", "tensorflow")
catboost_evaluation = evaluation_asset("catboost_model", "catboost")
evaluation_assets = [tf_evaluation, catboost_evaluation]
