"""Each model's decision report: its operating threshold and metrics on its out-of-fold scores.

Nothing here reads the holdout: the champion is chosen on these reports, and only the chosen model is
graded on the holdout (``champion_model``).
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from turbine_dagster.core.evaluation import metrics
from turbine_dagster.core.evaluation.policy import CLINICAL_POLICY, LooserThanPolicyError
from turbine_dagster.core.schema import P_MALIGNANT, TARGET
from turbine_dagster.defs.code_versions import versioned
from turbine_dagster.defs.failures import failing_on
from turbine_dagster.defs.partitions import team_week_partitions
from turbine_dagster.defs.retries import STORAGE_RETRY_POLICY
from turbine_dagster.presentation.evaluation import evaluation_plots_markdown, metrics_table_markdown

OWNERS = ["team:data-science"]


class EvaluationConfig(dg.Config):
    target_recall: float = Field(
        CLINICAL_POLICY.target_recall,
        gt=0,
        lt=1,
        description="Malignant recall the operating threshold promises on new cases (split-conformal on "
        "out-of-fold scores). May raise the clinical policy's target (core/evaluation/policy.py), never lower it.",
    )
    n_bootstrap: int = Field(metrics.N_BOOTSTRAP, ge=100, description="Bootstrap resamples for the 95% intervals.")
    seed: int = Field(metrics.BOOTSTRAP_SEED, description="Seed of the bootstrap resampling.")


def report_metadata(report: dict, plots: dict[str, str]) -> dict:
    """What the UI shows of an evaluation report: headline floats (plotted over time), intervals, table, plots."""
    bootstrap = report["bootstrap"]
    return {
        **metrics.headline_metrics(report),
        "malignant_recall_ci_low": bootstrap["malignant_recall"]["low"],
        "malignant_recall_ci_high": bootstrap["malignant_recall"]["high"],
        "metrics": dg.MetadataValue.md(metrics_table_markdown(report)),
        **{name: dg.MetadataValue.md(markdown) for name, markdown in plots.items()},
    }


def evaluate_out_of_fold(
    context: dg.AssetExecutionContext, out_of_fold: pd.DataFrame, config: EvaluationConfig
) -> dg.Output[dict]:
    with failing_on(context, LooserThanPolicyError):
        policy = CLINICAL_POLICY.tightened(target_recall=config.target_recall)
    report = metrics.evaluate_out_of_fold(
        out_of_fold[TARGET], out_of_fold[P_MALIGNANT], policy.target_recall, config.n_bootstrap, config.seed
    )
    plots = evaluation_plots_markdown(out_of_fold[TARGET], out_of_fold[P_MALIGNANT], report["threshold"], "out-of-fold")
    choice = report["threshold_choice"]
    return dg.Output(
        report,
        metadata={
            **report_metadata(report, plots),
            "threshold_method": choice["method"],
            "threshold_n_malignant": choice["n_malignant"],
            "threshold_k": choice["k"],
            "threshold_expected_recall": choice["expected_recall"],
            "threshold_certifiable": choice["certifiable"],
        },
    )


def evaluation_asset(model_name: str, kind: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{model_name.removesuffix('_model')}_evaluation",
        ins={"out_of_fold": dg.AssetIn(f"{model_name}_out_of_fold")},
        partitions_def=team_week_partitions,
        group_name="evaluation",
        kinds={kind, "scikit-learn"},
        owners=OWNERS,
        io_manager_key="json_io_manager",
        retry_policy=STORAGE_RETRY_POLICY,
        description=f"Operating threshold of {model_name} (split-conformal on its out-of-fold scores) and its "
        "classification_report, ROC/PR-AUC, confusion matrix and intervals on those scores.",
    )
    def _evaluation(
        context: dg.AssetExecutionContext, config: EvaluationConfig, out_of_fold: pd.DataFrame
    ) -> dg.Output[dict]:
        return evaluate_out_of_fold(context, out_of_fold, config)

    return versioned(_evaluation)


tf_evaluation = evaluation_asset("tf_model", "tensorflow")
catboost_evaluation = evaluation_asset("catboost_model", "catboost")
logistic_evaluation = evaluation_asset("logistic_model", "scikit-learn")
evaluation_assets = [tf_evaluation, catboost_evaluation, logistic_evaluation]
