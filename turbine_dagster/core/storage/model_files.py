"""Save and load models in their native formats (.keras, .cbm, .logreg), locally or on object storage.

``.logreg`` is the logistic regression's own JSON document (``logistic_regression.to_document``), read back with
strict validation; its suffix keeps it apart from the JSON reports the IO managers store.

A model is written to a local temporary file first, then published in one step: an ``AtomicFile`` for
a local target, a single upload for a remote one (S3 shows an object only once its upload
completes). A killed process therefore never leaves a half-written file under the final name.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import catboost
import keras
from upath import UPath

# Registers FCNBlock and Log1p, so .keras files load without custom_objects.
import turbine_dagster.core.models.fcn  # noqa: F401
import turbine_dagster.core.models.feature_transform  # noqa: F401
from turbine_dagster.core.models import logistic_regression
from turbine_dagster.core.storage.files import AtomicFile, is_local

ModelKind = Literal["tensorflow", "catboost", "logistic"]

MODEL_SUFFIX: dict[ModelKind, str] = {"tensorflow": ".keras", "catboost": ".cbm", "logistic": ".logreg"}
_KIND_BY_SUFFIX: dict[str, ModelKind] = {suffix: kind for kind, suffix in MODEL_SUFFIX.items()}


@dataclass(frozen=True)
class ArtifactInfo:
    uri: str
    """Where the model now lives; ``load_model(uri)`` reads it back."""
    size_bytes: int
    format: str
    """"keras", "cbm" or "logreg"."""


def model_kind(model: Any) -> ModelKind:
    if isinstance(model, keras.Model):
        return "tensorflow"
    if isinstance(model, catboost.CatBoost):
        return "catboost"
    if isinstance(model, logistic_regression.LogisticModel):
        return "logistic"
    raise TypeError(
        f"unsupported model type {type(model).__qualname__}; expected a keras.Model, a CatBoost model or a "
        "LogisticModel"
    )


def _as_path(target: str | os.PathLike) -> UPath:
    # UPath keeps the storage options (endpoint, credentials) a caller attached to it.
    return target if isinstance(target, UPath) else UPath(target)


def _write_native(model: Any, kind: ModelKind, file: Path) -> None:
    if kind == "tensorflow":
        model.save(file)
    elif kind == "catboost":
        model.save_model(str(file), format="cbm")
    else:
        file.write_bytes(logistic_regression.to_document(model))


def save_model(model: Any, target: str | os.PathLike) -> ArtifactInfo:
    """Write ``model`` to ``target`` (local path or URI such as s3://bucket/key.keras) atomically.

    The target's suffix must be the native one for the model's kind (see MODEL_SUFFIX).
    """
    kind = model_kind(model)
    path = _as_path(target)
    suffix = MODEL_SUFFIX[kind]
    if path.suffix != suffix:
        raise ValueError(
            f"a {kind} model is saved as '{suffix}', but the target is {str(path)!r}; use a '{suffix}' name"
        )

    with tempfile.TemporaryDirectory(prefix="turbine-model-") as scratch:
        local_file = Path(scratch) / f"model{suffix}"
        _write_native(model, kind, local_file)
        size_bytes = local_file.stat().st_size
        if is_local(path):
            destination = Path(path.path).absolute()
            with AtomicFile(destination) as staged, staged.path.open("xb") as copy, local_file.open("rb") as source:
                shutil.copyfileobj(source, copy)
            uri = str(destination)
        else:
            path.fs.put_file(str(local_file), path.path)
            uri = str(path)
    return ArtifactInfo(uri=uri, size_bytes=size_bytes, format=suffix.lstrip("."))


def _read_native(kind: ModelKind, file: Path, source: str) -> Any:
    """The model in ``file``, a local copy of ``source`` (named in errors) when that is remote."""
    if kind == "tensorflow":
        return keras.models.load_model(file)
    if kind == "catboost":
        return catboost.CatBoostClassifier().load_model(str(file), format="cbm")
    return logistic_regression.from_document(file.read_bytes(), source)


def load_model(uri: str | os.PathLike) -> Any:
    """Read a model written by ``save_model``; the suffix says which kind it is."""
    path = _as_path(uri)
    kind = _KIND_BY_SUFFIX.get(path.suffix)
    if kind is None:
        raise ValueError(f"cannot tell the model kind of {str(path)!r}: expected one of {sorted(_KIND_BY_SUFFIX)}")
    if is_local(path):
        return _read_native(kind, Path(path.path), str(path))
    with tempfile.TemporaryDirectory(prefix="turbine-model-") as scratch:
        local_file = Path(scratch) / f"model{path.suffix}"
        path.fs.get_file(path.path, str(local_file))
        return _read_native(kind, local_file, str(path))
