"""One IO manager for every stored asset value, on a local folder or an ``s3://`` URI.

Values are kept in their native formats — Parquet for frames, JSON for reports, ``.keras``, ``.cbm`` and
``.logreg`` for models — never pickled. Writes are atomic: a reader never finds half a file. A storage error that a
retry cannot cure (a missing file, a refused permission) fails the step for good; timeouts and lost connections
are left to the assets' retry policy.
"""

import io
import json
from typing import Any, Literal

import dagster as dg
import pandas as pd
from dagster_aws.s3 import S3Resource
from pydantic import Field
from upath import UPath

from turbine_dagster.core.data import landing
from turbine_dagster.core.storage import files
from turbine_dagster.defs.object_store import s3fs_options
from turbine_dagster.defs.partitions import parse_team_week
from turbine_dagster.defs.retries import final_unless_transient
from turbine_dagster.defs.table_metadata import table_metadata

Format = Literal["parquet", "json", "keras", "cbm", "logreg"]
SUFFIXES: dict[str, str] = {
    "parquet": ".parquet",
    "json": ".json",
    "keras": ".keras",
    "cbm": ".cbm",
    "logreg": ".logreg",
}


class _NativeFormatIOManager(dg.UPathIOManager):
    def __init__(self, base_path: UPath, file_format: Format):
        self.extension = SUFFIXES[file_format]
        self.file_format = file_format
        super().__init__(base_path=base_path)

    def get_path_for_partition(self, context: dg.InputContext | dg.OutputContext, path: UPath, partition: str) -> UPath:
        """``path/<team>/<week>``, from a key checked here, where the path is built: whatever let the key through
        (a launch that skipped Dagster's own validation), no path can leave the storage root. A key handed over
        as the plain string ``team|week`` is stored where its MultiPartitionKey is."""
        team, week = _team_and_week(partition, context)
        return path / team / week

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        with final_unless_transient(f"{_asset_name(context)}: writing {path}"):
            if self.file_format == "parquet":
                buffer = io.BytesIO()
                obj.to_parquet(buffer, index=False)
                files.write_bytes_atomic(path, buffer.getbuffer())  # no copy of the file
            elif self.file_format == "json":
                files.write_bytes_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())
            else:
                from turbine_dagster.core.storage.model_files import (
                    save_model,  # TensorFlow loads only where models are
                )

                save_model(obj, path)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        with final_unless_transient(f"{_asset_name(context)}: reading {path}"):
            if self.file_format == "parquet":
                with path.open("rb") as handle:
                    return pd.read_parquet(handle)
            if self.file_format == "json":
                return json.loads(path.read_bytes())
            from turbine_dagster.core.storage.model_files import load_model

            return load_model(path)

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict[str, Any]:
        path = (
            next(iter(self._get_paths_for_partitions(context).values()))
            if context.has_asset_partitions
            else self._get_path(context)
        )
        metadata = {"artifact_bytes": path.stat().st_size}  # the URI is Dagster's own `path` entry
        if self.file_format == "parquet" and isinstance(obj, pd.DataFrame):
            metadata.update(table_metadata(obj))  # the catalog's columns, types and row count
        return metadata


def _asset_name(context: dg.InputContext | dg.OutputContext) -> str:
    return context.asset_key.to_user_string() if context.has_asset_key else "an asset"


def _team_and_week(partition: str, context: dg.InputContext | dg.OutputContext) -> tuple[str, str]:
    """Team and week of the key that Dagster formatted as ``partition`` (dimension values joined by '/', which a
    value holding '/' would make ambiguous, so the key itself is looked up), or of a plain ``team|week`` string."""
    key = next(
        (
            k
            for k in context.asset_partition_keys
            if isinstance(k, dg.MultiPartitionKey)
            and "/".join(v for _, v in sorted(k.keys_by_dimension.items())) == partition
        ),
        partition,
    )
    try:
        team, week = parse_team_week(key)
        return landing.validate_team(team), landing.validate_week(week)
    except ValueError as error:  # LandingError included
        raise landing.LandingError(
            f"{_asset_name(context)}: partition {str(key)!r} cannot name a storage path: {error}; nothing was stored "
            "or read"
        ) from error


class ArtifactIOManager(dg.ConfigurableIOManagerFactory):
    """Stores asset values under ``base_path/<asset>/<team>/<week><suffix>`` in one native format."""

    base_path: str = Field(description="Folder or s3:// URI under which asset values are stored.")
    file_format: Format = Field(description="parquet (frames), json (reports), keras, cbm or logreg (models).")
    s3: S3Resource | None = Field(None, description="S3 connection settings when base_path is an s3:// URI.")

    def create_io_manager(self, context: dg.InitResourceContext) -> _NativeFormatIOManager:
        return _NativeFormatIOManager(UPath(self.base_path, **s3fs_options(self.s3)), self.file_format)
