"""A registered model version as callers see it: its entry, status and checkpoints, its label (``v0003``),
and what a prediction records about the model that scored it."""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from turbine_dagster.core.models.checkpoints import Checkpoint, describe_checkpoints

VersionStatus = Literal["serving", "retired", "refused", "candidate"]
CHECKPOINTS = "checkpoints"
"""The entry's key for the stored checkpoints, and the version folder's sub-folder holding them."""


class RegistryLookupError(LookupError):
    """An unknown team, version or checkpoint; the message lists what exists."""


@dataclass(frozen=True)
class ModelVersion:
    team: str
    version: int
    model_type: str
    artifact_uri: str
    reference_uri: str
    threshold: float
    metrics: dict[str, Any]
    partition: str | None
    run_id: str | None
    data_version: str | None
    created_at: str
    status: VersionStatus
    checkpoints: tuple[Checkpoint, ...] = ()
    """The training checkpoints stored with the version (``artifact_uri`` set, no model object)."""
    split_scheme: str | None = None
    """How the training data was split into train/validation/test; None for entries written before it was recorded."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], status: VersionStatus) -> "ModelVersion":
        # Entries written before checkpoints (or split_scheme) existed lack those keys: the defaults apply.
        checkpoints = tuple(Checkpoint.from_dict(item) for item in entry.get(CHECKPOINTS, ()))
        return cls(**{**entry, CHECKPOINTS: checkpoints}, status=status)

    @property
    def label(self) -> str:
        return version_label(self.version)

    def describe(self) -> str:
        """``v0003 (checkpoints: epoch-0005, best)``, as error messages list versions."""
        return f"{self.label} ({_checkpoint_listing(self.checkpoints)})"

    def checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """The checkpoint with that id; RegistryLookupError listing this version's checkpoints otherwise."""
        for checkpoint in self.checkpoints:
            if checkpoint.checkpoint_id == checkpoint_id:
                return checkpoint
        if self.checkpoints:
            available = "its checkpoints: " + ", ".join(checkpoint.describe() for checkpoint in self.checkpoints)
        else:
            available = "it was registered without checkpoints"
        raise RegistryLookupError(
            f"{self.label} of team {self.team!r} has no checkpoint {checkpoint_id!r}; {available}. "
            f"Give no checkpoint to use the version's own model"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), CHECKPOINTS: [checkpoint.to_dict() for checkpoint in self.checkpoints]}


def version_label(version: int) -> str:
    return f"v{version:04d}"


def parse_version(version: int | str) -> int:
    """3, "3" or "v0003" -> 3; ValueError for anything else."""
    if isinstance(version, bool):
        raise ValueError(f"{version!r} is not a version: use a number such as 3 or a label such as v0003")
    if isinstance(version, int):
        number = version
    else:
        text = str(version).strip()
        digits = text[1:] if text[:1] in ("v", "V") else text
        if not digits.isdigit():
            raise ValueError(f"{version!r} is not a version: use a number such as 3 or a label such as v0003")
        number = int(digits)
    if number < 1:
        raise ValueError(f"{version!r} is not a version: versions are numbered from 1")
    return number


def model_reference(version: ModelVersion, checkpoint: Checkpoint | None = None) -> str:
    """What scored a prediction: ``v0003`` for the version's own model, ``v0003/epoch-0005`` for a checkpoint."""
    return version.label if checkpoint is None else f"{version.label}/{checkpoint.checkpoint_id}"


def scoring_threshold(version: ModelVersion, checkpoint: Checkpoint | None = None) -> float:
    """The operating threshold to score at: the checkpoint's own (chosen on validation), else the version's."""
    return version.threshold if checkpoint is None else checkpoint.threshold


def _checkpoint_listing(checkpoints: Sequence[Checkpoint]) -> str:
    return f"checkpoints: {describe_checkpoints(checkpoints)}" if checkpoints else "no checkpoints"
