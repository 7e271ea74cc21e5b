"""One IO manager for every stored asset value, on a local folder or an ``s3://`` URI.

Values are kept in their native formats — Parquet for frames, JSON for reports, ``.keras`` and
``.cbm`` for models — never pickled. Writes are atomic: a reader never finds half a file.
"""

import io
import json
from typing import Any, Literal

import dagster as dg
import pandas as pd
from dagster_aws.s3 import S3Resource
from pydantic import Field
from upath import UPath

from turbine_dagster.core import storage
from turbine_dagster.defs.object_store import s3fs_options

Format = Literal["parquet", "json", "keras", "cbm"]
SUFFIXES: dict[str, str] = {"parquet": ".parquet", "json": ".json", "keras": ".keras", "cbm": ".cbm"}


class _NativeFormatIOManager(dg.UPathIOManager):
    def __init__(self, base_path: UPath, file_format: Format):
        self.extension = SUFFIXES[file_format]
        self.file_format = file_format
        super().__init__(base_path=base_path)

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if self.file_format == "parquet":
            buffer = io.BytesIO()
            obj.to_parquet(buffer, index=False)
            storage.write_bytes_atomic(path, buffer.getvalue())
        elif self.file_format == "json":
            storage.write_bytes_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())
        else:
            from turbine_dagster.core.model_store import save_model  # TensorFlow loads only where models are

            save_model(obj, path)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        if self.file_format == "parquet":
            with path.open("rb") as handle:
                return pd.read_parquet(handle)
        if self.file_format == "json":
            return json.loads(path.read_bytes())
        from turbine_dagster.core.model_store import load_model

        return load_model(path)

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict[str, Any]:
        path = next(iter(self._get_paths_for_partitions(context).values())) if context.has_asset_partitions \
            else self._get_path(context)
        return {"artifact_bytes": path.stat().st_size}  # the URI is Dagster's own `path` entry


class ArtifactIOManager(dg.ConfigurableIOManagerFactory):
    """Stores asset values under ``base_path/<asset>/<team>/<week><suffix>`` in one native format."""

    base_path: str = Field(description="Folder or s3:// URI under which asset values are stored.")
    file_format: Format = Field(description="parquet (frames), json (reports), keras or cbm (models).")
    s3: S3Resource | None = Field(None, description="S3 connection settings when base_path is an s3:// URI.")

    def create_io_manager(self, context: dg.InitResourceContext) -> _NativeFormatIOManager:
        return _NativeFormatIOManager(UPath(self.base_path, **s3fs_options(self.s3)), self.file_format)
