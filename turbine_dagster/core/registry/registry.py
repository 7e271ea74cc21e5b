"""The model registry: immutable, numbered model versions per team, the pointer to the version that serves
each team, and the team's history. Rooted at a local folder or ``s3://bucket/prefix``; the layout on
storage and the concurrency guarantees per store are described in docs/architecture.md.
"""

import io
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pandas as pd
from upath import UPath

from turbine_dagster.core.evaluation.selection import GateDecision
from turbine_dagster.core.models.checkpoints import Checkpoint
from turbine_dagster.core.registry import history, objects, registration
from turbine_dagster.core.registry.history import EventKind, Move
from turbine_dagster.core.registry.reading import RegistryReader
from turbine_dagster.core.registry.versions import CHECKPOINTS, ModelVersion, version_label
from turbine_dagster.core.storage.files import is_local, write_bytes_atomic

_CLAIM, _REFERENCE = "claim.json", "reference.parquet"
_POINTER_ATTEMPTS = 10

T = TypeVar("T")
PointerChange = Callable[[ModelVersion | None, ModelVersion], tuple[Move | None, Callable[[dict[str, Any] | None], T]]]
"""``change(serving, target)`` -> ``(move, finish)``: the move to make (None: none) and what to return after it."""


class ConcurrentPromotionError(RuntimeError):
    """The serving pointer kept changing under a promotion or rollback (remote roots only)."""


class ModelRegistry(RegistryReader):
    """The registry, for reading and writing: registration, promotion through a gate, rollback."""

    def __init__(
        self, root: str | os.PathLike, storage_options: Mapping[str, Any] | None = None, lock_timeout_s: float = 120.0
    ) -> None:
        super().__init__(root, storage_options)
        self.lock_timeout_s = lock_timeout_s

    def _record(self, team: str, kind: EventKind, version: int, **fields: Any) -> dict[str, Any]:
        """Write one event (``history.new_event``'s fields). One with ``moves_pointer`` records a pointer move:
        written before the move, it counts once the pointer history names it."""
        event = history.new_event(team, kind, version, **fields)
        write_bytes_atomic(self._event_path(team, event["event_id"]), objects.json_bytes(event))
        return event

    def _claim_version(self, team: str, run_id: str | None) -> int:
        number = max(self._claimed_numbers(team), default=0) + 1
        claim = objects.json_bytes({"run_id": run_id, "claimed_at": objects.utc_now().isoformat()})
        while True:
            try:
                objects.create_exclusive(self._version_dir(team, number) / _CLAIM, claim)
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

        ``model_type`` labels the entry (default: the model kind, "tensorflow", "catboost" or "logistic");
        ``reference`` must hold the feature columns, of which at most REFERENCE_MAX_ROWS rows are kept.
        ``checkpoints`` (from training, each with its model object or the ``artifact_uri`` of a native
        file of the same kind as ``model``) are stored under the version, in the order given.
        ``split_scheme`` names how the training data was split (kept in the entry as given).
        """
        from turbine_dagster.core.storage import (
            model_files,  # imports TensorFlow: only paid by callers that save models
        )

        kind = model_files.model_kind(model)
        registration.check_threshold(threshold)
        features = registration.drift_reference(team, reference)
        entry_metrics = registration.as_stored_values(metrics)  # fail before any file is written
        suffix = model_files.MODEL_SUFFIX[kind]
        registration.check_checkpoints(team, checkpoints, kind, suffix)

        version = self._claim_version(team, run_id)
        folder = self._version_dir(team, version)
        artifact = model_files.save_model(model, folder / f"model{suffix}")
        reference_path = folder / _REFERENCE
        buffer = io.BytesIO()
        features.to_parquet(buffer, index=False)
        write_bytes_atomic(reference_path, buffer.getvalue())
        stored = [
            self._store_checkpoint(checkpoint, folder / CHECKPOINTS / f"{checkpoint.checkpoint_id}{suffix}")
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
            "created_at": objects.utc_now().isoformat(),
            CHECKPOINTS: [checkpoint.to_dict() for checkpoint in stored],
            "split_scheme": split_scheme,
        }
        write_bytes_atomic(self._entry_path(team, version), objects.json_bytes(entry))
        self._record(team, "registered", version, reason=f"registered from partition {partition}", run_id=run_id)
        return ModelVersion.from_entry(entry, "candidate")

    def _store_checkpoint(self, checkpoint: Checkpoint, target: UPath) -> Checkpoint:
        from turbine_dagster.core.storage import model_files

        if checkpoint.model is not None:
            uri = model_files.save_model(checkpoint.model, target).uri
        else:  # a native file written by save_checkpoints: copied byte for byte
            source = UPath(checkpoint.artifact_uri)
            source = source if is_local(source) else self._path(checkpoint.artifact_uri)
            write_bytes_atomic(target, source.read_bytes())
            uri = str(target)
        return Checkpoint.from_dict({**checkpoint.to_dict(), "artifact_uri": uri})

    def _made_move(self, team: str, event_id: str) -> tuple[bool, str | None]:
        """Whether the pointer history names ``event_id`` (the write was ours), and the pointer's ETag."""
        pointer, etag = self._read_pointer(team)
        return history.move_was_made(pointer, event_id), etag

    def _change_pointer(self, team: str, version: int, change: PointerChange[T]) -> T:
        """Under the team lock, ``change(serving, target)`` returns ``(move, finish)``.

        ``move`` None leaves the pointer alone and returns ``finish(None)``. Otherwise the move's event is
        written first, then the pointer (its history extended by this move) replaces the one read, by a
        conditional write on S3, and ``finish(event)`` gives the result. A write that lost a race
        (412 or 409) is checked against the pointer read again: if its history names our event, the
        write was ours (an earlier attempt whose answer was lost); if not, ``change`` runs again on the
        new pointer. A write that failed otherwise is checked the same way before its error is raised.
        """
        with objects.team_lock(self._team_dir(team), team, self.lock_timeout_s):
            for attempt in range(_POINTER_ATTEMPTS):
                pointer, etag = self._read_pointer(team)
                moves = self._moves(team, pointer)
                target = self.get(team, version)
                current = self.get(team, pointer["version"]) if pointer else None
                move, finish = change(current, target)
                if move is None:
                    return finish(None)
                event = self._record(
                    team,
                    move.kind,
                    version,
                    previous_version=current.version if current else None,
                    reason=move.reason,
                    run_id=move.run_id,
                    details=move.details,
                    moves_pointer=True,
                )
                data = objects.json_bytes(history.pointer_after(team, moves, event))
                try:
                    objects.replace_if_unchanged(self._pointer_path(team), data, etag)
                except objects.ConditionalWriteLost:
                    ours, now = self._made_move(team, event["event_id"])
                    if ours:
                        return finish(event)
                    if now != etag:  # the pointer moved past the one we read: our write can never land
                        objects.remove_quietly(self._event_path(team, event["event_id"]))  # readers ignore it anyway
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

        Read, decision, event and pointer move happen under the team lock (see docs/architecture.md
        for what that guarantees per store). A refusal is recorded and leaves the pointer unchanged.
        Both events keep ``decision.details``. ``promote`` in the result means ``version`` serves
        after the call.
        """

        def change(
            current: ModelVersion | None, target: ModelVersion
        ) -> tuple[Move | None, Callable[[dict[str, Any] | None], GateDecision]]:
            previous = current.version if current else None
            if previous == version:
                return None, lambda _: GateDecision(True, f"{target.label} already serves team {team}")
            decision = decide(current)
            if decision.promote:
                return Move("promoted", decision.reason, target.run_id, decision.details), lambda _: decision

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
        ) -> tuple[Move, Callable[[dict[str, Any] | None], dict[str, Any]]]:
            if current is not None and current.version == to_version:
                raise ValueError(f"{target.label} already serves team {team}; nothing to roll back")
            if target.status != "retired":
                served = [v.label for v in self.versions(team) if v.status == "retired"]
                raise ValueError(
                    f"{target.label} of team {team} never served (status {target.status}); rollback returns to a "
                    f"version that served before: {', '.join(served) if served else 'none'}. Promote new "
                    f"versions through the gate instead"
                )
            return Move("rollback", reason), lambda event: event

        return self._change_pointer(team, to_version, change)
