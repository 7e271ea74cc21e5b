"""Platform settings, read from the environment in this one place.

Everything that differs between a laptop and production (where the landing zone and the artifact
store live, which resources are used) is chosen here and by the resource sets in
``turbine_dagster.defs.resources`` — never by branches inside assets.
"""

import datetime as dt
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turbine_dagster.core.data.landing import TEAM_NAME_RULE, is_team_name

ENVIRONMENTS = ("local", "production")
DEFAULT_TEAMS = ("team_a", "team_b", "team_c", "team_d")


@dataclass(frozen=True)
class Settings:
    """The platform's settings; ``from_env`` reads them, each default written once here."""

    environment: str
    landing_root: str
    storage_root: str
    teams: tuple[str, ...]
    first_week: str = "2026-01-04"
    training_days: tuple[str, ...] = ("mon", "thu")
    training_hour: int = 2
    team_stagger_minutes: int = 30
    prediction_delay_hours: int = 6
    drift_cooldown_hours: float = 24.0
    gpus_per_training_step: int = 4
    """GPUs each model step requests and uses; a run's two model steps train at once, so a run holds twice this."""
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: tuple[dict, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        environment = environ.get("TURBINE_ENV", "local")
        if environment not in ENVIRONMENTS:
            raise ValueError(f"TURBINE_ENV={environment!r}: expected one of {', '.join(ENVIRONMENTS)}")
        teams = tuple(t.strip() for t in environ.get("TURBINE_TEAMS", ",".join(DEFAULT_TEAMS)).split(",") if t.strip())
        bad = [t for t in teams if not is_team_name(t)]
        if bad or not teams:
            raise ValueError(f"TURBINE_TEAMS: invalid team names {bad or '(none given)'}; use {TEAM_NAME_RULE}")
        # An unset variable leaves the field's default above.
        read = {
            variable.field: variable.read(environ[variable.name]) for variable in _VARIABLES if variable.name in environ
        }
        return cls(
            environment=environment,
            landing_root=_absolute(environ.get("TURBINE_LANDING_ROOT", "data/landing")),
            storage_root=_absolute(environ.get("TURBINE_STORAGE_ROOT", ".turbine/storage")),
            teams=teams,
            **read,
        )


CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class _Variable:
    """A ``TURBINE_*`` variable: the field it sets, how its text is parsed, and what a valid value looks like."""

    name: str
    field: str
    parse: Callable[[str], Any]
    expected: str

    def read(self, value: str) -> Any:
        """The parsed value; an error names the variable, its value and what was expected."""
        try:
            return self.parse(value)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{self.name}={value!r}: expected {self.expected}") from error


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = int(text.strip())
        if number < low or (high is not None and number > high):
            raise ValueError(f"{number} is out of range")
        return number

    return parse


def _hours(text: str) -> float:
    hours = float(text.strip())
    if not math.isfinite(hours) or hours < 0:
        raise ValueError(f"{hours} is not a non-negative number")
    return hours


def _date(text: str) -> str:
    text = text.strip()
    if dt.date.fromisoformat(text).isoformat() != text:
        raise ValueError("not written YYYY-MM-DD")
    return text


def _cron_days(text: str) -> tuple[str, ...]:
    days = tuple(day.strip().lower() for day in text.split(","))
    for day in days:
        for end in day.split("-", 1):
            if end not in CRON_DAYS and not (end.isdigit() and 0 <= int(end) <= 7):
                raise ValueError(f"{end!r} is not a day")
    return days


def _node_selector(text: str) -> dict[str, str]:
    selector: Any = json.loads(text)
    if not isinstance(selector, dict) or not all(isinstance(v, str) for v in selector.values()):
        raise ValueError("not a JSON object of strings")
    return selector


def _tolerations(text: str) -> tuple[dict, ...]:
    tolerations: Any = json.loads(text)
    if not isinstance(tolerations, list) or not all(isinstance(t, dict) for t in tolerations):
        raise ValueError("not a JSON list of objects")
    return tuple(tolerations)


def _absolute(root: str) -> str:
    # Relative local roots are anchored at start-up so code servers and runs agree on one folder.
    return root if "://" in root else str(Path(root).resolve())


_VARIABLES = (
    _Variable("TURBINE_FIRST_WEEK", "first_week", _date, "a date written YYYY-MM-DD"),
    _Variable(
        "TURBINE_TRAINING_DAYS",
        "training_days",
        _cron_days,
        "cron days separated by commas, e.g. mon,thu (sun..sat or 0..7, ranges as mon-fri)",
    ),
    _Variable("TURBINE_TRAINING_HOUR", "training_hour", _whole(0, 23), "a whole hour from 0 to 23 (UTC)"),
    _Variable(
        "TURBINE_TEAM_STAGGER_MINUTES", "team_stagger_minutes", _whole(0), "a whole number of minutes, 0 or more"
    ),
    _Variable(
        "TURBINE_PREDICTION_DELAY_HOURS", "prediction_delay_hours", _whole(0), "a whole number of hours, 0 or more"
    ),
    _Variable(
        "TURBINE_DRIFT_COOLDOWN_HOURS", "drift_cooldown_hours", _hours, "a number of hours, 0 or more, e.g. 24 or 1.5"
    ),
    _Variable("TURBINE_GPU_COUNT", "gpus_per_training_step", _whole(1), "a whole number, 1 or more"),
    _Variable(
        "TURBINE_GPU_NODE_SELECTOR",
        "gpu_node_selector",
        _node_selector,
        'a JSON object of label names to values, e.g. {"pool": "gpu"}',
    ),
    _Variable(
        "TURBINE_GPU_TOLERATIONS",
        "gpu_tolerations",
        _tolerations,
        'a JSON list of Kubernetes tolerations, e.g. [{"key": "nvidia.com/gpu", "operator": "Exists"}]',
    ),
)
