"""A team's history: the events recorded in the registry and the moves of its serving pointer.

The pointer carries its own history; an event that moves the pointer counts once that history names it.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from turbine_dagster.core.registry.objects import utc_now
from turbine_dagster.core.registry.versions import version_label

EventKind = Literal["registered", "promoted", "refused", "rollback"]
MOVES: tuple[EventKind, ...] = ("promoted", "rollback")
_MOVE_FIELDS = ("version", "previous_version", "kind", "event_id", "at")


@dataclass(frozen=True)
class Move:
    """Move the serving pointer to the target version, recorded as an event of ``kind``."""

    kind: EventKind
    reason: str
    run_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def new_event(
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
    """One event with a unique id that starts with its UTC time, so that name order is time order."""
    at = utc_now()
    return {
        "event_id": f"{at:%Y%m%dT%H%M%S%fZ}-{kind}-{version_label(version)}-{uuid.uuid4().hex[:8]}",
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


def pointer_after(team: str, moves: Sequence[dict[str, Any]], event: Mapping[str, Any]) -> dict[str, Any]:
    """The serving pointer that ``event`` (a move) installs, its history the earlier ``moves`` and this one."""
    return {
        "team": team,
        "version": event["version"],
        "since": event["at"],
        "by": event["kind"],
        "event_id": event["event_id"],
        "history": [*moves, {key: event[key] for key in _MOVE_FIELDS}],
    }


def moves_of(pointer: dict[str, Any] | None, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every move of the serving pointer, oldest first, the last one installing ``pointer``.

    Pointers carry their history. One written before they did is rebuilt from the events of that time
    (written after each move, so one may be missing) and ends with the pointer itself.
    """
    if pointer is None:
        return []
    if "history" in pointer:
        return list(pointer["history"])
    moves = [
        {key: event[key] for key in _MOVE_FIELDS}
        for event in events
        if event["kind"] in MOVES and not event.get("moves_pointer")
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


def move_was_made(pointer: dict[str, Any] | None, event_id: str) -> bool:
    """Whether the pointer's history names the move of ``event_id``: the move was made."""
    return any(move["event_id"] == event_id for move in moves_of(pointer, ()))


def visible_events(events: Sequence[dict[str, Any]], moves: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events that happened: a pointer move's event counts once the pointer history names it."""
    made = {move["event_id"] for move in moves}
    return [event for event in events if not event.get("moves_pointer") or event["event_id"] in made]
