"""Champion selection, the quality bars, and the promotion gate into the model registry."""

import functools
from dataclasses import asdict, replace
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from turbine_dagster.core.data.cases import HOLDOUT_SCHEME_COLUMN, fingerprint, holdout_covers
from turbine_dagster.core.evaluation import selection
from turbine_dagster.core.evaluation.metrics import (
    N_BOOTSTRAP,
    evaluate_all_evidence,
    evaluate_scores,
    headline_metrics,
)
from turbine_dagster.core.evaluation.policy import CLINICAL_POLICY, LooserThanPolicyError, registered_bar_failures
from turbine_dagster.core.monitoring.estimation import CALIBRATION_RECORD, calibration_record
from turbine_dagster.core.schema import FEATURE_COLUMNS, P_MALIGNANT, TARGET
from turbine_dagster.defs.code_versions import versioned
from turbine_dagster.defs.failures import failing_on
from turbine_dagster.defs.partitions import partition_team_week, team_week_partitions
from turbine_dagster.defs.resources import ModelRegistryResource
from turbine_dagster.defs.retries import STORAGE_RETRY_POLICY
from turbine_dagster.presentation.evaluation import evaluation_plots_markdown, metrics_table_markdown
from turbine_dagster.presentation.selection import (
    candidate_figures,
    candidates_table_markdown,
    comparison_table_markdown,
)

OWNERS = ["team:data-science"]
champion_side_asset = functools.partial(
    dg.asset,
    partitions_def=team_week_partitions,
    group_name="champion",
    kinds={"python"},
    owners=OWNERS,
    io_manager_key="json_io_manager",
    retry_policy=STORAGE_RETRY_POLICY,
)


class ChampionConfig(dg.Config):
    policy: selection.Policy = Field(
        selection.DEFAULT_POLICY,
        description="recall_first: malignant recall, then benign precision, then malignant F1. "
        "win_count: most classification_report keys won. Both decide on out-of-fold "
        "reports, never on the holdout.",
    )
    tie_tolerance: float = Field(
        selection.TIE_TOLERANCE, ge=0, description="recall_first: differences up to this are ties."
    )
    n_bootstrap: int = Field(
        N_BOOTSTRAP, ge=100, description="Bootstrap resamples for the holdout report's 95% intervals."
    )
    min_malignant_recall: float = Field(
        CLINICAL_POLICY.bars.min_malignant_recall,
        ge=0,
        le=1,
        description="Quality bar (check champion_meets_quality_bars) on all the evidence, at the champion's "
        "threshold. May tighten the clinical policy's bar (core/evaluation/policy.py), never loosen it.",
    )
    min_roc_auc: float = Field(
        CLINICAL_POLICY.bars.min_roc_auc,
        ge=0,
        le=1,
        description="Quality bar (check champion_meets_quality_bars) on all the evidence. May tighten the "
        "clinical policy's bar, never loosen it.",
    )


class PromotionConfig(dg.Config):
    margin: float = Field(
        CLINICAL_POLICY.gate.margin,
        ge=0,
        lt=1,
        description="Non-inferiority margin: share of holdout malignant cases the "
        "candidate may miss beyond the serving champion's misses. May only be lowered from the clinical policy's.",
    )
    alpha: float = Field(
        CLINICAL_POLICY.gate.alpha,
        gt=0,
        lt=1,
        description="Refuse when the one-sided exact binomial test says the "
        "candidate is worse than the margin at this level. May only be raised from the clinical policy's.",
    )
    min_precision: float = Field(
        CLINICAL_POLICY.gate.min_precision,
        ge=0,
        le=1,
        description="Refuse a candidate whose holdout malignant precision "
        "is below this floor (more false alarms than cancers). May only be raised from the clinical policy's.",
    )


CANDIDATES = ("tf_model", "catboost_model", "logistic_model")
"""Every model the champion is chosen from, by asset name; each has ``<name>_out_of_fold``, ``<name>_checkpoints``
and an evaluation asset named without ``_model`` (``tf_evaluation``)."""


def quality_bars_result(champion: dict, bars: selection.QualityBars) -> dg.AssetCheckResult:
    """The blocking check champion_meets_quality_bars: a champion below a bar is never offered to the gate. The bars
    read all the evidence (out-of-fold and holdout cases); the holdout's own figures are shown beside them."""
    evidence, holdout = champion["all_evidence_metrics"], champion["metrics"]
    failures = selection.check_quality_bars(evidence, bars)
    return dg.AssetCheckResult(
        check_name="champion_meets_quality_bars",
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description=("; ".join(failures) or f"{champion['champion']} passes every quality bar")
        + f" (judged on {champion['all_evidence_cases']} out-of-fold and holdout cases)",
        metadata={
            "malignant_recall": evidence["malignant_recall"],
            "malignant_recall_ci": _interval_text(champion["all_evidence_intervals"]["malignant_recall"]),
            "roc_auc": evidence["roc_auc"],
            "roc_auc_ci": _interval_text(champion["all_evidence_intervals"]["roc_auc"]),
            "cases": champion["all_evidence_cases"],
            "holdout_malignant_recall": holdout["malignant_recall"],
            "holdout_roc_auc": holdout["roc_auc"],
            "min_malignant_recall": bars.min_malignant_recall,
            "min_roc_auc": bars.min_roc_auc,
        },
    )


def _interval_text(interval: dict) -> str:
    return f"[{interval['low']:.4f}, {interval['high']:.4f}] (95 % bootstrap)"


@versioned
@champion_side_asset(
    description="Applies both selection policies to the out-of-fold evaluations of every candidate model, grades the "
    "chosen one once on the holdout, and registers it as a candidate version in the model registry.",
    check_specs=[
        dg.AssetCheckSpec(
            "champion_meets_quality_bars",
            asset="champion_model",
            blocking=True,
            partitions_def=team_week_partitions,
            description="The champion must reach the minimum quality bars on all its evidence (out-of-fold and "
            "holdout cases) before the gate may promote it.",
        )
    ],
)
def champion_model(
    context: dg.AssetExecutionContext,
    config: ChampionConfig,
    registry: ModelRegistryResource,
    tf_model: Any,
    catboost_model: Any,
    logistic_model: Any,
    tf_evaluation: dict,
    catboost_evaluation: dict,
    logistic_evaluation: dict,
    tf_model_checkpoints: list,
    catboost_model_checkpoints: list,
    logistic_model_checkpoints: list,
    tf_model_out_of_fold: pd.DataFrame,
    catboost_model_out_of_fold: pd.DataFrame,
    logistic_model_out_of_fold: pd.DataFrame,
    train_split: pd.DataFrame,
    test_split: pd.DataFrame,
):  # a MaterializeResult, with its check
    from turbine_dagster.core.models.checkpoints import Checkpoint
    from turbine_dagster.core.models.interface import predict_malignant_proba

    def by_candidate(*values: Any) -> dict[str, Any]:
        return dict(zip(CANDIDATES, values, strict=True))

    models = by_candidate(tf_model, catboost_model, logistic_model)
    evaluations = by_candidate(tf_evaluation, catboost_evaluation, logistic_evaluation)
    checkpoints = by_candidate(tf_model_checkpoints, catboost_model_checkpoints, logistic_model_checkpoints)
    out_of_folds = by_candidate(tf_model_out_of_fold, catboost_model_out_of_fold, logistic_model_out_of_fold)
    with failing_on(context, LooserThanPolicyError):
        policy = CLINICAL_POLICY.tightened(
            min_malignant_recall=config.min_malignant_recall, min_roc_auc=config.min_roc_auc
        )
    reports = {name: report["at_operating_threshold"]["classification_report"] for name, report in evaluations.items()}
    caught = selection.out_of_fold_catches(
        out_of_folds, {name: report["threshold"] for name, report in evaluations.items()}
    )
    chosen = selection.select_champion(reports, config.policy, config.tie_tolerance, caught=caught)
    team, week = partition_team_week(context)
    decision_report = evaluations[chosen.champion]
    model = models[chosen.champion]
    threshold = decision_report["threshold"]
    p_holdout = predict_malignant_proba(model, test_split)
    holdout = evaluate_scores(test_split[TARGET], p_holdout, threshold, "holdout", config.n_bootstrap)
    development = out_of_folds[chosen.champion]
    evidence = evaluate_all_evidence(
        development[TARGET], development[P_MALIGNANT], test_split[TARGET], p_holdout, threshold, config.n_bootstrap
    )
    # What an estimate of a scored week's performance, before its diagnoses land, is only as good as: the
    # calibration of the champion's scores on every case it has an honest score for.
    calibration = calibration_record(
        np.concatenate([development[TARGET].to_numpy(), test_split[TARGET].to_numpy()]),
        np.concatenate([development[P_MALIGNANT].to_numpy(), p_holdout]),
    )
    plots = evaluation_plots_markdown(test_split[TARGET], p_holdout, threshold, "holdout")
    metrics = headline_metrics(holdout)
    evidence_metrics = headline_metrics(evidence)
    out_of_fold_metrics = headline_metrics(decision_report)
    candidates = {name: candidate_figures(report) for name, report in evaluations.items()}
    scheme = str(test_split[HOLDOUT_SCHEME_COLUMN].iloc[0])
    version = registry.registry().register(
        team,
        model,
        threshold=threshold,
        metrics={
            **metrics,
            **{f"out_of_fold_{name}": value for name, value in out_of_fold_metrics.items()},
            **{f"all_evidence_{name}": value for name, value in evidence_metrics.items()},
            "candidate": chosen.champion,
            "candidates_out_of_fold": candidates,
            "clinical_policy": policy.to_dict(),
            CALIBRATION_RECORD: calibration,
        },
        partition=context.partition_key,
        run_id=context.run.run_id,
        data_version=fingerprint(train_split),
        reference=train_split.loc[:, list(FEATURE_COLUMNS)],
        checkpoints=[Checkpoint.from_dict(c) for c in checkpoints[chosen.champion]],
        split_scheme=scheme,
    )
    context.log.info(f"{chosen.reason} Registered as {version.label} for {team}.")
    verdicts = {name: verdict.to_dict() for name, verdict in chosen.verdicts.items()}
    choice = decision_report["threshold_choice"]
    champion = {
        "team": team,
        "week": week,
        **chosen.to_dict(),
        "version": version.version,
        "model_type": version.model_type,
        "threshold": threshold,
        "metrics": metrics,
        "all_evidence_metrics": evidence_metrics,
        "all_evidence_cases": evidence["n"],
        "all_evidence_intervals": evidence["bootstrap"],
        "candidates_out_of_fold": candidates,
        "clinical_policy": policy.to_dict(),
        "decision_data": "out-of-fold",
        "threshold_choice": choice,
        "split_scheme": scheme,
        "holdout_report": holdout,
    }
    return dg.MaterializeResult(
        value=champion,
        check_results=[quality_bars_result(champion, policy.bars)],
        metadata={
            "champion": chosen.champion,
            "policy": config.policy,
            "reason": chosen.reason,
            "candidates": dg.MetadataValue.md(candidates_table_markdown(evaluations, chosen.champion)),
            "decision_data": dg.MetadataValue.md(
                "\n".join(
                    f"- **{policy.replace('_', ' ')}**: out-of-fold classification reports of all {len(CANDIDATES)} "
                    f"candidates ({decision_report['n']} development cases); the holdout was not read"
                    for policy in selection.POLICIES
                )
            ),
            "registry_version": version.version,
            "clinical_policy": dg.MetadataValue.json(policy.to_dict()),
            "calibration_error": calibration["calibration"]["expected_calibration_error"],
            "calibration_error_by_chance": calibration["calibration"]["chance_calibration_error"],
            "checkpoints": ", ".join(c.checkpoint_id for c in version.checkpoints),
            "threshold": threshold,
            "threshold_method": choice["method"],
            "threshold_k_of_n": f"{choice['k']} of {choice['n_malignant']}",
            "threshold_expected_recall": choice["expected_recall"],
            "threshold_certifiable": choice["certifiable"],
            "out_of_fold_recall_lower_bound": choice["recall_lower_bound"],
            "split_scheme": scheme,
            **{f"champion_{name}": value for name, value in metrics.items()},
            **{f"all_evidence_{name}": evidence_metrics[name] for name in ("malignant_recall", "roc_auc")},
            "holdout_metrics": dg.MetadataValue.md(metrics_table_markdown(holdout)),
            "all_evidence_metrics": dg.MetadataValue.md(metrics_table_markdown(evidence)),
            "comparison": dg.MetadataValue.md(comparison_table_markdown(reports)),
            "verdicts": dg.MetadataValue.json(verdicts),
            "champion_plots": dg.MetadataValue.md("\n\n".join(plots.values())),
        },
    )


def with_policy(decision: selection.GateDecision, recorded: dict[str, Any]) -> selection.GateDecision:
    """``decision`` with the clinical policy it was taken under among its details (kept in the registry event)."""
    return replace(decision, details={**decision.details, **recorded})


@versioned
@champion_side_asset(
    description="The promotion gate: candidate and serving champion are scored on the same holdout cases, which "
    "neither trained, early-stopped nor chose its threshold on, and compared paired as a "
    "non-inferiority rule on malignant recall, with a precision floor. Promotions are serialised by "
    "the registry.",
)
def serving_champion(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    registry: ModelRegistryResource,
    champion_model: dict,
    test_split: pd.DataFrame,
) -> dg.Output[dict]:
    from turbine_dagster.core.models.interface import predict_malignant_proba

    store = registry.registry()
    team = champion_model["team"]
    challenger = store.get(team, champion_model["version"])
    scheme = champion_model["split_scheme"]
    with failing_on(context, LooserThanPolicyError):
        policy = CLINICAL_POLICY.tightened(margin=config.margin, alpha=config.alpha, min_precision=config.min_precision)
    # The bars the candidate's own run applied, when that run tightened them; never below the policy's.
    bars = selection.QualityBars(
        **{
            name: max(getattr(policy.bars, name), champion_model.get("clinical_policy", {}).get(name, 0.0))
            for name in ("min_malignant_recall", "min_roc_auc")
        }
    )
    rule = policy.gate
    recorded = {"clinical_policy": {**policy.to_dict(), **asdict(bars)}}
    labels = test_split[TARGET]

    def flags(version) -> Any:
        return predict_malignant_proba(store.load_model(version), test_split) >= version.threshold

    def decide(serving) -> selection.GateDecision:
        missed_bars = registered_bar_failures(challenger.metrics, bars)
        if missed_bars:
            return selection.GateDecision(
                False,
                f"refused: {challenger.label} does not meet the quality bars ({'; '.join(missed_bars)}), "
                "re-checked from its registry entry; the serving champion keeps serving",
                {"quality_bars_failed": missed_bars},
            )
        if serving is None:
            return selection.promotion_decision(labels, flags(challenger), None, rule)
        if not holdout_covers(serving.split_scheme, scheme):
            why = (
                f"serving {serving.label} was trained under split scheme {serving.split_scheme or 'none recorded'}, "
                f"whose holdout does not contain that of {scheme}, and may have trained on these holdout cases: "
                "no paired comparison"
            )
            return selection.promotion_decision(labels, flags(challenger), None, rule, unpaired_reason=why)
        return selection.promotion_decision(labels, flags(challenger), flags(serving), rule)

    decision = store.promote_if(team, challenger.version, lambda serving: with_policy(decide(serving), recorded))
    serving = store.serving(team)
    context.log.info(f"{team}: {decision.reason}")
    details = {f"gate_{name}": value for name, value in decision.details.items()}
    return dg.Output(
        {
            "team": team,
            "serving_version": serving.version if serving else None,
            "challenger_version": challenger.version,
            "promoted": decision.promote,
            "reason": decision.reason,
            "details": decision.details,
            "model_type": serving.model_type if serving else None,
            "threshold": serving.threshold if serving else None,
        },
        metadata={
            "serving_version": serving.version if serving else -1,
            "challenger_version": challenger.version,
            "promoted": decision.promote,
            "reason": decision.reason,
            "serving_model_type": serving.model_type if serving else "none",
            **details,
        },
    )


champion_assets = [champion_model, serving_champion]
