"""Helpers for the model tests: what a trained model predicts for each class of a split."""

import pandas as pd

from turbine_dagster.core.models.interface import predict_malignant_proba
from turbine_dagster.core.schema import BENIGN, MALIGNANT, TARGET


def mean_malignant_proba_by_class(model, cases: pd.DataFrame) -> tuple[float, float]:
    """The model's mean probability of malignant over the malignant cases, and over the benign ones."""
    proba = predict_malignant_proba(model, cases)
    return proba[(cases[TARGET] == MALIGNANT).to_numpy()].mean(), proba[(cases[TARGET] == BENIGN).to_numpy()].mean()
