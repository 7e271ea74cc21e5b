"""Labeled data per team and week, its blocking quality checks, and the holdout and folds by case id."""

from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from turbine_dagster.core.data import cases, landing
from turbine_dagster.core.data.history import ParseCache
from turbine_dagster.core.data.landing import LandingError
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, SOURCE_FILE, TARGET
from turbine_dagster.defs.code_versions import versioned
from turbine_dagster.defs.failures import asset_and_partition, failing_on
from turbine_dagster.defs.partitions import partition_team_week, team_week_partitions
from turbine_dagster.defs.resources import LandingZone
from turbine_dagster.defs.retries import STORAGE_RETRY_POLICY
from turbine_dagster.presentation.tables import padded_markdown_table

OWNERS = ["team:ml-platform"]


class RawDataConfig(dg.Config):
    window_weeks: int = Field(
        cases.ALL_WEEKS, ge=0, description="Weeks of labeled history up to this week to use; 0 = all."
    )
    min_cases_per_class: int = Field(
        cases.MIN_CASES_PER_CLASS,
        ge=1,
        description="Check enough_rows_per_class: fewest cases of each class a training set may hold.",
    )


class SplitConfig(dg.Config):
    test_fraction: float = Field(
        cases.SplitParams.test_fraction,
        gt=0,
        lt=1,
        description="Share of case ids in the fixed holdout (chosen by a "
        "hash of the case id: a case never changes split). Changing it starts a new split "
        "scheme: after raising it, the gate cannot pair the next candidate with the serving champion (a "
        "smaller share's holdout lies inside the larger one's, so lowering it keeps the pairing).",
    )
    folds: int = Field(
        cases.SplitParams.folds,
        ge=2,
        description="Cross-fitting folds over the development cases, chosen by a hash of the case id (a case keeps "
        "its fold as weeks are added; folds are not stratified, and one without both classes fails the split).",
    )


def unusual_values_metadata(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(padded_markdown_table(cases.unusual_values_table(frame)))


def class_balance_metadata(frame: pd.DataFrame) -> dict[str, Any]:
    counts = cases.class_counts(frame)
    return {
        "malignant_cases": counts["malignant"],
        "benign_cases": counts["benign"],
        "malignant_share": round(counts["malignant"] / max(len(frame), 1), 4),
    }


def parse_cache_metadata(cache: ParseCache) -> dict[str, Any]:
    """How many landing files this load read from the parse cache and how many it parsed (and cached)."""
    return {
        "files_reused_from_parse_cache": len(cache.reused),
        "files_parsed": len(cache.parsed),
        **({"parse_cache_problems": dg.MetadataValue.json(cache.problems)} if cache.problems else {}),
    }


RAW_DATA_CHECKS: dict[str, tuple[str, Callable[..., cases.CheckOutcome]]] = {
    "feature_columns_numeric": ("The 30 feature columns hold numbers only.", cases.check_numeric_features),
    "no_missing_or_infinite_values": (
        "No NaN, infinite, beyond-float32 (infinite to the model) or negative (no measurement is) feature values.",
        cases.check_finite_features,
    ),
    "labels_valid": ("Every target is 0 (malignant) or 1 (benign).", cases.check_labels),
    "case_ids_unique": ("No case id appears twice.", cases.check_unique_case_ids),
    "enough_rows_per_class": (
        "Each class has the minimum number of cases (config min_cases_per_class).",
        cases.check_rows_per_class,
    ),
}
"""raw_data's blocking checks, evaluated in raw_data's own step: an ERROR stops every downstream asset of the run."""


def raw_data_check_results(frame: pd.DataFrame, config: RawDataConfig) -> list[dg.AssetCheckResult]:
    results = []
    for name, (_, rule) in RAW_DATA_CHECKS.items():
        outcome = rule(frame, minimum=config.min_cases_per_class) if name == "enough_rows_per_class" else rule(frame)
        problems = pd.DataFrame([vars(p) for p in outcome.problems], columns=["column", "file", "rows", "detail"])
        results.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=outcome.description(),
                metadata={
                    "failing_rows": int(problems["rows"].sum()),
                    "problems": dg.MetadataValue.md(padded_markdown_table(problems)),
                },
            )
        )
    return results


@versioned
@dg.asset(
    partitions_def=team_week_partitions,
    group_name="data",
    kinds={"pandas", "parquet"},
    owners=OWNERS,
    description="The team's labeled landing data up to this week (window configurable), as one table.",
    check_specs=[
        dg.AssetCheckSpec(
            name, asset="raw_data", description=description, blocking=True, partitions_def=team_week_partitions
        )
        for name, (description, _) in RAW_DATA_CHECKS.items()
    ],
    retry_policy=STORAGE_RETRY_POLICY,
)
def raw_data(
    context: dg.AssetExecutionContext, config: RawDataConfig, landing_zone: LandingZone
):  # a MaterializeResult: the table, and its checks' results
    team, week = partition_team_week(context)
    strays = landing.stray_entries(landing_zone.path(), landing.LABELED, team)
    if strays:
        context.log.warning(f"{asset_and_partition(context)}: {landing.stray_warning(strays)}")
    cache = landing_zone.parse_cache()
    with failing_on(context, LandingError, cases.EmptyPartitionError):
        frame = cases.load_labeled_cases(landing_zone.path(), team, week, config.window_weeks, cache)
    for problem in cache.problems if cache else []:
        context.log.warning(f"{asset_and_partition(context)}: {problem}")
    files = (
        frame.groupby([SOURCE_FILE, cases.LAYOUT], sort=True)
        .size()
        .rename_axis(["file", "layout"])
        .reset_index(name="rows")
    )
    preview = frame.loc[:, [CASE_ID, *FEATURE_COLUMNS[:4], TARGET, cases.WEEK]].head(10)
    unusual = cases.unusually_large(frame)
    return dg.MaterializeResult(
        value=frame,
        data_version=dg.DataVersion(cases.fingerprint(frame)),
        metadata={
            **class_balance_metadata(frame),
            "weeks": len(frame[cases.WEEK].unique()),
            "layouts": dg.MetadataValue.json(frame[cases.LAYOUT].value_counts().sort_index().to_dict()),
            "source_files": dg.MetadataValue.md(padded_markdown_table(files)),
            "rows_with_unusually_large_values": int(unusual.sum()),
            **({"unusually_large_values": unusual_values_metadata(frame)} if unusual.any() else {}),
            **({"ignored_landing_entries": dg.MetadataValue.json(strays)} if strays else {}),
            **(parse_cache_metadata(cache) if cache else {}),
            "preview": dg.MetadataValue.md(padded_markdown_table(preview)),
        },
        check_results=raw_data_check_results(frame, config),
    )


SPLIT_DESCRIPTIONS = {
    "train_split": "Development cases of raw_data with their cross-fitting fold: models are fitted, early-stopped, "
    "thresholded and compared on these only.",
    "test_split": "The fixed holdout: cases whose id hashes into the holdout share, the same every week. Only the "
    "champion's final report, the quality bars and the promotion gate read it.",
}


@versioned
@dg.multi_asset(
    outs={
        name: dg.AssetOut(description=description, kinds={"pandas", "parquet"}, owners=OWNERS)
        for name, description in SPLIT_DESCRIPTIONS.items()
    },
    partitions_def=team_week_partitions,
    group_name="data",
    retry_policy=STORAGE_RETRY_POLICY,
)
def splits(context: dg.AssetExecutionContext, config: SplitConfig, raw_data: pd.DataFrame):
    params = cases.SplitParams(config.test_fraction, config.folds)
    with failing_on(context, ValueError):
        development, holdout = cases.development_and_holdout(raw_data, params)
    holdout = holdout.assign(**{cases.HOLDOUT_SCHEME_COLUMN: params.scheme})
    for name, part in (("train_split", development), ("test_split", holdout)):
        yield dg.Output(
            part, output_name=name, metadata={**class_balance_metadata(part), "split_scheme": params.scheme}
        )


data_assets = [raw_data, splits]
