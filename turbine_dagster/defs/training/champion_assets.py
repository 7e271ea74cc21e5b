"""Champion selection, the quality bars, and the promotion gate into the model registry."""

import functools
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from turbine_dagster.core import data, evaluation, selection
from turbine_dagster.core.schema import FEATURE_COLUMNS, TARGET
from turbine_dagster.defs.partitions import team_and_week, team_week_partitions
from turbine_dagster.defs.resources import ModelRegistryResource

OWNERS = ["team:data-science"]
champion_side_asset = functools.partial(dg.asset, partitions_def=team_week_partitions, group_name="champion",
                                        kinds={"python"}, owners=OWNERS, io_manager_key="json_io_manager")
MODELS = ("tf_model", "catboost_model")


class ChampionConfig(dg.Config):
    policy: Literal["recall_first", "win_count"] = Field(
        "recall_first", description="recall_first: malignant recall, then benign precision, then malignant F1. "
                                    "win_count: most classification_report keys won.")
    tie_tolerance: float = Field(0.0, ge=0, description="recall_first: differences up to this are ties.")


class QualityBarsConfig(dg.Config):
    min_malignant_recall: float = Field(0.95, ge=0, le=1)
    min_roc_auc: float = Field(0.98, ge=0, le=1)


class PromotionConfig(dg.Config):
    recall_tolerance: float = Field(
        0.0, ge=0, description="How much lower the challenger's malignant recall may be than the serving champion's, "
                               "both measured on this partition's test split.")


@champion_side_asset(
    description="Applies both selection policies to the two evaluations and registers the chosen model as a "
                "candidate version in the model registry.",
)
def champion_model(context: dg.AssetExecutionContext, config: ChampionConfig, registry: ModelRegistryResource,
                   tf_model: Any, catboost_model: Any, tf_evaluation: dict, catboost_evaluation: dict,
                   tf_model_checkpoints: list, catboost_model_checkpoints: list,
                   train_split: pd.DataFrame) -> dg.Output[dict]:
    from turbine_dagster.core.checkpoints import Checkpoint

    evaluations = {"tf_model": tf_evaluation, "catboost_model": catboost_evaluation}
    reports = {name: report["at_operating_threshold"]["classification_report"] for name, report in evaluations.items()}
    chosen = selection.select_champion(reports, config.policy, config.tie_tolerance)
    team, week = team_and_week(context)
    report = evaluations[chosen.champion]
    metrics = evaluation.headline_metrics(report)
    version = registry.registry().register(
        team,
        {"tf_model": tf_model, "catboost_model": catboost_model}[chosen.champion],
        threshold=report["threshold"],
        metrics=metrics,
        partition=context.partition_key,
        run_id=context.run.run_id,
        data_version=data.fingerprint(train_split),
        reference=train_split.loc[:, list(FEATURE_COLUMNS)],
        checkpoints=[Checkpoint.from_dict(c) for c in
                     {"tf_model": tf_model_checkpoints, "catboost_model": catboost_model_checkpoints}[chosen.champion]],
    )
    context.log.info(f"{chosen.reason} Registered as {version.label} for {team}.")
    verdicts = {name: verdict.to_dict() for name, verdict in chosen.verdicts.items()}
    return dg.Output(
        {"team": team, "week": week, **chosen.to_dict(), "version": version.version, "model_type": version.model_type,
         "threshold": version.threshold, "metrics": metrics},
        metadata={
            "champion": chosen.champion,
            "policy": config.policy,
            "reason": chosen.reason,
            "registry_version": version.version,
            "checkpoints": ", ".join(c.checkpoint_id for c in version.checkpoints),
            "threshold": version.threshold,
            **{f"champion_{name}": value for name, value in metrics.items()},
            "comparison": dg.MetadataValue.md(selection.comparison_table_markdown(reports)),
            "verdicts": dg.MetadataValue.json(verdicts),
            "champion_plots": dg.MetadataValue.md("\n\n".join(report["plots"].values())),
        },
    )


@dg.asset_check(asset=champion_model, blocking=True, partitions_def=team_week_partitions,
                description="The champion must reach the minimum quality bars before the gate may promote it.")
def champion_meets_quality_bars(config: QualityBarsConfig, champion_model: dict) -> dg.AssetCheckResult:
    bars = selection.QualityBars(config.min_malignant_recall, config.min_roc_auc)
    failures = selection.check_quality_bars(champion_model["metrics"], bars)
    return dg.AssetCheckResult(
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(failures) or f"{champion_model['champion']} passes every quality bar",
        metadata={"malignant_recall": champion_model["metrics"]["malignant_recall"],
                  "roc_auc": champion_model["metrics"]["roc_auc"],
                  "min_malignant_recall": bars.min_malignant_recall, "min_roc_auc": bars.min_roc_auc},
    )


@champion_side_asset(
    description="The promotion gate: the candidate serves the team only if it misses no more cancers than the "
                "serving champion on this test split (within the tolerance). Promotions are serialised by the registry.",
)
def serving_champion(context: dg.AssetExecutionContext, config: PromotionConfig, registry: ModelRegistryResource,
                     champion_model: dict, test_split: pd.DataFrame) -> dg.Output[dict]:
    from turbine_dagster.core.models import predict_malignant_proba

    store = registry.registry()
    team = champion_model["team"]
    challenger = store.get(team, champion_model["version"])
    serving_recall: dict[str, float] = {}

    def decide(serving) -> selection.GateDecision:
        if serving is not None:
            p_malignant = predict_malignant_proba(store.load_model(serving), test_split)
            serving_recall["value"] = evaluation.malignant_recall_at(test_split[TARGET], p_malignant, serving.threshold)
        return selection.promotion_decision(challenger.metrics["malignant_recall"], serving_recall.get("value"),
                                            config.recall_tolerance)

    decision = store.promote_if(team, challenger.version, decide)
    serving = store.serving(team)
    context.log.info(f"{team}: {decision.reason}")
    return dg.Output(
        {"team": team, "serving_version": serving.version, "challenger_version": challenger.version,
         "promoted": decision.promote, "reason": decision.reason, "model_type": serving.model_type,
         "threshold": serving.threshold},
        metadata={
            "serving_version": serving.version,
            "challenger_version": challenger.version,
            "promoted": decision.promote,
            "reason": decision.reason,
            "serving_model_type": serving.model_type,
            "challenger_malignant_recall": challenger.metrics["malignant_recall"],
            **({"serving_malignant_recall_before": serving_recall["value"]} if serving_recall else {}),
        },
    )


champion_assets = [champion_model, serving_champion]
champion_checks = [champion_meets_quality_bars]
