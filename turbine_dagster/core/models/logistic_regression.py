"""The standardised logistic regression as plain numbers: its P(malignant), the ensemble of several, and the JSON
document it is stored as (``.logreg``).

NumPy only, no scikit-learn object: ``logistic_model`` trains with scikit-learn and exports to ``LogisticModel``,
and ``storage.model_files`` (which imports this module to recognise the kind) reads and writes the document.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from turbine_dagster.core.schema import FEATURE_COLUMNS

DOCUMENT_FORMAT = "turbine-logistic-regression"
DOCUMENT_VERSION = 1
_DOCUMENT_KEYS = frozenset({"format", "version", "features", "log1p", "mean", "scale", "coefficients", "intercept"})


def transformed_features(matrix: np.ndarray, log1p: bool) -> np.ndarray:
    """t(x): the features as float64, through log1p when ``log1p``. Training and prediction both use it.

    No clipping: negative values never reach a model (the data rules of ``raw_data`` and of scoring refuse
    them), and one below -1 would give NaN, which scoring refuses as no probability rather than hiding it."""
    features = np.asarray(matrix, dtype=np.float64)
    return np.log1p(features) if log1p else features


@dataclass(frozen=True)
class LogisticModel:
    """P(malignant) = sigmoid(intercept + Σ coefficient · (t(x) − mean) / scale), features in ``features`` order."""

    features: tuple[str, ...]
    """Always ``schema.FEATURE_COLUMNS``: the order of the columns of every matrix the model scores."""
    log1p: bool
    """Whether t(x) is log1p(x) (the WDBC features are sizes and counts, skewed to the right) or x itself."""
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    """Per feature, the standardisation of t(x): its mean and standard deviation on the fit cases."""
    coefficients: tuple[float, ...]
    """Per standardised feature, its weight towards malignant: comparable across features."""
    intercept: float

    def __post_init__(self):
        # Configuration and JSON hand over lists: held as tuples of plain floats, so the model is immutable.
        for name in ("features", "mean", "scale", "coefficients"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("mean", "scale", "coefficients"):
            object.__setattr__(self, name, tuple(float(value) for value in getattr(self, name)))
        object.__setattr__(self, "intercept", float(self.intercept))
        if self.features != FEATURE_COLUMNS:
            raise ValueError(f"'features' {_feature_mismatch(self.features)}; expected schema.FEATURE_COLUMNS in order")
        if not isinstance(self.log1p, bool):
            raise ValueError(f"'log1p' must be true or false, got {self.log1p!r}")
        for name in ("mean", "scale", "coefficients"):
            values = getattr(self, name)
            if len(values) != len(FEATURE_COLUMNS):
                raise ValueError(f"'{name}' holds {len(values)} numbers for {len(FEATURE_COLUMNS)} features")
            if not all(math.isfinite(value) for value in values):
                raise ValueError(f"'{name}' holds a number that is not finite")
        if not math.isfinite(self.intercept):
            raise ValueError(f"'intercept' is not finite: {self.intercept!r}")
        if min(self.scale) <= 0:
            raise ValueError(f"'scale' must be positive for every feature, got {min(self.scale)!r}")

    def logit(self, matrix: np.ndarray) -> np.ndarray:
        """log(P / (1 − P)) of malignant per row of ``matrix`` (rows × features, in ``features`` order), float64."""
        standardised = (transformed_features(matrix, self.log1p) - np.asarray(self.mean)) / np.asarray(self.scale)
        return standardised @ np.asarray(self.coefficients) + self.intercept

    def predict_malignant_proba(self, matrix: np.ndarray) -> np.ndarray:
        return expit(self.logit(matrix))

    def coefficient_table(self) -> pd.DataFrame:
        """Columns ``feature`` and ``coefficient`` (positive: towards malignant), largest |coefficient| first."""
        table = pd.DataFrame({"feature": list(self.features), "coefficient": list(self.coefficients)})
        order = np.argsort(-table["coefficient"].abs().to_numpy(), kind="stable")
        return table.iloc[order].reset_index(drop=True)


def _feature_mismatch(features: tuple[str, ...]) -> str:
    if len(features) != len(FEATURE_COLUMNS):
        return f"holds {len(features)} names, not {len(FEATURE_COLUMNS)}"
    position = next(i for i, (got, wanted) in enumerate(zip(features, FEATURE_COLUMNS, strict=True)) if got != wanted)
    return f"holds {features[position]!r} at position {position}, where {FEATURE_COLUMNS[position]!r} belongs"


def average_logistic_models(models: Sequence[LogisticModel]) -> LogisticModel:
    """One LogisticModel whose logit is the mean of ``models``' logits: the cross-fitted ensemble as one model, the
    mean raw score as the CatBoost ensemble has it.

    Each model's logit is linear in t(x): intercept − Σ c·m/s + Σ (c/s)·t(x). Those weights and intercepts are
    averaged, then written back on the mean of the models' standardisations, so the ensemble's coefficients stay
    comparable across features like a single model's.
    """
    if not models:
        raise ValueError("average_logistic_models needs at least one model")
    if len(models) == 1:
        return models[0]
    if len({model.log1p for model in models}) > 1:
        raise ValueError("cannot average logistic models with and without log1p: their logits read different t(x)")
    means = np.array([model.mean for model in models])
    scales = np.array([model.scale for model in models])
    weights = np.array([model.coefficients for model in models]) / scales  # per raw t(x)
    intercepts = np.array([model.intercept for model in models]) - np.sum(weights * means, axis=1)
    weight, mean, scale = weights.mean(axis=0), means.mean(axis=0), scales.mean(axis=0)
    return LogisticModel(
        features=models[0].features,
        log1p=models[0].log1p,
        mean=tuple(mean),
        scale=tuple(scale),
        coefficients=tuple(weight * scale),
        intercept=float(intercepts.mean() + weight @ mean),
    )


def to_document(model: LogisticModel) -> bytes:
    """The model as a JSON document: format, version and every number, written exactly (shortest round trip)."""
    document = {
        "format": DOCUMENT_FORMAT,
        "version": DOCUMENT_VERSION,
        "features": list(model.features),
        "log1p": model.log1p,
        "mean": list(model.mean),
        "scale": list(model.scale),
        "coefficients": list(model.coefficients),
        "intercept": model.intercept,
    }
    return json.dumps(document, indent=1, allow_nan=False).encode()


def _refuse_constant(name: str) -> float:
    raise ValueError(f"the document holds {name}, which is not a finite number")


def _numbers(document: Mapping[str, Any], name: str) -> list[float]:
    values = document[name]
    if not isinstance(values, list) or not all(_is_number(value) for value in values):
        raise ValueError(f"'{name}' must be a list of numbers")
    return values


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def from_document(data: bytes, source: str) -> LogisticModel:
    """The model stored in ``data`` by ``to_document``; ValueError naming ``source`` (the file) for anything else:
    not JSON, another format or version, a missing or unknown key, a wrong length, a number that is not finite."""
    try:
        document = json.loads(data, parse_constant=_refuse_constant)
        if not isinstance(document, dict):
            raise ValueError("is not a JSON object")
        if document.get("format") != DOCUMENT_FORMAT:
            raise ValueError(f"'format' is {document.get('format')!r}, expected {DOCUMENT_FORMAT!r}")
        if document.get("version") != DOCUMENT_VERSION:
            raise ValueError(f"'version' is {document.get('version')!r}; this code reads version {DOCUMENT_VERSION}")
        missing, unknown = sorted(_DOCUMENT_KEYS - set(document)), sorted(set(document) - _DOCUMENT_KEYS)
        if missing or unknown:
            raise ValueError(f"missing key(s) {missing}, unknown key(s) {unknown}")
        if not _is_number(document["intercept"]):
            raise ValueError("'intercept' must be a number")
        return LogisticModel(
            features=tuple(document["features"]),
            log1p=document["log1p"],
            mean=_numbers(document, "mean"),
            scale=_numbers(document, "scale"),
            coefficients=_numbers(document, "coefficients"),
            intercept=document["intercept"],
        )
    except (ValueError, TypeError) as error:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(
            f"{source} is not a valid logistic model file ({DOCUMENT_FORMAT} version {DOCUMENT_VERSION}): {error}; "
            "was it changed or cut short? Train the model again (model_files.save_model writes valid files)"
        ) from error
