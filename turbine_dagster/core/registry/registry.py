"""The model registry: immutable, numbered model versions per team, a serving pointer, and a history.

Layout under the root (a local folder or ``s3://bucket/prefix``)::

    <team>/versions/v0001/claim.json         written first and exclusively: reserves the number
    <team>/versions/v0001/model.cbm|.keras   the native model (model_store.save_model)
    <team>/versions/v0001/reference.parquet  training features, the reference for drift detection
    <team>/versions/v0001/checkpoints/epoch-0005.keras   the version's training checkpoints, if any
    <team>/versions/v0001/entry.json         written last: the version exists once this file does
    <team>/serving.json                      the version that serves the team, and every move before it
    <team>/events/<time>-<kind>-v0001-<id>.json   one object per event, never rewritten
    <team>.lock                              local roots only: the cross-process lock

A version is scored with its own model or with one of its checkpoints (``resolve``, ``load_model``);
the entry lists each checkpoint's id, step, validation metrics, threshold and artifact.

Nothing in a version folder changes after ``entry.json`` is written. A version's status
(serving, retired, refused, candidate) is derived from the serving pointer and the events rather
than stored in the entry: a second copy of the pointer could disagree with it after a crash.
The pointer carries its own history (every move: version, previous version, kind, event id), so
"served before" (retired, and what ``rollback`` accepts) needs no event and survives a lost one.
A pointer written before the history existed is read as the history its events give, ending with it.

Concurrency guarantees:

- **Version numbers** are reserved by creating ``claim.json`` exclusively (``O_EXCL`` locally, a
  conditional PUT with ``If-None-Match: *`` on S3); the loser of a race takes the next number.
  Two registrations never share a number, locally or on S3. On other fsspec stores the exclusive
  create is check-then-write and not atomic.
- **The serving pointer** (``promote_if``, ``rollback``) is read, decided on and replaced under a
  per-team lock. Local roots: an in-process lock plus a ``filelock`` lock file, which serialises
  processes on the same host (flock; not reliable on NFS). S3 roots: an in-process lock plus a
  compare-and-swap write of ``serving.json`` (``If-Match`` on the ETag read, ``If-None-Match``
  for the first pointer); a promotion that lost a race (412, or 409 when S3 is completing another
  conditional write) re-reads the pointer and decides again, so it is never decided against a
  pointer it did not replace. A write whose answer was lost is retried by the S3 client and then
  meets 412 although it landed: the re-read pointer's history names our event, so the write is
  known to be ours and is reported as made, once. This needs a store that honours
  conditional PUTs (AWS S3 does; check an S3-compatible store before relying on it). Other remote
  stores: the in-process lock only; serialise across processes outside (the Dagster ``registry``
  pool with limit 1).
- **Events** get unique names and are written whole (rename locally, single PUT on S3), so a
  reader never sees a half-written event. A pointer move's event (``moves_pointer``) is written
  before the move and names it; it counts once the pointer history names its id, so a move never
  lacks its event, and the event of a move that lost its race or failed is never listed (it is
  deleted once the pointer has moved past the one it was decided on). Refusals and
  registrations move nothing and are written after the decision or the entry.
"""

import datetime as dt
import io
import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

import filelock
import numpy as np
import pandas as pd
from upath import UPath

from turbine_dagster.core.evaluation.selection import GateDecision
from turbine_dagster.core.models.checkpoints import Checkpoint, describe_checkpoints
from turbine_dagster.core.schema import FEATURE_COLUMNS
from turbine_dagster.core.storage.files import is_local, write_bytes_atomic

EventKind = Literal["registered", "promoted", "refused", "rollback"]
VersionStatus = Literal["serving", "retired", "refused", "candidate"]

REFERENCE_MAX_ROWS = 5000
"""Drift reference rows kept per version; enough for PSI/KS, small enough to read on every scoring run."""

_TEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # one safe path segment: no dots, no slashes
_VERSION_FOLDER = re.compile(r"^v(\d{4,})$")
_CLAIM, _ENTRY, _REFERENCE, _POINTER = "claim.json", "entry.json", "reference.parquet", "serving.json"
_CHECKPOINTS = "checkpoints"
_POINTER_ATTEMPTS = 10
_MOVES: tuple[EventKind, ...] = ("promoted", "rollback")
_LOST_CONDITIONAL_WRITE = {"PreconditionFailed": 412, "ConditionalRequestConflict": 409}
_S3_PROTOCOLS = ("s3", "s3a")

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


class RegistryLookupError(LookupError):
    """An unknown team, version or checkpoint; the message lists what exists."""


class ConcurrentPromotionError(RuntimeError):
    """The serving pointer kept changing under a promotion or rollback (remote roots only)."""


class _PointerMoved(Exception):
    """A conditional write of the serving pointer lost to another writer."""


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
        return {**asdict(self), "checkpoints": [checkpoint.to_dict() for checkpoint in self.checkpoints]}


@dataclass(frozen=True)
class _Move:
    """Move the serving pointer to the target version, recorded as an event of ``kind``."""

    kind: EventKind
    reason: str
    run_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


T = TypeVar("T")
PointerChange = Callable[[ModelVersion | None, ModelVersion], tuple[_Move | None, Callable[[dict[str, Any] | None], T]]]


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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"{type(value).__qualname__} is not JSON-serialisable; registry entries hold plain values")

    return json.dumps(payload, indent=2, sort_keys=True, default=plain).encode()


def _is_lost_conditional_write(error: OSError) -> bool:
    """412 (the object changed since it was read) or 409 (S3 was completing another conditional write on it)."""
    response = getattr(error.__cause__, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _LOST_CONDITIONAL_WRITE or status in _LOST_CONDITIONAL_WRITE.values()


def _moves_of(pointer: dict[str, Any] | None, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every move of the serving pointer, oldest first, the last one installing ``pointer``.

    Pointers carry their history. One written before they did is rebuilt from the events of that time
    (written after each move, so one may be missing) and ends with the pointer itself.
    """
    if pointer is None:
        return []
    if "history" in pointer:
        return list(pointer["history"])
    moves = [
        {key: event[key] for key in ("version", "previous_version", "kind", "event_id", "at")}
        for event in events
        if event["kind"] in _MOVES and not event.get("moves_pointer")
    ]
    if not moves or moves[-1]["version"] != pointer["version"]:
        moves.append(
            {
                "version": pointer["version"],
                "previous_version": moves[-1]["version"] if moves else None,
                "kind": pointer.get("by", "promoted"),
                "event_id": None,
                "at": pointer.get("since"),
            }
        )
    return moves


def _visible(events: Sequence[dict[str, Any]], moves: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events that happened: a pointer move's event counts once the pointer history names it."""
    made = {move["event_id"] for move in moves}
    return [event for event in events if not event.get("moves_pointer") or event["event_id"] in made]


class ModelRegistry:
    """Registry rooted at a local folder or an ``s3://`` URI (``storage_options`` go to fsspec)."""

    def __init__(
        self, root: str | os.PathLike, storage_options: Mapping[str, Any] | None = None, lock_timeout_s: float = 120.0
    ) -> None:
        self._storage_options = dict(storage_options or {})
        root_path = UPath(root, **self._storage_options)
        # Entries record URIs; a relative local root would make them depend on the working directory.
        self.root = UPath(os.path.abspath(root_path.path)) if is_local(root_path) else root_path
        self.lock_timeout_s = lock_timeout_s

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # -- paths and low-level I/O ---------------------------------------------------------------

    def _path(self, uri: str) -> UPath:
        return UPath(uri, **self._storage_options)

    def _team_dir(self, team: str) -> UPath:
        if not isinstance(team, str) or not _TEAM_NAME.match(team):
            raise ValueError(f"invalid team name {team!r}: use letters, digits, '_' and '-' (it becomes a folder name)")
        return self.root / team

    def _version_dir(self, team: str, version: int) -> UPath:
        return self._team_dir(team) / "versions" / version_label(version)

    def _names(self, folder: UPath) -> list[str]:
        if not is_local(folder):
            folder.fs.invalidate_cache(folder.path)  # another process may have written since the last listing
        try:
            entries = folder.fs.ls(folder.path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries)

    @staticmethod
    def _read_json(path: UPath) -> dict[str, Any]:
        return json.loads(path.read_bytes())

    @staticmethod
    def _create_exclusive(path: UPath, data: bytes) -> None:
        """Write ``data`` only if ``path`` does not exist yet; FileExistsError otherwise."""
        if is_local(path):
            os.makedirs(os.path.dirname(path.path), exist_ok=True)
            with open(path.path, "xb") as handle:
                handle.write(data)
        else:
            path.fs.pipe_file(path.path, data, mode="create")

    # -- reading ---------------------------------------------------------------------------------

    def teams(self) -> list[str]:
        return [name for name in self._names(self.root) if _TEAM_NAME.match(name)]

    def _claimed_numbers(self, team: str) -> list[int]:
        """Every reserved number, complete or not, so a crashed registration's number is never reused."""
        folders = (_VERSION_FOLDER.match(name) for name in self._names(self._team_dir(team) / "versions"))
        return sorted(int(match.group(1)) for match in folders if match)

    def _entries(self, team: str) -> list[dict[str, Any]]:
        entries = []
        for number in self._claimed_numbers(team):
            try:
                entries.append(self._read_json(self._version_dir(team, number) / _ENTRY))
            except FileNotFoundError:
                continue  # registration still running, or it died before its entry was written
        return entries

    def _statuses(self, team: str, pointer: dict[str, Any] | None) -> Callable[[int], VersionStatus]:
        serving_version = pointer["version"] if pointer else None
        events = self._all_events(team)
        served = {move["version"] for move in _moves_of(pointer, events)}  # from the pointer: survives a lost event
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
        path = self._team_dir(team) / _POINTER
        etag = None
        try:
            if path.protocol in _S3_PROTOCOLS:
                path.fs.invalidate_cache(path.path)
                etag = path.fs.info(path.path)["ETag"]  # read before the body: a stale ETag fails safe
                # A plain GET: opening the file would check the ETag and fail if a writer replaced it meanwhile.
                return json.loads(path.fs.cat_file(path.path)), etag
            return self._read_json(path), etag
        except FileNotFoundError:
            return None, None

    def _as_version(self, entry: dict[str, Any], status: VersionStatus) -> ModelVersion:
        # Entries written before checkpoints (or split_scheme) existed lack those keys: the defaults apply.
        checkpoints = tuple(Checkpoint.from_dict(item) for item in entry.get(_CHECKPOINTS, ()))
        return ModelVersion(**{**entry, _CHECKPOINTS: checkpoints}, status=status)

    def versions(self, team: str) -> list[ModelVersion]:
        """All complete versions of ``team``, oldest first; empty for a team with none yet."""
        pointer, _ = self._read_pointer(team)
        status = self._statuses(team, pointer)
        return [self._as_version(entry, status(entry["version"])) for entry in self._entries(team)]

    def _available(self, team: str) -> str:
        """``v0001 (no checkpoints), v0002 (checkpoints: epoch-0005, best)``; empty when the team has none."""
        return ", ".join(self._as_version(entry, "candidate").describe() for entry in self._entries(team))

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
            entry = self._read_json(self._version_dir(team, version) / _ENTRY)
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
        return self._as_version(entry, status)

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
        return _visible(events, _moves_of(pointer, events))

    def pointer_history(self, team: str) -> list[dict[str, Any]]:
        """Every move of ``team``'s serving pointer, oldest first (``version``, ``previous_version``, ``kind``,
        ``event_id``, ``at``); empty before the first promotion.

        Each move replaced the version installed by the move before it. The history lives in the pointer
        object and is replaced with it, atomically.
        """
        pointer, _ = self._read_pointer(team)
        legacy = pointer is not None and "history" not in pointer
        return _moves_of(pointer, self._all_events(team) if legacy else [])

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
            model_files as model_store,  # imports TensorFlow: only paid by callers that load models
        )

        if checkpoint is None:
            return model_store.load_model(self._path(model_version.artifact_uri))
        if isinstance(checkpoint, str):
            checkpoint = model_version.checkpoint(checkpoint)
        if checkpoint.artifact_uri is None:
            raise ValueError(f"checkpoint {checkpoint.checkpoint_id} has no artifact_uri: it was never stored")
        return model_store.load_model(self._path(checkpoint.artifact_uri))

    def load_reference(self, model_version: ModelVersion) -> pd.DataFrame:
        """The training features stored with the version, for drift detection."""
        return pd.read_parquet(io.BytesIO(self._path(model_version.reference_uri).read_bytes()))

    # -- writing -------------------------------------------------------------------------------

    def _record(
        self,
        team: str,
        kind: EventKind,
        version: int,
        *,
        previous_version: int | None = None,
        reason: str = "",
        run_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        moves_pointer: bool = False,
    ) -> dict[str, Any]:
        """Write one event. ``moves_pointer``: it records a pointer move, written before the move and
        counted once the pointer history names it."""
        at = _now()
        event_id = f"{at:%Y%m%dT%H%M%S%fZ}-{kind}-{version_label(version)}-{uuid.uuid4().hex[:8]}"
        event = {
            "event_id": event_id,
            "kind": kind,
            "team": team,
            "version": version,
            "previous_version": previous_version,
            "reason": reason,
            "run_id": run_id,
            "details": dict(details or {}),
            "moves_pointer": moves_pointer,
            "at": at.isoformat(),
        }
        write_bytes_atomic(self._event_path(team, event_id), _json_bytes(event))
        return event

    def _event_path(self, team: str, event_id: str) -> UPath:
        return self._team_dir(team) / "events" / f"{event_id}.json"

    def _claim_version(self, team: str, run_id: str | None) -> int:
        number = max(self._claimed_numbers(team), default=0) + 1
        claim = _json_bytes({"run_id": run_id, "claimed_at": _now().isoformat()})
        while True:
            try:
                self._create_exclusive(self._version_dir(team, number) / _CLAIM, claim)
                return number
            except FileExistsError:
                number += 1  # a concurrent registration took this number

    def register(
        self,
        team: str,
        model: Any,
        *,
        threshold: float,
        metrics: Mapping[str, Any],
        partition: str | None,
        run_id: str | None,
        data_version: str | None,
        reference: pd.DataFrame,
        model_type: str | None = None,
        checkpoints: Sequence[Checkpoint] = (),
        split_scheme: str | None = None,
    ) -> ModelVersion:
        """Store ``model`` as the next version of ``team`` (a candidate: promotion is ``promote_if``).

        ``model_type`` labels the entry (default: the model kind, "tensorflow" or "catboost");
        ``reference`` must hold the feature columns, of which at most REFERENCE_MAX_ROWS rows are kept.
        ``checkpoints`` (from training, each with its model object or the ``artifact_uri`` of a native
        file of the same kind as ``model``) are stored under the version, in the order given.
        ``split_scheme`` names how the training data was split (kept in the entry as given).
        """
        from turbine_dagster.core.storage import (
            model_files as model_store,  # imports TensorFlow: only paid by callers that save models
        )

        kind = model_store.model_kind(model)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")
        missing = [column for column in FEATURE_COLUMNS if column not in reference.columns]
        if missing:
            raise ValueError(
                f"reference for team {team!r} lacks feature column(s) {missing}; pass the training features"
            )
        features = reference.loc[:, list(FEATURE_COLUMNS)]
        if len(features) > REFERENCE_MAX_ROWS:
            features = features.sample(n=REFERENCE_MAX_ROWS, random_state=0).sort_index()
        entry_metrics = json.loads(_json_bytes(dict(metrics)))  # fail before any file is written
        suffix = model_store.MODEL_SUFFIX[kind]
        self._check_checkpoints(team, checkpoints, kind, suffix)

        version = self._claim_version(team, run_id)
        folder = self._version_dir(team, version)
        artifact = model_store.save_model(model, folder / f"model{suffix}")
        reference_path = folder / _REFERENCE
        buffer = io.BytesIO()
        features.to_parquet(buffer, index=False)
        write_bytes_atomic(reference_path, buffer.getvalue())
        stored = [
            self._store_checkpoint(checkpoint, folder / _CHECKPOINTS / f"{checkpoint.checkpoint_id}{suffix}")
            for checkpoint in checkpoints
        ]
        entry = {
            "team": team,
            "version": version,
            "model_type": model_type or kind,
            "artifact_uri": artifact.uri,
            "reference_uri": str(reference_path),
            "threshold": float(threshold),
            "metrics": entry_metrics,
            "partition": partition,
            "run_id": run_id,
            "data_version": data_version,
            "created_at": _now().isoformat(),
            _CHECKPOINTS: [checkpoint.to_dict() for checkpoint in stored],
            "split_scheme": split_scheme,
        }
        write_bytes_atomic(folder / _ENTRY, _json_bytes(entry))
        self._record(team, "registered", version, reason=f"registered from partition {partition}", run_id=run_id)
        return self._as_version(entry, "candidate")

    @staticmethod
    def _check_checkpoints(team: str, checkpoints: Sequence[Checkpoint], kind: str, suffix: str) -> None:
        """Refuse, before anything is written, checkpoints that cannot be stored with a ``kind`` model."""
        from turbine_dagster.core.storage import model_files as model_store

        seen: set[str] = set()
        for checkpoint in checkpoints:
            where = f"checkpoint {checkpoint.checkpoint_id!r} for team {team!r}"
            if checkpoint.checkpoint_id in seen:
                raise ValueError(f"{where} is given twice; checkpoint ids are unique within a version")
            seen.add(checkpoint.checkpoint_id)
            if checkpoint.model is not None:
                if model_store.model_kind(checkpoint.model) != kind:
                    raise ValueError(
                        f"{where} holds a {model_store.model_kind(checkpoint.model)} model, but the version's "
                        f"model is {kind}; a version keeps checkpoints of its own model only"
                    )
            elif checkpoint.artifact_uri is None:
                raise ValueError(f"{where} has neither a model object nor an artifact_uri to store")
            elif not checkpoint.artifact_uri.endswith(suffix):
                raise ValueError(
                    f"{where}: {checkpoint.artifact_uri} is not a '{suffix}' file, the format of the version's "
                    f"{kind} model"
                )
            json.loads(_json_bytes(checkpoint.to_dict()))  # plain metrics only

    def _store_checkpoint(self, checkpoint: Checkpoint, target: UPath) -> Checkpoint:
        from turbine_dagster.core.storage import model_files as model_store

        if checkpoint.model is not None:
            uri = model_store.save_model(checkpoint.model, target).uri
        else:  # a native file written by save_checkpoints: copied byte for byte
            source = UPath(checkpoint.artifact_uri)
            source = source if is_local(source) else self._path(checkpoint.artifact_uri)
            write_bytes_atomic(target, source.read_bytes())
            uri = str(target)
        return Checkpoint.from_dict({**checkpoint.to_dict(), "artifact_uri": uri})

    @contextmanager
    def _team_lock(self, team: str) -> Iterator[None]:
        key = f"{self.root}/{team}"
        with _process_locks_guard:
            process_lock = _process_locks.setdefault(key, threading.Lock())
        if not process_lock.acquire(timeout=self.lock_timeout_s):
            raise TimeoutError(
                f"another thread held the registry lock of team {team!r} for over {self.lock_timeout_s} s"
            )
        try:
            if not is_local(self.root):
                yield
                return
            lock_path = f"{self._team_dir(team).path}.lock"
            os.makedirs(self.root.path, exist_ok=True)
            try:
                with filelock.FileLock(lock_path, timeout=self.lock_timeout_s):
                    yield
            except filelock.Timeout:
                raise TimeoutError(
                    f"could not lock {lock_path} within {self.lock_timeout_s} s: another process is promoting or "
                    f"rolling back team {team!r}; retry when it has finished"
                ) from None
        finally:
            process_lock.release()

    def _replace_pointer(self, team: str, data: bytes, etag: str | None) -> None:
        """Write the pointer; on S3 only over the object read with ``etag`` (None: only if there is none)."""
        path = self._team_dir(team) / _POINTER
        if path.protocol not in _S3_PROTOCOLS:
            write_bytes_atomic(path, data)  # the team lock already excludes other writers
            return
        try:
            if etag is None:
                path.fs.pipe_file(path.path, data, mode="create")
            else:
                path.fs.pipe_file(path.path, data, IfMatch=etag)
        except FileExistsError:
            raise _PointerMoved from None
        except OSError as error:
            if _is_lost_conditional_write(error):
                raise _PointerMoved from None
            raise

    def _made_move(self, team: str, event_id: str) -> tuple[bool, str | None]:
        """Whether the pointer history names ``event_id`` (the write was ours), and the pointer's ETag."""
        pointer, etag = self._read_pointer(team)
        return any(move["event_id"] == event_id for move in _moves_of(pointer, ())), etag

    def _discard(self, team: str, event: dict[str, Any]) -> None:
        """Remove the event of a move that can no longer happen (readers ignore it anyway)."""
        path = self._event_path(team, event["event_id"])
        try:
            path.fs.rm_file(path.path)
        except OSError:
            pass

    def _change_pointer(self, team: str, version: int, change: PointerChange[T]) -> T:
        """Under the team lock, ``change(serving, target)`` returns ``(move, finish)``.

        ``move`` None leaves the pointer alone and returns ``finish(None)``. Otherwise the move's event is
        written first, then the pointer (its history extended by this move) replaces the one read, by a
        conditional write on S3, and ``finish(event)`` gives the result. A write that lost a race
        (412 or 409) is checked against the pointer read again: if its history names our event, the
        write was ours (an earlier attempt whose answer was lost); if not, ``change`` runs again on the
        new pointer. A write that failed otherwise is checked the same way before its error is raised.
        """
        with self._team_lock(team):
            for attempt in range(_POINTER_ATTEMPTS):
                pointer, etag = self._read_pointer(team)
                legacy = pointer is not None and "history" not in pointer
                moves = _moves_of(pointer, self._all_events(team) if legacy else ())
                target = self.get(team, version)
                current = self.get(team, pointer["version"]) if pointer else None
                move, finish = change(current, target)
                if move is None:
                    return finish(None)
                previous = current.version if current else None
                event = self._record(
                    team,
                    move.kind,
                    version,
                    previous_version=previous,
                    reason=move.reason,
                    run_id=move.run_id,
                    details=move.details,
                    moves_pointer=True,
                )
                made = {key: event[key] for key in ("version", "previous_version", "kind", "event_id", "at")}
                data = _json_bytes(
                    {
                        "team": team,
                        "version": version,
                        "since": event["at"],
                        "by": move.kind,
                        "event_id": event["event_id"],
                        "history": [*moves, made],
                    }
                )
                try:
                    self._replace_pointer(team, data, etag)
                except _PointerMoved:
                    ours, now = self._made_move(team, event["event_id"])
                    if ours:
                        return finish(event)
                    if now != etag:  # the pointer moved past the one we read: our write can never land
                        self._discard(team, event)
                    time.sleep(random.uniform(0, min(0.5, 0.02 * 2**attempt)))  # let the winner finish
                    continue
                except OSError:
                    if self._made_move(team, event["event_id"])[0]:
                        return finish(event)
                    raise
                return finish(event)
        raise ConcurrentPromotionError(
            f"the serving pointer of team {team!r} changed {_POINTER_ATTEMPTS} times while deciding; "
            f"{version_label(version)} does not serve: retry"
        )

    def promote_if(
        self, team: str, version: int, decide: Callable[[ModelVersion | None], GateDecision]
    ) -> GateDecision:
        """Ask ``decide(serving)`` and move the serving pointer to ``version`` if it says promote.

        Read, decision, event and pointer move happen under the team lock (see the module docstring
        for what that guarantees per store). A refusal is recorded and leaves the pointer unchanged.
        Both events keep ``decision.details``. ``promote`` in the result means ``version`` serves
        after the call.
        """

        def change(
            current: ModelVersion | None, target: ModelVersion
        ) -> tuple[_Move | None, Callable[[dict[str, Any] | None], GateDecision]]:
            previous = current.version if current else None
            if previous == version:
                return None, lambda _: GateDecision(True, f"{target.label} already serves team {team}")
            decision = decide(current)
            if decision.promote:
                return _Move("promoted", decision.reason, target.run_id, decision.details), lambda _: decision

            def refuse(_: None) -> GateDecision:
                self._record(
                    team,
                    "refused",
                    version,
                    previous_version=previous,
                    reason=decision.reason,
                    run_id=target.run_id,
                    details=decision.details,
                )
                return decision

            return None, refuse

        return self._change_pointer(team, version, change)

    def rollback(self, team: str, to_version: int, reason: str) -> dict[str, Any]:
        """Serve ``to_version`` again (it must have served before) and record why; returns the event."""
        if not reason.strip():
            raise ValueError("a rollback needs a reason; it is kept in the team's history")

        def change(
            current: ModelVersion | None, target: ModelVersion
        ) -> tuple[_Move, Callable[[dict[str, Any] | None], dict[str, Any]]]:
            if current is not None and current.version == to_version:
                raise ValueError(f"{target.label} already serves team {team}; nothing to roll back")
            if target.status != "retired":
                served = [v.label for v in self.versions(team) if v.status == "retired"]
                raise ValueError(
                    f"{target.label} of team {team} never served (status {target.status}); rollback returns to a "
                    f"version that served before: {', '.join(served) if served else 'none'}. Promote new "
                    f"versions through the gate instead"
                )
            return _Move("rollback", reason), lambda event: event

        return self._change_pointer(team, to_version, change)
