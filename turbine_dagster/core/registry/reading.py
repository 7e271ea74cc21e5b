"""Reading the model registry: a team's versions with their status, the serving pointer and its history,
the events, and the stored models and drift references. ``ModelRegistry`` adds registration and pointer moves.
"""

import io
import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from upath import UPath

from turbine_dagster.core.data.landing import is_team_name, validate_team
from turbine_dagster.core.models.checkpoints import Checkpoint
from turbine_dagster.core.registry import history, objects
from turbine_dagster.core.registry.versions import (
    ModelVersion,
    RegistryLookupError,
    VersionStatus,
    parse_version,
    version_label,
)
from turbine_dagster.core.storage.files import is_local

_ENTRY, _POINTER = "entry.json", "serving.json"
_VERSION_FOLDER = re.compile(r"^v(\d{4,})$")


class RegistryReader:
    """A registry rooted at a local folder or an ``s3://`` URI (``storage_options`` go to fsspec), for reading."""

    def __init__(self, root: str | os.PathLike, storage_options: Mapping[str, Any] | None = None) -> None:
        self._storage_options = dict(storage_options or {})
        root_path = UPath(root, **self._storage_options)
        # Entries record URIs; a relative local root would make them depend on the working directory.
        self.root = UPath(os.path.abspath(root_path.path)) if is_local(root_path) else root_path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    # -- paths -----------------------------------------------------------------------------------

    def _path(self, uri: str) -> UPath:
        return UPath(uri, **self._storage_options)

    def _team_dir(self, team: str) -> UPath:
        return self.root / validate_team(team)  # a folder name: the rule keeps it inside the root

    def _version_dir(self, team: str, version: int) -> UPath:
        return self._team_dir(team) / "versions" / version_label(version)

    def _entry_path(self, team: str, version: int) -> UPath:
        return self._version_dir(team, version) / _ENTRY

    def _pointer_path(self, team: str) -> UPath:
        return self._team_dir(team) / _POINTER

    def _event_path(self, team: str, event_id: str) -> UPath:
        return self._team_dir(team) / "events" / f"{event_id}.json"

    def _names(self, folder: UPath) -> list[str]:
        """The names in ``folder``, sorted; empty when it does not exist."""
        if not is_local(folder):
            folder.fs.invalidate_cache(folder.path)  # another process may have written since the last listing
        try:
            entries = folder.fs.ls(folder.path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries)

    # -- reading ---------------------------------------------------------------------------------

    def teams(self) -> list[str]:
        return [name for name in self._names(self.root) if is_team_name(name)]

    def _claimed_numbers(self, team: str) -> list[int]:
        """Every reserved number, complete or not, so a crashed registration's number is never reused."""
        folders = (_VERSION_FOLDER.match(name) for name in self._names(self._team_dir(team) / "versions"))
        return sorted(int(match.group(1)) for match in folders if match)

    def _entries(self, team: str) -> list[dict[str, Any]]:
        entries = []
        for number in self._claimed_numbers(team):
            try:
                entries.append(objects.read_json(self._entry_path(team, number)))
            except FileNotFoundError:
                continue  # registration still running, or it died before its entry was written
        return entries

    def _statuses(self, team: str, pointer: dict[str, Any] | None) -> Callable[[int], VersionStatus]:
        serving_version = pointer["version"] if pointer else None
        events = self._all_events(team)
        served = {
            move["version"] for move in history.moves_of(pointer, events)
        }  # from the pointer: survives a lost event
        refused = {event["version"] for event in events if event["kind"] == "refused"}

        def status(version: int) -> VersionStatus:
            if version == serving_version:
                return "serving"
            if version in served:
                return "retired"
            return "refused" if version in refused else "candidate"

        return status

    def _read_pointer(self, team: str) -> tuple[dict[str, Any] | None, str | None]:
        """The serving pointer and, on S3, the ETag that a conditional replace must match."""
        return objects.read_with_etag(self._pointer_path(team))

    def versions(self, team: str) -> list[ModelVersion]:
        """All complete versions of ``team``, oldest first; empty for a team with none yet."""
        pointer, _ = self._read_pointer(team)
        status = self._statuses(team, pointer)
        return [ModelVersion.from_entry(entry, status(entry["version"])) for entry in self._entries(team)]

    def _available(self, team: str) -> str:
        """``v0001 (no checkpoints), v0002 (checkpoints: epoch-0005, best)``; empty when the team has none."""
        return ", ".join(ModelVersion.from_entry(entry, "candidate").describe() for entry in self._entries(team))

    def _unknown(self, team: str, version: int) -> RegistryLookupError:
        available = self._available(team)
        if available:
            return RegistryLookupError(
                f"team {team!r} has no version {version_label(version)} in {self.root}; available: {available}"
            )
        teams = self.teams()
        return RegistryLookupError(
            f"team {team!r} has no registered version in {self.root}; "
            f"teams with versions: {', '.join(teams) if teams else 'none yet'}"
        )

    def get(self, team: str, version: int) -> ModelVersion:
        try:
            entry = objects.read_json(self._entry_path(team, version))
        except FileNotFoundError:
            raise self._unknown(team, version) from None
        pointer, _ = self._read_pointer(team)
        # The serving version, and one that served, need no events: the prediction side never pays for reading them.
        status: VersionStatus
        if pointer and version == pointer["version"]:
            status = "serving"
        elif pointer and any(move["version"] == version for move in pointer.get("history", ())):
            status = "retired"
        else:
            status = self._statuses(team, pointer)(version)
        return ModelVersion.from_entry(entry, status)

    def serving(self, team: str) -> ModelVersion | None:
        """The version serving ``team``, or None before its first promotion."""
        pointer, _ = self._read_pointer(team)
        return self.get(team, pointer["version"]) if pointer else None

    def newest_not_serving(self, team: str) -> ModelVersion | None:
        """The highest-numbered version that does not serve ``team`` (the default challenger); None if none."""
        pointer, _ = self._read_pointer(team)
        serving_version = pointer["version"] if pointer else None
        entries = [entry for entry in self._entries(team) if entry["version"] != serving_version]
        return self.get(team, entries[-1]["version"]) if entries else None

    def events(self, team: str) -> list[dict[str, Any]]:
        """Every recorded event of ``team``, oldest first.

        A pointer move's event is written before the move; until the pointer names it (and for ever
        if the move lost a race or failed) it is not listed.
        """
        pointer, _ = self._read_pointer(team)  # before listing: every move it names has its event written
        events = self._all_events(team)
        return history.visible_events(events, history.moves_of(pointer, events))

    def pointer_history(self, team: str) -> list[dict[str, Any]]:
        """Every move of ``team``'s serving pointer, oldest first (``version``, ``previous_version``, ``kind``,
        ``event_id``, ``at``); empty before the first promotion.

        Each move replaced the version installed by the move before it. The history lives in the pointer
        object and is replaced with it, atomically.
        """
        pointer, _ = self._read_pointer(team)
        return self._moves(team, pointer)

    def _moves(self, team: str, pointer: dict[str, Any] | None) -> list[dict[str, Any]]:
        # Only a pointer written before pointers carried their history needs the events.
        legacy = pointer is not None and "history" not in pointer
        return history.moves_of(pointer, self._all_events(team) if legacy else [])

    def _all_events(self, team: str) -> list[dict[str, Any]]:
        """Every event object stored for ``team``, including moves that never happened."""
        folder = self._team_dir(team) / "events"
        paths = [f"{folder.path}/{name}" for name in self._names(folder) if name.endswith(".json")]
        if not paths:
            return []
        contents = folder.fs.cat(paths, on_error="return")  # one concurrent batch on object stores
        events = []
        for path in sorted(contents):  # names start with the UTC time, so path order is time order
            content = contents[path]
            if isinstance(content, FileNotFoundError):
                continue  # the event of a move that lost its race, removed since the listing
            if isinstance(content, BaseException):
                raise content
            events.append(json.loads(content))
        return events

    def resolve(
        self, team: str, version: int | str | None = None, checkpoint: str | None = None
    ) -> tuple[ModelVersion, Checkpoint | None]:
        """The version (3, "3" or "v0003"; None: the one serving ``team``) and, if named, its checkpoint.

        RegistryLookupError when either does not exist; the message lists the team's versions with
        their checkpoints, or the version's checkpoints.
        """
        if version is None:
            chosen = self.serving(team)
            if chosen is None:
                available = self._available(team)
                raise RegistryLookupError(
                    f"team {team!r} has no serving version in {self.root}; "
                    + (f"name one of its versions: {available}" if available else "it has no registered version yet")
                )
        else:
            chosen = self.get(team, parse_version(version))
        return chosen, (chosen.checkpoint(checkpoint) if checkpoint is not None else None)

    def load_model(self, model_version: ModelVersion, checkpoint: str | Checkpoint | None = None) -> Any:
        """The version's model, or the model of one of its checkpoints (an id or a ``Checkpoint``)."""
        from turbine_dagster.core.storage import (
            model_files,  # imports TensorFlow: only paid by callers that load models
        )

        if checkpoint is None:
            return model_files.load_model(self._path(model_version.artifact_uri))
        if isinstance(checkpoint, str):
            checkpoint = model_version.checkpoint(checkpoint)
        if checkpoint.artifact_uri is None:
            raise ValueError(f"checkpoint {checkpoint.checkpoint_id} has no artifact_uri: it was never stored")
        return model_files.load_model(self._path(checkpoint.artifact_uri))

    def load_reference(self, model_version: ModelVersion) -> pd.DataFrame:
        """The training features stored with the version, for drift detection."""
        return pd.read_parquet(io.BytesIO(self._path(model_version.reference_uri).read_bytes()))
