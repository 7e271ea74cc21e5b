"""Launchpad configuration of the prediction assets; every default is the core's own."""

import dagster as dg
from pydantic import Field

from turbine_dagster.core.models.params import PREDICT_BATCH_ROWS
from turbine_dagster.core.monitoring.drift import SAMPLE_ROWS, SAMPLE_SEED, DriftRule
from turbine_dagster.core.serving.defaults import CHUNK_ROWS, DISAGREEMENTS_LISTED


class BatchPredictionConfig(dg.Config):
    chunk_rows: int = Field(CHUNK_ROWS, ge=1, description="Rows read, validated and scored at a time: bounds memory.")
    batch_size: int = Field(PREDICT_BATCH_ROWS, ge=1, description="Rows per Keras predict batch.")
    model_version: str | None = Field(
        None, description="Registry version to score with (3 or v0003); default: the team's serving champion."
    )
    checkpoint: str | None = Field(
        None, description="A checkpoint of that version, e.g. epoch-0005; default: the version's own model."
    )


class ChallengerComparisonConfig(dg.Config):
    challenger_version: str | None = Field(
        None, description="Registry version to compare with the serving champion; default: the newest one not serving."
    )
    challenger_checkpoint: str | None = Field(None, description="A checkpoint of the challenger version.")
    sample_size: int = Field(DISAGREEMENTS_LISTED, ge=1, description="Disagreeing cases listed in the metadata.")
    chunk_rows: int = Field(
        CHUNK_ROWS, ge=1, description="Rows read, validated and scored at a time by each model: bounds memory."
    )


class DriftConfig(dg.Config):
    min_drifted_features: int = Field(
        DriftRule.min_drifted_features, ge=1, description="The week drifts when at least this many features drift."
    )
    alpha: float = Field(
        DriftRule.alpha, gt=0, lt=1, description="Significance of the Holm-corrected KS test per feature."
    )
    psi_threshold: float = Field(
        DriftRule.psi_threshold, ge=0, description="A drifted feature also needs at least this PSI."
    )
    max_rows: int = Field(SAMPLE_ROWS, ge=100, description="Scoring rows sampled for the comparison.")
    seed: int = Field(SAMPLE_SEED, description="Seed of the random sample of scoring rows.")

    def rule(self) -> DriftRule:
        return DriftRule(
            min_drifted_features=self.min_drifted_features, alpha=self.alpha, psi_threshold=self.psi_threshold
        )
