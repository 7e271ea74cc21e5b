"""What a registration checks before anything is written, and the drift reference it keeps with a version."""

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from turbine_dagster.core.models.checkpoints import Checkpoint
from turbine_dagster.core.registry.objects import json_bytes
from turbine_dagster.core.schema import FEATURE_COLUMNS

REFERENCE_MAX_ROWS = 5000
"""Drift reference rows kept per version; enough for PSI/KS, small enough to read on every scoring run."""


def check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")


def drift_reference(team: str, reference: pd.DataFrame) -> pd.DataFrame:
    """The feature columns of ``reference``, at most REFERENCE_MAX_ROWS rows of them (a fixed sample)."""
    missing = [column for column in FEATURE_COLUMNS if column not in reference.columns]
    if missing:
        raise ValueError(f"reference for team {team!r} lacks feature column(s) {missing}; pass the training features")
    features = reference.loc[:, list(FEATURE_COLUMNS)]
    if len(features) > REFERENCE_MAX_ROWS:
        features = features.sample(n=REFERENCE_MAX_ROWS, random_state=0).sort_index()
    return features


def as_stored_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as stored in an entry (NumPy scalars as plain numbers); TypeError for anything JSON cannot hold."""
    return json.loads(json_bytes(dict(values)))


def check_checkpoints(team: str, checkpoints: Sequence[Checkpoint], kind: str, suffix: str) -> None:
    """Refuse checkpoints that cannot be stored with a ``kind`` model whose files end in ``suffix``."""
    from turbine_dagster.core.storage import model_files  # imports TensorFlow

    seen: set[str] = set()
    for checkpoint in checkpoints:
        where = f"checkpoint {checkpoint.checkpoint_id!r} for team {team!r}"
        if checkpoint.checkpoint_id in seen:
            raise ValueError(f"{where} is given twice; checkpoint ids are unique within a version")
        seen.add(checkpoint.checkpoint_id)
        if checkpoint.model is not None:
            if model_files.model_kind(checkpoint.model) != kind:
                raise ValueError(
                    f"{where} holds a {model_files.model_kind(checkpoint.model)} model, but the version's "
                    f"model is {kind}; a version keeps checkpoints of its own model only"
                )
        elif checkpoint.artifact_uri is None:
            raise ValueError(f"{where} has neither a model object nor an artifact_uri to store")
        elif not checkpoint.artifact_uri.endswith(suffix):
            raise ValueError(
                f"{where}: {checkpoint.artifact_uri} is not a '{suffix}' file, the format of the version's {kind} model"
            )
        as_stored_values(checkpoint.to_dict())  # plain metrics only
