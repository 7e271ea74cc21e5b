"""Fixtures of the core tests: small labeled WDBC splits, no Dagster."""

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from turbine_dagster.core.schema import CASE_ID, TARGET


@pytest.fixture(scope="session")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    """300 WDBC cases split 70/30 into train and validation, stratified and seeded."""
    frame = load_breast_cancer(as_frame=True).frame.sample(300, random_state=0)
    frame.insert(0, CASE_ID, range(len(frame)))
    return tuple(train_test_split(frame, test_size=0.3, stratify=frame[TARGET], random_state=0))
