"""Checkpoints: a model as it stood at one step of training, with its validation metrics and threshold.

Every trainer keeps the steps it is asked for and always ``best`` (the model it returns; the logistic regression,
which has no steps, keeps only that); a step that training never reached is absent, never an error. Imports
neither TensorFlow nor CatBoost at load time: the registry and the prediction code server use it.
"""

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

CheckpointKind = Literal["epoch", "iteration", "best"]
BEST = "best"
"""Id of the checkpoint that is the trained model itself: the best validation epoch or iteration."""

VALIDATION_METRICS = ("val_loss", "val_roc_auc", "val_malignant_recall")
"""The metrics every checkpoint records on the validation split. ``val_loss`` is the trainer's own
(Keras: binary cross-entropy; CatBoost: its validation Logloss, the one early stopping watched; logistic: the
log loss of its P(malignant));
``val_malignant_recall`` is measured at P(malignant) >= 0.5."""

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # one file name: no slashes


def checkpoint_id(kind: CheckpointKind, step: int) -> str:
    """``epoch-0005``, ``iteration-0100`` or ``best``."""
    if kind == BEST:
        return BEST
    if kind not in ("epoch", "iteration"):
        raise ValueError(f"checkpoint kind must be 'epoch', 'iteration' or 'best', got {kind!r}")
    return f"{kind}-{step:04d}"


def check_checkpoint_id(identifier: str) -> str:
    """The id, if it can be a file name; ValueError otherwise."""
    if not isinstance(identifier, str) or not _SAFE_ID.match(identifier) or identifier.endswith("."):
        raise ValueError(
            f"invalid checkpoint id {identifier!r}: use letters, digits, '_', '-' and '.' (it becomes a file name)"
        )
    return identifier


def checkpoint_steps(steps: Iterable[int], limit: int, *, name: str, limit_name: str) -> tuple[int, ...]:
    """Configured steps, sorted and without repeats; ValueError for a step outside 1..limit."""
    chosen = tuple(sorted({int(step) for step in steps}))
    outside = [step for step in chosen if not 1 <= step <= limit]
    if outside:
        raise ValueError(
            f"{name} {list(outside)} lie outside 1..{limit} ({limit_name}={limit}); "
            f"a checkpoint can only be kept at a step that training may reach"
        )
    return chosen


@dataclass(frozen=True)
class Checkpoint:
    checkpoint_id: str
    kind: CheckpointKind
    step: int
    """1-based epoch (Keras) or number of trees (CatBoost) the checkpoint holds; for the logistic regression's
    ``best``, the iterations its solver ran."""
    metrics: dict[str, float]
    """VALIDATION_METRICS at this step."""
    threshold: float
    """Operating threshold for this checkpoint, by the rule the evaluation uses (``conformal_threshold``
    at DEFAULT_TARGET_RECALL) on the checkpoint's held-out scores: score it at this."""
    artifact_uri: str | None = None
    """The native file, once written (``save_checkpoints`` or the registry)."""
    model: Any = field(default=None, repr=False, compare=False)
    """The model object; None for a checkpoint read back from JSON or the registry."""
    validation_p_malignant: np.ndarray | None = field(default=None, repr=False, compare=False)
    """P(malignant) of the validation rows, in their order, recorded when the checkpoint was taken."""

    def __post_init__(self):
        check_checkpoint_id(self.checkpoint_id)
        if self.kind not in ("epoch", "iteration", BEST):
            raise ValueError(f"checkpoint kind must be 'epoch', 'iteration' or 'best', got {self.kind!r}")

    def describe(self) -> str:
        """``epoch-0005 (epoch 5)`` or ``best (iteration 37)``, for messages and tables."""
        unit = {"epoch": "epoch", "iteration": "trees"}.get(self.kind)
        if unit is None:  # best: the unit follows the model kind, which the id alone does not say
            return f"{self.checkpoint_id} (step {self.step})"
        return f"{self.checkpoint_id} ({unit} {self.step})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe metadata: everything but the model object and the recorded predictions."""
        return {
            "checkpoint_id": self.checkpoint_id,
            "kind": self.kind,
            "step": int(self.step),
            "metrics": {name: float(value) for name, value in self.metrics.items()},
            "threshold": float(self.threshold),
            "artifact_uri": self.artifact_uri,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Checkpoint":
        return cls(
            checkpoint_id=data["checkpoint_id"],
            kind=data["kind"],
            step=int(data["step"]),
            metrics=dict(data["metrics"]),
            threshold=float(data["threshold"]),
            artifact_uri=data.get("artifact_uri"),
        )


def describe_checkpoints(checkpoints: Iterable[Checkpoint]) -> str:
    """``epoch-0002, epoch-0004, best`` or ``no checkpoints``."""
    identifiers = [checkpoint.checkpoint_id for checkpoint in checkpoints]
    return ", ".join(identifiers) if identifiers else "no checkpoints"


def validation_metrics(malignant: np.ndarray, p_malignant: np.ndarray, val_loss: float) -> dict[str, float]:
    """VALIDATION_METRICS from the validation labels (True = malignant) and the checkpoint's P(malignant)."""
    from sklearn.metrics import roc_auc_score

    from turbine_dagster.core.evaluation.metrics import DEFAULT_THRESHOLD, predict_labels
    from turbine_dagster.core.schema import MALIGNANT

    malignant = np.asarray(malignant, dtype=bool)
    return {
        "val_loss": float(val_loss),
        "val_roc_auc": float(roc_auc_score(malignant, p_malignant)),
        "val_malignant_recall": float(np.mean(predict_labels(p_malignant[malignant], DEFAULT_THRESHOLD) == MALIGNANT)),
    }


def take_checkpoint(
    kind: CheckpointKind, step: int, model: Any, malignant: np.ndarray, p_malignant: np.ndarray, val_loss: float
) -> Checkpoint:
    """A checkpoint of ``model`` with its metrics and threshold, from its validation predictions.

    ``malignant`` is True for the malignant validation rows; the validation split holds both classes.
    """
    from turbine_dagster.core.evaluation.metrics import DEFAULT_TARGET_RECALL, conformal_threshold
    from turbine_dagster.core.schema import BENIGN, MALIGNANT

    p_malignant = np.asarray(p_malignant, dtype=np.float64)
    labels = np.where(np.asarray(malignant, dtype=bool), MALIGNANT, BENIGN)
    return Checkpoint(
        checkpoint_id=checkpoint_id(kind, step),
        kind=kind,
        step=int(step),
        metrics=validation_metrics(malignant, p_malignant, val_loss),
        threshold=conformal_threshold(labels, p_malignant, DEFAULT_TARGET_RECALL).threshold,
        model=model,
        validation_p_malignant=p_malignant,
    )


def save_checkpoints(checkpoints: Iterable[Checkpoint], folder: str | os.PathLike) -> list[Checkpoint]:
    """Write each checkpoint's model as ``<folder>/<checkpoint_id>.keras|.cbm|.logreg`` (local or ``s3://``).

    Returns the checkpoints with ``artifact_uri`` set (model and predictions kept), whose ``to_dict``
    a later step turns back into registrable checkpoints with ``from_dict``.
    """
    from upath import UPath

    from turbine_dagster.core.storage import model_files  # imports TensorFlow: only paid where models are written

    root = folder if isinstance(folder, UPath) else UPath(folder)
    saved = []
    for checkpoint in checkpoints:
        if checkpoint.model is None:
            raise ValueError(f"checkpoint {checkpoint.checkpoint_id} holds no model object to save")
        suffix = model_files.MODEL_SUFFIX[model_files.model_kind(checkpoint.model)]
        artifact = model_files.save_model(checkpoint.model, root / f"{checkpoint.checkpoint_id}{suffix}")
        saved.append(replace(checkpoint, artifact_uri=artifact.uri))
    return saved
